//! The pod guard, attacked from a pod (issue 16, "the pod's packets"): a pod with raw
//! sockets sends crafted packets of both families, with another pod's source and with
//! a foreign one, to a pod on its node, a pod on another node and the external host;
//! and router advertisements, redirects and DHCP/DHCPv6 server replies. Every attack is
//! preceded by the same packet, from the same raw socket along the same path, with
//! the pod's own source or a harmless type or port, which must arrive: a drop cannot
//! come from a broken path. Neighbour discovery (RS, NS, NA, DAD) and MLD still reach
//! the node, and a pod's first packet right after ADD passes.
//!
//! Topology: `weft_e2e::Topology`, two nodes, dual stack; the attacker and a victim on
//! node 1, a victim on node 2, the external host beyond the fabric. Foreign sources
//! are documentation addresses (203.0.113.0/24, 2001:db8:dead::/48).
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::Read;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use weft_e2e::{Netns, Topology, TopologyOptions, EXTERNAL_V4, EXTERNAL_V6};

/// How long a receiver waits for a packet that should come.
const ARRIVES: Duration = Duration::from_secs(2);
/// How long a receiver listens for a packet that must not come.
const NEVER: Duration = Duration::from_millis(700);
const FOREIGN_V4: &str = "203.0.113.7";
const FOREIGN_V6: &str = "2001:db8:dead::7";
/// The attacker's link-local source (the guard treats every fe80::/10 source alike).
const LINK_LOCAL: &str = "fe80::a11:ce";
/// The node's IPv4 gateway on lo, and its IPv6 gateway on each host veth.
const GATEWAY_V4: &str = "169.254.1.1";
const GATEWAY_V6: &str = "fe80::1";
const UDP: u8 = 17;
const ICMPV6: u8 = 58;
/// A UDP port the receivers listen on.
const PORT: u16 = 40_716;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn ip6(text: &str) -> Ipv6Addr {
    text.parse().unwrap()
}

/// Runs `work` on a thread inside `ns`; sockets it opens stay in `ns`.
fn inside<T: Send>(ns: &Netns, work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let netns = weft_netlink::Netns::open(Path::new(&ns.path())).unwrap();
                let _inside = netns.enter().unwrap();
                work()
            })
            .join()
            .unwrap()
    })
}

/// A token no other packet carries, to tell this test's packets apart.
fn token(label: &str) -> Vec<u8> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("guard{}-{n}-{label}", std::process::id()).into_bytes()
}

/// A receiving socket: UDP on [::]:`port` (both families), or raw ICMP/ICMPv6.
struct Receiver(Socket);

impl Receiver {
    fn udp(ns: &Netns, port: u16) -> Receiver {
        inside(ns, || {
            let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).unwrap();
            socket.set_only_v6(false).unwrap();
            let any = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
            socket.bind(&SockAddr::from(any)).unwrap();
            Receiver(socket)
        })
    }

    /// Every ICMP (`v6` false) or ICMPv6 packet delivered to `ns` itself.
    fn icmp(ns: &Netns, v6: bool) -> Receiver {
        inside(ns, || {
            let (domain, protocol) = match v6 {
                true => (Domain::IPV6, Protocol::ICMPV6),
                false => (Domain::IPV4, Protocol::ICMPV4),
            };
            Receiver(Socket::new(domain, Type::RAW, Some(protocol)).unwrap())
        })
    }

    /// Reads until `wait` passes; true once a packet carries `token`.
    fn saw(&self, token: &[u8], wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut buffer = [0u8; 4096];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let left = left.max(Duration::from_millis(1));
            self.0.set_read_timeout(Some(left)).unwrap();
            let Ok(n) = (&self.0).read(&mut buffer) else {
                return false;
            };
            if buffer[..n].windows(token.len()).any(|w| w == token) {
                return true;
            }
        }
        false
    }
}

/// Raw sockets in a pod that write whole IP packets (IPPROTO_RAW: the header is ours,
/// source included), and the pod's `eth0` index for link-scope destinations.
struct Attacker {
    v4: Socket,
    v6: Socket,
    eth0: u32,
}

