//! What both topologies share: the addresses and MTUs weft set up, read from weft's
//! pods and nodes for the reference to copy; and reading links back for the report.

use weft_e2e::{Netns, Topology};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V6,
    V4,
}

impl Family {
    /// Both, in the order the report shows them.
    pub(crate) const BOTH: [Family; 2] = [Family::V6, Family::V4];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Family::V6 => "IPv6 routed",
            Family::V4 => "IPv4 over VXLAN",
        }
    }
}

/// One node's part, as weft set it up and the reference copies it.
#[derive(Debug, Clone)]
pub(crate) struct NodePlan {
    pub(crate) underlay_v4: String,
    pub(crate) underlay_v6: String,
    pub(crate) ipv6_prefix: String,
    pub(crate) ipv4_subnet: String,
    pub(crate) gateway: String,
    pub(crate) vtep_mac: String,
    pub(crate) pod_v6: String,
    pub(crate) pod_v4: String,
}

/// The addresses and MTUs both topologies use.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) nodes: [NodePlan; 2],
    pub(crate) uplink_mtu: u32,
    /// The pod's eth0 MTU.
    pub(crate) link_mtu: u32,
    /// The MTU on the pod's default route of each family, if any.
    pub(crate) route_mtu_v6: Option<u32>,
    pub(crate) route_mtu_v4: Option<u32>,
    /// weft-vxlan's MTU on weft's node.
    pub(crate) vxlan_mtu: u32,
    /// weft's pod routes, for the report.
    weft_pod_routes: String,
}

impl Plan {
    pub(crate) fn from_weft(weft: &Topology) -> Plan {
        let node = |i: usize| {
            let pod = weft.pods_of(i)[0];
            NodePlan {
                underlay_v4: weft.underlay_v4(i).unwrap(),
                underlay_v6: weft.underlay_v6(i).unwrap(),
                ipv6_prefix: weft.ipv6_prefix(i),
                ipv4_subnet: weft.ipv4_subnet(i),
                gateway: weft.overlay_gateway(i),
                vtep_mac: weft.vtep_mac(i),
                pod_v6: pod.v6.clone().unwrap(),
                pod_v4: pod.v4.clone().unwrap(),
            }
        };
        let pod = &weft.pods_of(0)[0].netns;
        let pod_mtu = link_mtu(pod, "eth0");
        let routes_v4 = pod.ip(&["-4", "route", "show", "default"]);
        let routes_v6 = pod.ip(&["-6", "route", "show", "default"]);
        let vxlan_mtu = link_mtu(&weft.nodes[0].netns, "weft-vxlan");
        Plan {
            nodes: [node(0), node(1)],
            uplink_mtu: link_mtu(&weft.nodes[0].netns, "uplink"),
            link_mtu: pod_mtu,
            route_mtu_v6: route_mtu(&routes_v6),
            route_mtu_v4: route_mtu(&routes_v4),
            vxlan_mtu,
            weft_pod_routes: one_line(format!("{routes_v6}{routes_v4}").as_bytes()),
        }
    }

    /// The MTU a packet of `family` from the pod meets: the route's, else the link's.
    pub(crate) fn path_mtu(&self, family: Family) -> u32 {
        match family {
            Family::V6 => self.route_mtu_v6.unwrap_or(self.link_mtu),
            Family::V4 => self.route_mtu_v4.unwrap_or(self.link_mtu),
        }
    }

    pub(crate) fn server_addr(&self, family: Family) -> &str {
        match family {
            Family::V6 => &self.nodes[1].pod_v6,
            Family::V4 => &self.nodes[1].pod_v4,
        }
    }

    pub(crate) fn facts(&self) -> Vec<String> {
        let [a, b] = &self.nodes;
        vec![
            format!(
                "pods: A {} {} on node A ({} {}), B {} {} on node B ({} {}); both topologies \
                 use these addresses",
                a.pod_v6,
                a.pod_v4,
                a.underlay_v4,
                a.underlay_v6,
                b.pod_v6,
                b.pod_v4,
                b.underlay_v4,
                b.underlay_v6
            ),
            format!(
                "MTUs (from weft's pod and node, copied by the reference): uplink {}, pod eth0 {}, \
                 IPv6 route {}, IPv4 route {}, weft-vxlan {}",
                self.uplink_mtu,
                self.link_mtu,
                self.route_mtu_v6
                    .map_or("(link)".to_owned(), |m| m.to_string()),
                self.route_mtu_v4
                    .map_or("(link)".to_owned(), |m| m.to_string()),
                self.vxlan_mtu
            ),
            format!("weft pod A's default routes: {}", self.weft_pod_routes),
        ]
    }
}

pub(crate) fn link_mtu(ns: &Netns, dev: &str) -> u32 {
    let out = ns.ip(&["-o", "link", "show", "dev", dev]);
    out.split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no mtu for {dev} in {}: {out}", ns.name()))
}

/// `mtu N` of the first route in `ip route` output (also `mtu lock N`).
pub(crate) fn route_mtu(routes: &str) -> Option<u32> {
    let line = routes.lines().next()?;
    let mut words = line.split_whitespace().skip_while(|w| *w != "mtu").skip(1);
    let first = words.next()?;
    let value = if first == "lock" {
        words.next()?
    } else {
        first
    };
    value.parse().ok()
}

pub(crate) fn one_line(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `ip -d link show DEV` from the MTU on, without the peer's MAC and link index.
pub(crate) fn link_details(ns: &Netns, dev: &str) -> String {
    let out = ns.ip(&["-d", "-o", "link", "show", "dev", dev]);
    let text = one_line(out.as_bytes()).replace('\\', "");
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.find("mtu ") {
        Some(at) => text[at..].to_owned(),
        None => text,
    }
}

/// `ip -d link show weft-vxlan`, the VXLAN part only.
pub(crate) fn vxlan_details(ns: &Netns) -> String {
    let out = ns.ip(&["-d", "link", "show", "dev", "weft-vxlan"]);
    let text = one_line(out.as_bytes());
    match text.find("vxlan id") {
        Some(at) => {
            let mtu = text
                .split_whitespace()
                .skip_while(|w| *w != "mtu")
                .nth(1)
                .unwrap_or("?");
            format!("mtu {mtu} {}", &text[at..])
        }
        None => text,
    }
}
