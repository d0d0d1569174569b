use super::*;

fn one(json: &str) -> Result<Peer, String> {
    let (peers, errors) = parse_peers(json.as_bytes())?;
    match (peers.into_iter().next(), errors.into_iter().next()) {
        (Some(p), None) => Ok(p),
        (_, Some(e)) => Err(e.to_string()),
        (None, None) => Err("nothing".into()),
    }
}

#[test]
fn the_documented_entry_parses_and_derives_the_vtep_mac() {
    let peer = one(
        r#"[{"name": "node-b", "underlayIPv4": "192.0.2.12", "underlayIPv6": "2001:db8:ffff::12",
            "ipv6Prefix": "2001:db8:1000:2::/80", "ipv4Subnet": "10.255.2.0/24"}]"#,
    )
    .unwrap();
    assert_eq!(peer.name, "node-b");
    assert_eq!(peer.underlay_ipv4, Some("192.0.2.12".parse().unwrap()));
    assert_eq!(
        peer.underlay_ipv6,
        Some("2001:db8:ffff::12".parse().unwrap())
    );
    assert_eq!(
        peer.ipv6_prefix,
        Some("2001:db8:1000:2::/80".parse().unwrap())
    );
    assert_eq!(peer.vtep_mac, Some([0xee, 0xee, 10, 255, 2, 0]));
    assert_eq!(peer.overlay_gateway(), Some("10.255.2.0".parse().unwrap()));
}

#[test]
fn every_ipv6_text_form_and_an_explicit_mac_are_accepted() {
    let peer = one(
        r#"[{"name": "n", "underlayIPv6": "[2001:0DB8:0000:0000:0000:0000:FFFF:0012]",
            "ipv6Prefix": "2001:db8:1000:0002:0:0:0:0/80", "vtepMAC": "02-00-00-00-00-07"}]"#,
    )
    .unwrap();
    assert_eq!(
        peer.underlay_ipv6,
        Some("2001:db8::ffff:12".parse().unwrap())
    );
    assert_eq!(
        peer.ipv6_prefix,
        Some("2001:db8:1000:2::/80".parse().unwrap())
    );
    assert_eq!(peer.vtep_mac, Some([2, 0, 0, 0, 0, 7]));
    assert_eq!(peer.ipv4_subnet, None);
}

#[test]
fn bad_entries_name_the_field_and_value_and_do_not_hide_good_ones() {
    let json = r#"[
        {"name": "good", "underlayIPv4": "192.0.2.12", "ipv4Subnet": "10.255.2.0/24"},
        {"name": "v6-in-v4", "underlayIPv4": "2001:db8::1", "ipv4Subnet": "10.255.3.0/24"},
        {"name": "short", "underlayIPv4": "192.0.2.13", "ipv6Prefix": "2001:db8::/48"},
        {"name": "badmac", "underlayIPv4": "192.0.2.14", "ipv4Subnet": "10.255.4.0/24", "vtepMAC": "01:00:5e:00:00:01"},
        {"name": "nounderlay", "ipv4Subnet": "10.255.5.0/24"},
        {"name": "norange", "underlayIPv4": "192.0.2.15"},
        {"name": "", "underlayIPv4": "192.0.2.16", "ipv4Subnet": "10.255.6.0/24"},
        {"name": 7},
        {"name": "typo", "underlayIPv4": "192.0.2.300", "ipv4Subnet": "10.255.7.0/24"}
    ]"#;
    let (peers, errors) = parse_peers(json.as_bytes()).unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].name, "good");
    let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(messages.len(), 8, "{messages:#?}");
    assert!(
        messages[0].contains("underlayIPv4: '2001:db8::1'"),
        "{}",
        messages[0]
    );
    assert!(
        messages[1].contains("ipv6Prefix") && messages[1].contains("/48"),
        "{}",
        messages[1]
    );
    assert!(
        messages[2].contains("vtepMAC") && messages[2].contains("unicast"),
        "{}",
        messages[2]
    );
    assert!(messages[3].contains("neither underlayIPv4 nor underlayIPv6"));
    assert!(messages[4].contains("neither ipv6Prefix nor ipv4Subnet"));
    assert!(messages[5].contains("name: must not be empty"));
    assert!(messages[6].starts_with("peer 7"), "{}", messages[6]);
    assert!(messages[7].contains("'192.0.2.300'"), "{}", messages[7]);
}

#[test]
fn a_document_that_is_not_an_array_is_an_error() {
    assert!(parse_peers(b"{\"name\": \"x\"}").is_err());
    assert!(parse_peers(b"").is_err());
    assert_eq!(parse_peers(b"[]").unwrap().0, Vec::<Peer>::new());
}
