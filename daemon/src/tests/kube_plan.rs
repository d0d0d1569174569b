use super::*;
use weft_api::WeftNetworkSpec;

fn plan() -> PlanRanges {
    let spec: WeftNetworkSpec = serde_json::from_value(serde_json::json!({
        "mode": "dual",
        "ipv6Ranges": [
            {"range": "2001:db8:1000:1::/64", "zone": "z1", "prefixLength": 80},
            {"range": "2001:db8:2000::/64", "prefixLength": 96},
        ],
        "ipv4Network": "10.255.0.0/16",
        "ipv4SubnetLength": 24,
    }))
    .unwrap();
    PlanRanges::of(&WeftNetwork::new("default", spec)).unwrap()
}

fn peer(v6: Option<&str>, v4: Option<&str>) -> Peer {
    Peer {
        name: "node-x".into(),
        underlay_ipv4: None,
        underlay_ipv6: Some("2001:db8:ffff::9".parse().unwrap()),
        ipv6_prefix: v6.map(|p| p.parse().unwrap()),
        ipv4_subnet: v4.map(|s| s.parse().unwrap()),
        vtep_mac: None,
    }
}

#[test]
fn ranges_of_the_plan_are_inside() {
    let plan = plan();
    for (v6, v4) in [
        (Some("2001:db8:1000:1:5::/80"), Some("10.255.7.0/24")),
        (Some("2001:db8:2000::7:0:0/96"), None),
        (None, Some("10.255.255.0/24")),
        (None, None),
    ] {
        assert_eq!(plan.outside(&peer(v6, v4)), None, "{v6:?} {v4:?}");
    }
}

#[test]
fn ranges_elsewhere_or_of_another_length_are_outside() {
    let plan = plan();
    for (v6, v4, says) in [
        (
            Some("2001:db8:3000::/80"),
            None,
            "ipv6Prefix 2001:db8:3000::/80",
        ),
        // The whole range, or a /80 of the /96 range: not prefixes the plan cuts.
        (
            Some("2001:db8:1000:1::/64"),
            None,
            "ipv6Prefix 2001:db8:1000:1::/64",
        ),
        (
            Some("2001:db8:2000::/80"),
            None,
            "ipv6Prefix 2001:db8:2000::/80",
        ),
        (None, Some("10.254.1.0/24"), "ipv4Subnet 10.254.1.0/24"),
        (None, Some("10.255.0.0/16"), "ipv4Subnet 10.255.0.0/16"),
        (
            Some("2001:db8:1000:1:5::/80"),
            Some("192.0.2.0/24"),
            "ipv4Subnet 192.0.2.0/24",
        ),
    ] {
        let why = plan.outside(&peer(v6, v4)).unwrap_or_default();
        assert!(why.starts_with(says), "{v6:?} {v4:?}: {why}");
    }
}
