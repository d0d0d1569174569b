use super::super::table::{Table, Tables};
use super::*;
use crate::allocation::fixture::allocation;
use weft_wire::Mode;

fn tables(protection: &HostProtection) -> Vec<(Table, Vec<String>)> {
    let mut tables = Tables::default();
    protection.declare(&mut tables);
    tables
        .iter()
        .map(|(d, _)| {
            let rules = d.chains.iter().flat_map(|c| c.rules.clone()).collect();
            (d.table, rules)
        })
        .collect()
}

#[test]
fn the_knob_reads_accept_or_drop_and_defaults_to_accept() {
    assert_eq!("accept".parse(), Ok(PodHostAccess::Accept));
    assert_eq!("drop".parse(), Ok(PodHostAccess::Drop));
    assert!("reject".parse::<PodHostAccess>().is_err());
    assert_eq!(PodHostAccess::default(), PodHostAccess::Accept);
    assert_eq!(PodHostAccess::Drop.to_string(), "drop");
}

#[test]
fn accept_keeps_only_the_arp_rule_for_the_pods_gateways() {
    let protection = HostProtection::for_node(&allocation(Mode::Dual), PodHostAccess::Accept)
        .expect("an IPv4 node answers ARP for its gateways on weft's interfaces only");
    assert_eq!(
        tables(&protection),
        [(
            Table::WeftArp,
            vec![
                "iifname != \"weft*\" arp operation request arp daddr ip { 169.254.1.1, 10.255.1.0 } drop"
                    .to_owned()
            ]
        )]
    );
    assert_eq!(
        HostProtection::for_node(&allocation(Mode::Ipv6), PodHostAccess::Accept),
        None,
        "an IPv6-only node with pods reaching every port declares nothing"
    );
}

#[test]
fn drop_guards_the_pods_veths_and_keeps_what_pods_need() {
    let protection =
        HostProtection::for_node(&allocation(Mode::Ipv6), PodHostAccess::Drop).unwrap();
    let tables = tables(&protection);
    assert_eq!(tables.len(), 1, "no ARP without IPv4: {tables:?}");
    let (table, rules) = &tables[0];
    assert_eq!(*table, Table::Weft);
    assert_eq!(rules.first().unwrap(), "iifname != \"weft*\" accept");
    assert_eq!(rules[1], "iifname \"weft-vxlan\" accept");
    for kept in [
        "ct state established,related accept",
        "ct status dnat accept",
        "meta l4proto { icmp, ipv6-icmp } accept",
        "meta l4proto { tcp, udp } th dport 53 accept",
    ] {
        assert!(rules.iter().any(|r| r == kept), "{kept} missing: {rules:?}");
    }
    assert_eq!(rules.last().unwrap(), "drop");
}
