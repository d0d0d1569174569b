//! The reference topology: the same hops as weft's, built with `ip` and `bridge` only.

use crate::plan::Plan;
use weft_e2e::{build_fabric, wire_node, Netns};

/// weftd's default VXLAN parameters, which the reference copies.
const VNI: u32 = 1;
const VXLAN_PORT: u16 = 4789;
/// The MAC of the pod's gateway on the host veth.
const HOST_MAC: &str = "ee:ee:ee:ee:ee:ee";

/// The reference: fabric, two nodes and two pods, built with `ip` and `bridge` only.
/// Field order is drop order.
#[derive(Debug)]
pub(crate) struct Reference {
    pub(crate) pods: Vec<Netns>,
    pub(crate) nodes: Vec<Netns>,
    _fabric: Netns,
}

impl Reference {
    pub(crate) fn build(plan: &Plan) -> Reference {
        // The same router and uplinks as weft's topology (weft_e2e::Topology).
        let fabric = build_fabric(plan.uplink_mtu);

        let mut nodes = Vec::new();
        let mut pods = Vec::new();
        for (i, me) in plan.nodes.iter().enumerate() {
            let node = Netns::new("rn");
            node.set_sysctls(&["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
            wire_node(
                &fabric,
                &node,
                i + 1,
                plan.uplink_mtu,
                (Some(me.underlay_v4.clone()), Some(me.underlay_v6.clone())),
                None,
            );

            // The VXLAN device as the contract describes weft's; bound to the uplink as
            // weftd binds it (which also gives it the uplink's TSO limits).
            node.ip(&[
                "link",
                "add",
                "weft-vxlan",
                "type",
                "vxlan",
                "id",
                &VNI.to_string(),
                "dstport",
                &VXLAN_PORT.to_string(),
                "local",
                &me.underlay_v4,
                "dev",
                "uplink",
                "nolearning",
            ]);
            node.set_sysctls(&["net.ipv6.conf.weft-vxlan.disable_ipv6=1"]);
            node.ip(&[
                "link",
                "set",
                "weft-vxlan",
                "mtu",
                &plan.vxlan_mtu.to_string(),
                "address",
                &me.vtep_mac,
                "up",
            ]);
            node.ip(&[
                "addr",
                "add",
                &format!("{}/32", me.gateway),
                "dev",
                "weft-vxlan",
            ]);

            // The pod: a veth pair, the pod end created in the pod, addresses, gateways.
            let pod = Netns::new("rp");
            let host = format!("refpod{}", i + 1);
            let link_mtu = plan.link_mtu.to_string();
            node.ip(&[
                "link",
                "add",
                &host,
                "mtu",
                &link_mtu,
                "address",
                HOST_MAC,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "mtu",
                &link_mtu,
                "netns",
                pod.name(),
            ]);
            for (ns, dev) in [(&node, host.as_str()), (&pod, "eth0")] {
                ns.set_sysctls(&[
                    &format!("net.ipv6.conf.{dev}.accept_dad=0"),
                    &format!("net.ipv6.conf.{dev}.accept_ra=0"),
                    &format!("net.ipv6.conf.{dev}.autoconf=0"),
                ]);
            }
            node.ip(&["link", "set", &host, "up"]);
            pod.ip(&["link", "set", "eth0", "up"]);
            let pod_mac = pod_mac(&pod);
            pod.ip(&[
                "addr",
                "add",
                &format!("{}/128", me.pod_v6),
                "dev",
                "eth0",
                "nodad",
            ]);
            pod.ip(&["addr", "add", &format!("{}/32", me.pod_v4), "dev", "eth0"]);
            for gateway in ["fe80::1", "169.254.1.1"] {
                pod.ip(&[
                    "neigh",
                    "add",
                    gateway,
                    "lladdr",
                    HOST_MAC,
                    "dev",
                    "eth0",
                    "nud",
                    "permanent",
                ]);
            }
            let mut v6 = vec![
                "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0",
            ];
            let mtu6 = plan.route_mtu_v6.map(|m| m.to_string());
            if let Some(m) = &mtu6 {
                v6.extend(["mtu", m]);
            }
            pod.ip(&v6);
            let mut v4 = vec![
                "-4",
                "route",
                "add",
                "default",
                "via",
                "169.254.1.1",
                "dev",
                "eth0",
                "onlink",
            ];
            let mtu4 = plan.route_mtu_v4.map(|m| m.to_string());
            if let Some(m) = &mtu4 {
                v4.extend(["mtu", m]);
            }
            pod.ip(&v4);
            node.ip(&[
                "-6",
                "route",
                "add",
                &format!("{}/128", me.pod_v6),
                "dev",
                &host,
            ]);
            node.ip(&[
                "-4",
                "route",
                "add",
                &format!("{}/32", me.pod_v4),
                "dev",
                &host,
                "scope",
                "link",
            ]);
            for addr in [&me.pod_v6, &me.pod_v4] {
                node.ip(&[
                    "neigh",
                    "add",
                    addr,
                    "lladdr",
                    &pod_mac,
                    "dev",
                    &host,
                    "nud",
                    "permanent",
                ]);
            }
            nodes.push(node);
            pods.push(pod);
        }

        // Each node's peer: the other one.
        for (i, node) in nodes.iter().enumerate() {
            let me = &plan.nodes[i];
            let peer = &plan.nodes[1 - i];
            node.ip(&[
                "route",
                "add",
                &peer.ipv4_subnet,
                "via",
                &peer.gateway,
                "dev",
                "weft-vxlan",
                "onlink",
                "src",
                &me.gateway,
            ]);
            node.ip(&[
                "neigh",
                "add",
                &peer.gateway,
                "lladdr",
                &peer.vtep_mac,
                "dev",
                "weft-vxlan",
                "nud",
                "permanent",
            ]);
            let out = node.run(
                "bridge",
                &[
                    "fdb",
                    "add",
                    &peer.vtep_mac,
                    "dev",
                    "weft-vxlan",
                    "dst",
                    &peer.underlay_v4,
                    "self",
                    "permanent",
                ],
            );
            assert!(
                out.status.success(),
                "bridge fdb add: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            node.ip(&[
                "-6",
                "route",
                "add",
                &peer.ipv6_prefix,
                "via",
                &peer.underlay_v6,
                "dev",
                "uplink",
            ]);
        }
        Reference {
            pods,
            nodes,
            _fabric: fabric,
        }
    }
}

pub(crate) fn pod_mac(pod: &Netns) -> String {
    let out = pod.ip(&["-o", "link", "show", "dev", "eth0"]);
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC on the reference pod's eth0: {out}"))
        .to_owned()
}
