//! The synthetic cluster: N peers with their ranges and underlay addresses, the peers
//! file weftd reads, and the node namespace both sides run in.

use crate::{NODE_SUBNET, NODE_V4, NODE_V6};
use serde_json::{json, Value};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use weft_e2e::Netns;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Underlay {
    /// The uplink has IPv4 and IPv6: VXLAN over IPv4.
    Ipv4,
    /// The uplink has only IPv6: VXLAN over IPv6.
    Ipv6,
}

impl Underlay {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Underlay::Ipv4 => "IPv4 underlay",
            Underlay::Ipv6 => "IPv6 underlay",
        }
    }

    /// The VXLAN source address and the IPv4 routes' MTU (1500 - 50 or - 70).
    pub(crate) fn local(self) -> (&'static str, u32) {
        match self {
            Underlay::Ipv4 => (NODE_V4, 1450),
            Underlay::Ipv6 => (NODE_V6, 1430),
        }
    }
}

/// One synthetic peer.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) index: u32,
    pub(crate) subnet: Ipv4Addr,
    pub(crate) underlay_v4: Option<Ipv4Addr>,
    pub(crate) underlay_v6: Ipv6Addr,
    pub(crate) prefix: Ipv6Addr,
}

impl Peer {
    pub(crate) fn new(i: u32, underlay: Underlay) -> Peer {
        let [hi, lo] = (i as u16).to_be_bytes();
        Peer {
            index: i,
            subnet: Ipv4Addr::new(10, hi, lo, 0),
            underlay_v4: (underlay == Underlay::Ipv4)
                .then(|| Ipv4Addr::new(192, 0, 2, 11 + ((i - 1) % 240) as u8)),
            underlay_v6: Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 1, i as u16),
            prefix: Ipv6Addr::new(0x2001, 0xdb8, 0x1000, i as u16, 0, 0, 0, 0),
        }
    }

    pub(crate) fn json(&self) -> Value {
        let mut entry = json!({
            "name": format!("peer-{}", self.index),
            "underlayIPv6": self.underlay_v6.to_string(),
            "ipv6Prefix": format!("{}/80", self.prefix),
            "ipv4Subnet": format!("{}/24", self.subnet),
        });
        if let Some(v4) = self.underlay_v4 {
            entry["underlayIPv4"] = json!(v4.to_string());
        }
        entry
    }

    /// The FDB destination: the peer's underlay address of the node's underlay family.
    pub(crate) fn fdb_dst(&self) -> String {
        match self.underlay_v4 {
            Some(v4) => v4.to_string(),
            None => self.underlay_v6.to_string(),
        }
    }

    /// ip -batch lines that install this peer (as weftd does per the contract).
    pub(crate) fn ip_add(&self) -> String {
        let s = self.subnet;
        format!(
            "route add {s}/24 via {s} dev weft-vxlan onlink src {NODE_SUBNET} proto 119\n\
             neigh add {s} lladdr {} dev weft-vxlan nud permanent\n\
             route add {}/80 via {} dev uplink proto 119\n",
            vtep_mac(s),
            self.prefix,
            self.underlay_v6
        )
    }

    pub(crate) fn bridge_add(&self) -> String {
        format!(
            "fdb add {} dev weft-vxlan dst {} self permanent\n",
            vtep_mac(self.subnet),
            self.fdb_dst()
        )
    }
}

/// ee:ee + the 4 bytes of the subnet's network address (the contract's VTEP MAC).
pub(crate) fn vtep_mac(subnet: Ipv4Addr) -> String {
    let [a, b, c, d] = subnet.octets();
    format!("ee:ee:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

pub(crate) fn peers(n: u32, underlay: Underlay) -> Vec<Peer> {
    (1..=n).map(|i| Peer::new(i, underlay)).collect()
}

/// Change k (0-based) moves one peer, spread over the list, to 10.200.k.0/24.
pub(crate) fn change(peers: &[Peer], k: u32) -> (usize, Ipv4Addr) {
    let n = peers.len();
    let at = (k as usize * 997 + n / 2) % n;
    (at, Ipv4Addr::new(10, 200, k as u8, 0))
}

/// Writes the peers file atomically (temp file + rename), as the contract asks.
pub(crate) fn write_peers(path: &Path, peers: &[Peer]) {
    let doc = Value::Array(peers.iter().map(Peer::json).collect());
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&doc).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A node namespace with its uplink veth, addressed for the underlay.
pub(crate) fn node_netns(underlay: Underlay) -> Netns {
    let ns = Netns::new("pk");
    let mut cidrs = vec![format!("{NODE_V6}/64")];
    if underlay == Underlay::Ipv4 {
        cidrs.insert(0, format!("{NODE_V4}/24"));
    }
    ns.add_stub_uplink(1500, &cidrs);
    ns
}
