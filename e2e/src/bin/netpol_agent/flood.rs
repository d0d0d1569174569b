//! `flood`: UDP datagrams and TCP SYNs at a steady rate to addresses that may not
//! answer, or not exist yet (a pod about to start). Sending goes on whatever comes back:
//! errors (ICMP unreachable, resets) are the point of a flood at a closed door.

use super::Args;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// A payload no other test traffic carries.
const PAYLOAD: &[u8] = b"netpol-flood";

pub fn flood(args: &Args) -> Result<(), String> {
    args.only(&["--pps", "--port"])?;
    let pps: u32 = args.required("--pps")?;
    let port: u16 = args.required("--port")?;
    if pps == 0 {
        return Err("--pps must be above 0".into());
    }
    let addrs: Vec<IpAddr> = args
        .words
        .iter()
        .map(|a| a.parse().map_err(|e| format!("address {a:?}: {e}")))
        .collect::<Result<_, _>>()?;
    if addrs.is_empty() {
        return Err("flood needs at least one address".into());
    }
    let interval = Duration::from_secs(1) / pps;
    let mut udp = Vec::new();
    for addr in &addrs {
        let local = match addr {
            IpAddr::V4(_) => SocketAddr::from(([0u8; 4], 0)),
            IpAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
        };
        let socket = UdpSocket::bind(local).map_err(|e| format!("UDP {local}: {e}"))?;
        udp.push((socket, SocketAddr::new(*addr, port)));
    }
    super::serve::announce("flooding");
    std::thread::scope(|s| {
        for (socket, to) in &udp {
            s.spawn(move || {
                paced(interval, || {
                    let _ = socket.send_to(PAYLOAD, to);
                })
            });
        }
        for addr in &addrs {
            let to = SocketAddr::new(*addr, port);
            s.spawn(move || {
                // connect_timeout polls with the remaining time: with 1 µs the SYN is
                // sent (connect(2) sends it at once) and the socket abandoned before any
                // answer, so the next SYN need not wait for one.
                paced(interval, || {
                    let _ = TcpStream::connect_timeout(&to, Duration::from_micros(1));
                })
            });
        }
    });
    Ok(())
}

/// Runs `send` every `interval` forever, catching up (without bursting past one
/// interval's worth of lag) when a send took long.
fn paced(interval: Duration, mut send: impl FnMut()) {
    let mut next = Instant::now();
    loop {
        send();
        next += interval;
        let now = Instant::now();
        match next.checked_duration_since(now) {
            Some(wait) => std::thread::sleep(wait),
            None if now - next > interval => next = now,
            None => {}
        }
    }
}
