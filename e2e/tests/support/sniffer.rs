//! Every IP packet any interface of a namespace sees, from the first instant: an
//! `AF_PACKET` socket of protocol `ETH_P_ALL` bound to no interface (packet(7)) taps
//! every device of its namespace, also those that appear after it was opened (a pod's
//! `eth0`, moved in by ADD). `SOCK_DGRAM` hands over the network-layer packet.

use socket2::{Domain, Protocol, Socket, Type};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use weft_e2e::Netns;

/// `AF_PACKET` (linux/socket.h).
const AF_PACKET: i32 = 17;
/// `ETH_P_ALL` (linux/if_ether.h) in network byte order, as packet(7) wants it.
const ETH_P_ALL_BE: i32 = 0x0003_u16.to_be() as i32;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;
const HOP_BY_HOP: u8 = 0;

/// One packet seen.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    /// When the socket handed it over.
    pub at: Instant,
    pub source: IpAddr,
    /// The transport protocol (after an IPv6 hop-by-hop header, as MLD carries).
    pub protocol: u8,
    /// The ICMP or ICMPv6 type, for those.
    pub icmp_type: Option<u8>,
}

impl Seen {
    /// Neighbour discovery or MLD (ICMPv6 types 130-137 and 143, RFC 4861, RFC 3810).
    pub fn is_nd_or_mld(&self) -> bool {
        self.protocol == ICMPV6
            && self
                .icmp_type
                .is_some_and(|t| (130..=137).contains(&t) || t == 143)
    }

    /// The protocol's name: tcp, udp, icmp (either family) or its number.
    pub fn protocol_name(&self) -> String {
        match self.protocol {
            6 => "tcp".into(),
            17 => "udp".into(),
            ICMP | ICMPV6 => "icmp".into(),
            other => other.to_string(),
        }
    }
}

/// A tap on a namespace, reading on a thread of its own until dropped.
#[derive(Debug)]
pub struct Sniffer {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Sniffer {
    /// Opens the tap inside `ns` and starts reading.
    pub fn start(ns: &Netns) -> Sniffer {
        let path = ns.path();
        let socket = std::thread::spawn(move || {
            let netns = weft_netlink::Netns::open(Path::new(&path)).unwrap();
            let _inside = netns.enter().unwrap();
            let protocol = Protocol::from(ETH_P_ALL_BE);
            Socket::new(Domain::from(AF_PACKET), Type::DGRAM, Some(protocol)).unwrap()
        })
        .join()
        .unwrap();
        // A flood that gets through must not be lost to a full buffer.
        socket.set_recv_buffer_size(16 << 20).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || read_until(&socket, &seen, &stop))
        };
        Sniffer {
            seen,
            stop,
            reader: Some(reader),
        }
    }

    /// Every packet seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn read_until(socket: &Socket, seen: &Mutex<Vec<Seen>>, stop: &AtomicBool) {
    let mut buffer = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let Ok(n) = (&mut &*socket).read(&mut buffer) else {
            continue;
        };
        if let Some(packet) = parse(&buffer[..n], Instant::now()) {
            seen.lock().unwrap().push(packet);
        }
    }
}

/// An IPv4 or IPv6 packet's source, protocol and ICMP type; `None` for anything else
/// (ARP).
fn parse(packet: &[u8], at: Instant) -> Option<Seen> {
    // (source, transport protocol, where the transport header begins, ICMP's number)
    let (source, protocol, offset, icmp): (IpAddr, u8, usize, u8) = match packet.first()? >> 4 {
        4 if packet.len() >= 20 => {
            let source = Ipv4Addr::from(<[u8; 4]>::try_from(&packet[12..16]).ok()?);
            let header = usize::from(packet[0] & 0x0f) * 4;
            (source.into(), packet[9], header, ICMP)
        }
        6 if packet.len() >= 40 => {
            let source = Ipv6Addr::from(<[u8; 16]>::try_from(&packet[8..24]).ok()?);
            let (mut protocol, mut offset) = (packet[6], 40);
            if protocol == HOP_BY_HOP {
                protocol = *packet.get(offset)?;
                offset += (usize::from(*packet.get(offset + 1)?) + 1) * 8;
            }
            (source.into(), protocol, offset, ICMPV6)
        }
        _ => return None,
    };
    Some(Seen {
        at,
        source,
        protocol,
        icmp_type: (protocol == icmp)
            .then(|| packet.get(offset).copied())
            .flatten(),
    })
}
