//! The servers: the truth table's (one byte per TCP connection, UDP echoed) and a TCP
//! echo server for long-lived streams.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};

/// Binds every socket first (so `serving` means reachable), then serves on one thread per
/// socket.
pub fn serve(ports: &[u16]) -> Result<(), String> {
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    for &port in ports {
        let addr = any(port);
        tcp.push(TcpListener::bind(addr).map_err(|e| format!("TCP {addr}: {e}"))?);
        udp.push(UdpSocket::bind(addr).map_err(|e| format!("UDP {addr}: {e}"))?);
    }
    let listed: Vec<String> = ports.iter().map(u16::to_string).collect();
    announce(&format!("serving {}", listed.join(" ")));
    std::thread::scope(|s| {
        for listener in &tcp {
            s.spawn(move || {
                for mut stream in listener.incoming().flatten() {
                    let _ = stream.write_all(b"k");
                }
            });
        }
        for socket in &udp {
            s.spawn(move || {
                let mut buffer = [0u8; 512];
                loop {
                    if let Ok((n, peer)) = socket.recv_from(&mut buffer) {
                        let _ = socket.send_to(&buffer[..n], peer);
                    }
                }
            });
        }
    });
    Ok(())
}

/// Echoes every TCP connection to `[::]:port` on a thread of its own until it ends.
pub fn echo(port: u16) -> Result<(), String> {
    let addr = any(port);
    let listener = TcpListener::bind(addr).map_err(|e| format!("TCP {addr}: {e}"))?;
    announce(&format!("echoing {port}"));
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || echo_one(stream));
    }
    Ok(())
}

fn echo_one(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buffer[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// `[::]:port`: both families.
fn any(port: u16) -> SocketAddr {
    SocketAddr::from(([0u16; 8], port))
}

/// One line on stdout, flushed: the tests wait for it.
pub fn announce(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}
