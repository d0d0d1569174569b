use super::*;

fn left(destinations: &[&str]) -> Vec<(IpNet, String)> {
    destinations
        .iter()
        .map(|d| (d.parse().unwrap(), "node-2".to_owned()))
        .collect()
}

#[test]
fn report_counts_the_destinations_left_in_this_pass_only() {
    let mut foreign = ForeignRoutes::default();
    foreign.held.insert("10.255.2.0/24".parse().unwrap(), 4);
    assert_eq!(foreign.report(&left(&["10.255.2.0/24"])), 1);
    assert_eq!(
        foreign.report(&left(&["10.255.2.0/24", "2001:db8:1000:0:2::/80"])),
        2
    );
    // Freed: weft programmed them in this pass, or the peer went away.
    assert_eq!(foreign.report(&left(&["2001:db8:1000:0:2::/80"])), 1);
    assert_eq!(foreign.report(&[]), 0);
    assert!(foreign.blocking.is_empty());
}
