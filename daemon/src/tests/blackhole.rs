use super::*;
use crate::allocation::fixture::allocation;
use weft_wire::Mode;

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
