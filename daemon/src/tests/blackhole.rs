use super::*;
use weft_api::Ipv6Routing;
use weft_wire::Mode;

fn allocation(mode: Mode) -> NodeAllocation {
    NodeAllocation {
        mode,
        ipv6_prefix: Some("2001:db8:1000:1::/80".parse().unwrap()),
        ipv4_subnet: Some("10.255.1.0/24".parse().unwrap()),
        ipv6_routing: Ipv6Routing::Fabric,
        vxlan_vni: 1,
        vxlan_port: 4789,
    }
}

fn ranges(mode: Mode) -> Vec<String> {
    node_ranges(&allocation(mode))
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn the_served_families_ranges_end_on_the_node() {
    assert_eq!(
        ranges(Mode::Dual),
        ["10.255.1.0/24", "2001:db8:1000:1::/80"]
    );
    assert_eq!(ranges(Mode::Ipv6), ["2001:db8:1000:1::/80"]);
    assert_eq!(ranges(Mode::Ipv4), ["10.255.1.0/24"]);
}
