//! A node's allocation for tests: 2001:db8:1000:1::/80 and 10.255.1.0/24 in `mode`.

use crate::allocation::NodeAllocation;
use weft_api::Ipv6Routing;
use weft_wire::Mode;

pub fn allocation(mode: Mode) -> NodeAllocation {
    NodeAllocation {
        mode,
        ipv6_prefix: Some("2001:db8:1000:1::/80".parse().unwrap()),
        ipv4_subnet: Some("10.255.1.0/24".parse().unwrap()),
        ipv6_routing: Ipv6Routing::Fabric,
        vxlan_vni: 1,
        vxlan_port: 4789,
    }
}