impl Attacker {
    fn in_pod(ns: &Netns) -> Attacker {
        let index = ns.run("cat", &["/sys/class/net/eth0/ifindex"]);
        let eth0 = String::from_utf8_lossy(&index.stdout)
            .trim()
            .parse()
            .unwrap();
        inside(ns, || {
            let v4 = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255))).unwrap();
            // A DHCP offer goes to 255.255.255.255.
            v4.set_broadcast(true).unwrap();
            let v6 = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::from(255))).unwrap();
            Attacker { v4, v6, eth0 }
        })
    }

    /// Sends `payload` of protocol `next` from `source` to `destination` (families
    /// must match), with `hops` as TTL or hop limit.
    fn send(&self, source: IpAddr, destination: IpAddr, next: u8, hops: u8, payload: &[u8]) {
        let (socket, packet, to) = match (source, destination) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut header = vec![0x45, 0, 0, 0, 0, 0, 0, 0, hops, next, 0, 0];
                header.extend_from_slice(&s.octets());
                header.extend_from_slice(&d.octets());
                // The kernel fills in the length, identification and checksum (raw(7)).
                header.extend_from_slice(payload);
                let to = SocketAddr::new(destination, 0);
                (&self.v4, header, SockAddr::from(to))
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let length = u16::try_from(payload.len()).unwrap().to_be_bytes();
                let mut header = vec![0x60, 0, 0, 0, length[0], length[1], next, hops];
                header.extend_from_slice(&s.octets());
                header.extend_from_slice(&d.octets());
                header.extend_from_slice(payload);
                let scoped = d.is_multicast() || d.segments()[0] & 0xffc0 == 0xfe80;
                let scope = if scoped { self.eth0 } else { 0 };
                let to = SocketAddrV6::new(d, 0, 0, scope);
                (&self.v6, header, SockAddr::from(to))
            }
            _ => panic!("{source} and {destination} are of different families"),
        };
        socket.send_to(&packet, &to).unwrap();
    }

    fn udp(&self, source: &str, destination: &str, ports: (u16, u16), token: &[u8]) {
        let (source, destination) = (ip(source), ip(destination));
        let datagram = udp(source, destination, ports, token);
        self.send(source, destination, UDP, 64, &datagram);
    }

    /// An ICMPv6 message (type, code, body), hop limit 255 as neighbour discovery
    /// requires (RFC 4861 section 7.1).
    fn icmpv6(&self, source: &str, destination: &str, kind: u8, body: &[u8]) {
        let (s, d) = (ip6(source), ip6(destination));
        let mut message = vec![kind, 0, 0, 0];
        message.extend_from_slice(body);
        let sum = checksum(&pseudo_header(s, d, ICMPV6, message.len()), &message);
        message[2..4].copy_from_slice(&sum.to_be_bytes());
        self.send(IpAddr::V6(s), IpAddr::V6(d), ICMPV6, 255, &message);
    }

    /// An ICMP message (type, code, body).
    fn icmp(&self, source: &str, destination: &str, kind: u8, code: u8, body: &[u8]) {
        let mut message = vec![kind, code, 0, 0];
        message.extend_from_slice(body);
        let sum = checksum(&[], &message);
        message[2..4].copy_from_slice(&sum.to_be_bytes());
        self.send(ip(source), ip(destination), 1, 64, &message);
    }
}

/// A UDP datagram with its checksum (mandatory over IPv6, RFC 8200 section 8.1).
fn udp(source: IpAddr, destination: IpAddr, (from, to): (u16, u16), payload: &[u8]) -> Vec<u8> {
    let length = u16::try_from(8 + payload.len()).unwrap();
    let mut datagram = Vec::new();
    for field in [from, to, length, 0] {
        datagram.extend_from_slice(&field.to_be_bytes());
    }
    datagram.extend_from_slice(payload);
    let pseudo = match (source, destination) {
        (IpAddr::V6(s), IpAddr::V6(d)) => pseudo_header(s, d, UDP, datagram.len()),
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut p = [s.octets(), d.octets()].concat();
            p.extend_from_slice(&[0, UDP]);
            p.extend_from_slice(&length.to_be_bytes());
            p
        }
        _ => unreachable!("families checked by the sender"),
    };
    let sum = match checksum(&pseudo, &datagram) {
        0 => 0xffff,
        sum => sum,
    };
    datagram[6..8].copy_from_slice(&sum.to_be_bytes());
    datagram
}

/// The IPv6 pseudo-header of upper-layer checksums (RFC 8200 section 8.1).
fn pseudo_header(source: Ipv6Addr, destination: Ipv6Addr, next: u8, length: usize) -> Vec<u8> {
    let mut p = [source.octets(), destination.octets()].concat();
    p.extend_from_slice(&u32::try_from(length).unwrap().to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, next]);
    p
}

/// The Internet checksum (RFC 1071) over `pseudo` then `data`.
fn checksum(pseudo: &[u8], data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for part in [pseudo, data] {
        for pair in part.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A neighbour discovery option carrying `token` (type 14, the nonce option of RFC
/// 3971, which receivers without SEND skip), padded to whole 8-byte units.
fn nonce_option(token: &[u8]) -> Vec<u8> {
    let units = (token.len() + 2).div_ceil(8);
    let mut option = vec![14, u8::try_from(units).unwrap()];
    option.extend_from_slice(token);
    option.resize(units * 8, 0);
    option
}

/// A dual-stack topology: node 1 with the attacker and a victim, node 2 with a victim.
fn topology() -> Topology {
    let mut topology = Topology::start(TopologyOptions {
        nodes: 2,
        ..TopologyOptions::default()
    });
    topology.add_pod(0);
    topology.add_pod(0);
    topology.add_pod(1);
    topology.wait_converged(Duration::from_secs(20));
    topology
}

#[test]
fn a_pod_sends_only_from_its_own_addresses_wherever_it_sends() {
    let topology = topology();
    let (attacker, local, remote) = (&topology.pods[0], &topology.pods[1], &topology.pods[2]);
    let raw = Attacker::in_pod(&attacker.netns);
    let victims = [
        (
            "a pod on the node",
            &local.netns,
            local.v4.clone(),
            local.v6.clone(),
        ),
        (
            "a pod on another node",
            &remote.netns,
            remote.v4.clone(),
            remote.v6.clone(),
        ),
        (
            "the external host",
            &topology.external,
            Some(EXTERNAL_V4.into()),
            Some(EXTERNAL_V6.into()),
        ),
    ];
    for (name, ns, v4, v6) in victims {
        let receiver = Receiver::udp(ns, PORT);
        // Another pod's address: the other victim's (on the node, the remote pod's).
        let other = if std::ptr::eq(ns, &local.netns) {
            remote
        } else {
            local
        };
        let families = [
            (
                v4.unwrap(),
                attacker.v4.clone().unwrap(),
                other.v4.clone().unwrap(),
                FOREIGN_V4,
            ),
            (
                v6.unwrap(),
                attacker.v6.clone().unwrap(),
                other.v6.clone().unwrap(),
                FOREIGN_V6,
            ),
        ];
        for (destination, own, another_pod, foreign) in families {
            let legit = token("own");
            raw.udp(&own, &destination, (PORT, PORT), &legit);
            assert!(
                receiver.saw(&legit, ARRIVES),
                "{name} {destination}: the pod's own source did not arrive: the path is broken"
            );
            for (what, source) in [
                ("another pod's", another_pod.as_str()),
                ("a foreign", foreign),
            ] {
                let spoofed = token("spoofed");
                raw.udp(source, &destination, (PORT, PORT), &spoofed);
                assert!(
                    !receiver.saw(&spoofed, NEVER),
                    "{name} {destination} received a packet with {what} source {source}"
                );
            }
        }
        // A link-local source never leaves the veth.
        let link_local = token("link-local");
        raw.udp(
            LINK_LOCAL,
            local.v6.as_deref().unwrap(),
            (PORT, PORT),
            &link_local,
        );
        let to_local = Receiver::udp(&local.netns, PORT + 1);
        assert!(!to_local.saw(&link_local, NEVER) && !receiver.saw(&link_local, Duration::ZERO));
    }
}

#[test]
fn router_and_dhcp_server_messages_are_dropped_and_neighbour_discovery_passes() {
    let topology = topology();
    let (attacker, victim) = (&topology.pods[0], &topology.pods[1]);
    let node = &topology.nodes[0].netns;
    let raw = Attacker::in_pod(&attacker.netns);
    let (own4, own6) = (attacker.v4.clone().unwrap(), attacker.v6.clone().unwrap());
    let icmpv6 = Receiver::icmp(node, true);
    // MLDv2 reports go to ff02::16: the node's receiver joins it on the attacker's
    // host veth, as a multicast router would.
    let route = node.ip(&["-6", "route", "get", &own6]);
    let veth = route
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)
        .unwrap()
        .to_owned();
    let index = node.run("cat", &[&format!("/sys/class/net/{veth}/ifindex")]);
    let veth_index: u32 = String::from_utf8_lossy(&index.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let joined = inside(node, || {
        let index = weft_netlink::Netlink::connect()
            .unwrap()
            .link(&veth)
            .unwrap()
            .unwrap()
            .index;
        icmpv6.0.join_multicast_v6(&ip6("ff02::16"), index).unwrap();
        index
    });
    assert!(veth_index == 0 || veth_index == joined);

    // What a pod may send the node: RS, NS (and DAD's from ::), NA, MLD.
    let solicited = "ff02::1:ff00:1"; // fe80::1's solicited-node group
    let target = ip6(GATEWAY_V6).octets();
    let mut passing: Vec<(&str, &str, &str, u8, Vec<u8>)> = Vec::new();
    let router_solicitation = [0u8; 4].to_vec();
    passing.push((
        "router solicitation",
        LINK_LOCAL,
        "ff02::2",
        133,
        router_solicitation,
    ));
    let neighbour_solicitation = [&[0u8; 4][..], &target].concat();
    passing.push((
        "neighbour solicitation",
        LINK_LOCAL,
        solicited,
        135,
        neighbour_solicitation.clone(),
    ));
    passing.push(("DAD probe", "::", solicited, 135, neighbour_solicitation));
    let mut advertisement = vec![0x20, 0, 0, 0]; // override
    advertisement.extend_from_slice(&ip6(LINK_LOCAL).octets());
    passing.push((
        "neighbour advertisement",
        LINK_LOCAL,
        GATEWAY_V6,
        136,
        advertisement,
    ));
    for (what, source, destination, kind, body) in passing {
        let token = token(what);
        let body = [body, nonce_option(&token)].concat();
        raw.icmpv6(source, destination, kind, &body);
        assert!(
            icmpv6.saw(&token, ARRIVES),
            "the node did not get the pod's {what}"
        );
    }
    // MLDv2 report (RFC 3810 section 5.2): one record for ff02::fb whose auxiliary data
    // carries the token.
    let token_mld = token("mld");
    let aux = [token_mld.clone(), vec![0; 16 - token_mld.len() % 16]].concat();
    let mut report = vec![0, 0, 0, 1, 4, u8::try_from(aux.len() / 4).unwrap(), 0, 0];
    report.extend_from_slice(&ip6("ff02::fb").octets());
    report.extend_from_slice(&aux);
    raw.icmpv6(LINK_LOCAL, "ff02::16", 143, &report);
    assert!(
        icmpv6.saw(&token_mld, ARRIVES),
        "the node did not get the pod's MLD report"
    );

    // Router advertisement and redirect, from the same socket to the same node.
    let advertisement = [64u8, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0].to_vec();
    let redirect = [
        &[0u8; 4][..],
        &ip6(LINK_LOCAL).octets(),
        &ip6(FOREIGN_V6).octets(),
    ]
    .concat();
    for (what, destination, kind, body) in [
        ("router advertisement", "ff02::1", 134, advertisement),
        ("redirect", GATEWAY_V6, 137, redirect),
    ] {
        let token = token(what);
        let body = [body, nonce_option(&token)].concat();
        raw.icmpv6(LINK_LOCAL, destination, kind, &body);
        assert!(!icmpv6.saw(&token, NEVER), "the node got the pod's {what}");
    }

    // IPv4: an echo request reaches the node's gateway address; a redirect does not.
    let icmp = Receiver::icmp(node, false);
    let echo = token("echo");
    raw.icmp(
        &own4,
        GATEWAY_V4,
        8,
        0,
        &[&[0, 1, 0, 1][..], &echo].concat(),
    );
    assert!(
        icmp.saw(&echo, ARRIVES),
        "the node did not get the pod's echo request"
    );
    let redirect = token("redirect4");
    let gateway = ip("192.0.2.66");
    let IpAddr::V4(gateway) = gateway else {
        unreachable!()
    };
    raw.icmp(
        &own4,
        GATEWAY_V4,
        5,
        1,
        &[&gateway.octets()[..], &redirect].concat(),
    );
    assert!(
        !icmp.saw(&redirect, NEVER),
        "the node got the pod's ICMP redirect"
    );

    // DHCP and DHCPv6 server replies (source ports 67, 547), to the other pod and, for
    // IPv4, broadcast to the node; the same datagrams from other ports arrive.
    let (client4, client6) = (
        Receiver::udp(&victim.netns, 68),
        Receiver::udp(&victim.netns, 546),
    );
    let broadcast = Receiver::udp(node, 68);
    let cases = [
        (
            "DHCP",
            own4.as_str(),
            victim.v4.as_deref().unwrap(),
            67,
            68,
            &client4,
        ),
        (
            "DHCP broadcast",
            own4.as_str(),
            "255.255.255.255",
            67,
            68,
            &broadcast,
        ),
        (
            "DHCPv6",
            own6.as_str(),
            victim.v6.as_deref().unwrap(),
            547,
            546,
            &client6,
        ),
    ];
    for (what, source, destination, server, client, receiver) in cases {
        let harmless = token(what);
        raw.udp(source, destination, (server + 1000, client), &harmless);
        assert!(
            receiver.saw(&harmless, ARRIVES),
            "{what}: the path is broken"
        );
        let reply = token(what);
        raw.udp(source, destination, (server, client), &reply);
        assert!(
            !receiver.saw(&reply, NEVER),
            "a {what} server reply from a pod arrived"
        );
    }
}

/// Both of a pod's own addresses, `own` (v4, v6), reach `to` (v4, v6), where
/// `receiver` listens; `when` says when, for the failure message.
fn both_families_arrive(
    raw: &Attacker,
    own: (&str, &str),
    to: (&str, &str),
    receiver: &Receiver,
    when: &str,
) {
    for (source, destination) in [(own.0, to.0), (own.1, to.1)] {
        let token = token(when);
        raw.udp(source, destination, (PORT, PORT), &token);
        assert!(
            receiver.saw(&token, ARRIVES),
            "{when}: {source} to {destination} was dropped"
        );
    }
}

#[test]
fn a_pods_first_packet_passes_and_the_guard_follows_pods_and_weftd() {
    let mut topology = topology();
    let victim_v4 = topology.pods[1].v4.clone().unwrap();
    let victim_v6 = topology.pods[1].v6.clone().unwrap();
    let victim = (victim_v4.as_str(), victim_v6.as_str());
    let receiver = Receiver::udp(&topology.pods[1].netns, PORT);
    // The first packets of a pod, right after its ADD returned.
    let newcomer = topology.add_pod(0);
    let raw = Attacker::in_pod(&newcomer.netns);
    let (own4, own6) = (newcomer.v4.clone().unwrap(), newcomer.v6.clone().unwrap());
    let id = newcomer.id.clone();
    let own = (own4.as_str(), own6.as_str());
    both_families_arrive(&raw, own, victim, &receiver, "the first packet after ADD");

    // DEL takes the pod's sources out of the sets.
    let node = &topology.nodes[0];
    let listed = |set: &str| node.netns.run("nft", &["list", "set", "inet", "weft", set]);
    let text = |set: &str| String::from_utf8_lossy(&listed(set).stdout).into_owned();
    assert!(text("pod-sources-v4").contains(&own4));
    node.del(&id, None).expect_ok();
    for (set, address) in [("pod-sources-v4", &own4), ("pod-sources-v6", &own6)] {
        assert!(!text(set).contains(address.as_str()), "{}", text(set));
    }

    // A weftd restart after the table was deleted re-creates it with every restored
    // allocation's sources before serving: the remaining pods keep sending.
    let attacker = &topology.pods[0];
    let (own4, own6) = (attacker.v4.clone().unwrap(), attacker.v6.clone().unwrap());
    assert!(topology.nodes[0]
        .netns
        .run("nft", &["delete", "table", "inet", "weft"])
        .status
        .success());
    topology.restart_weftd(0);
    let raw = Attacker::in_pod(&topology.pods[0].netns);
    let own = (own4.as_str(), own6.as_str());
    both_families_arrive(
        &raw,
        own,
        victim,
        &receiver,
        "after weftd restored the guard",
    );
    let spoofed = token("spoofed-after-restart");
    raw.udp(FOREIGN_V4, &victim_v4, (PORT, PORT), &spoofed);
    assert!(
        !receiver.saw(&spoofed, NEVER),
        "the restored guard let a foreign source through"
    );
}
