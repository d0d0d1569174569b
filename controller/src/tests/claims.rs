use super::*;

fn claim(cidr: &str, node: &str, uid: &str) -> WeftClaim {
    let net = parse_cidr(cidr).unwrap();
    let mut c = WeftClaim::new(
        &claim_name(net),
        WeftClaimSpec {
            cidr: cidr.into(),
            from: String::new(),
            node_name: node.into(),
            node_uid: uid.into(),
            released_at: None,
        },
    );
    c.metadata.uid = Some(format!("claim-{cidr}"));
    c
}

fn cidrs(held: &[Held]) -> Vec<String> {
    let mut v: Vec<String> = held.iter().map(|h| h.cidr.to_string()).collect();
    v.sort();
    v
}

#[test]
fn the_ledger_indexes_claims_by_node_and_follows_the_watch() {
    let ledger = Ledger::default();
    ledger.on_event(watcher::Event::Init);
    ledger.on_event(watcher::Event::InitApply(claim("2001:db8::/80", "a", "u1")));
    ledger.on_event(watcher::Event::InitApply(claim("10.255.0.0/24", "a", "u1")));
    // Nothing is visible before the list is complete.
    assert!(ledger.of_node("a").is_empty());
    ledger.on_event(watcher::Event::InitDone);
    assert_eq!(
        cidrs(&ledger.of_node("a")),
        ["10.255.0.0/24", "2001:db8::/80"]
    );
    assert!(ledger.of_node("a").iter().all(|h| h.live_for("a", "u1")));
    assert!(!ledger.of_node("a")[0].live_for("a", "u2"));

    ledger.on_event(watcher::Event::Apply(claim(
        "2001:db8:0:0:1::/80",
        "b",
        "u2",
    )));
    assert_eq!(ledger.nodes().len(), 2);
    ledger.on_event(watcher::Event::Delete(claim("2001:db8::/80", "a", "u1")));
    assert_eq!(cidrs(&ledger.of_node("a")), ["10.255.0.0/24"]);
    // A relist replaces everything: a claim deleted while the watch was down is gone.
    ledger.on_event(watcher::Event::Init);
    ledger.on_event(watcher::Event::InitApply(claim("10.255.0.0/24", "a", "u1")));
    ledger.on_event(watcher::Event::InitDone);
    assert!(ledger.of_node("b").is_empty());
    assert_eq!(ledger.nodes(), ["a"]);
}

#[test]
fn the_ledger_marks_claims_for_the_allocator() {
    let plan = weft_api::WeftNetworkSpec {
        ipv4_network: "10.255.0.0/16".into(),
        ..serde_json::from_value(serde_json::json!({"ipv6Ranges": [{"range": "2001:db8::/64"}]}))
            .unwrap()
    }
    .plan()
    .unwrap();
    let ledger = Ledger::default();
    ledger.insert(Held::of(&claim("2001:db8::/80", "a", "u1")).unwrap());
    ledger.insert(Held::of(&claim("10.255.0.0/24", "a", "u1")).unwrap());
    let (net, from) = ledger.reserve_ipv6(&plan, None).unwrap();
    assert_eq!(
        (net.to_string(), from.as_str()),
        ("2001:db8:0:0:1::/80".into(), "2001:db8::/64")
    );
    assert_eq!(
        ledger.reserve_ipv4(&plan).unwrap().to_string(),
        "10.255.1.0/24"
    );
    // Deleting the claim frees its range.
    ledger.remove(&claim_name(parse_cidr("2001:db8::/80").unwrap()));
    let (again, _) = ledger.reserve_ipv6(&plan, None).unwrap();
    assert_eq!(again.to_string(), "2001:db8::/80");
    let (v6, v4) = ledger.usage(&plan);
    assert_eq!((v6[0].allocated, v4.allocated), (2, 2));
}

#[test]
fn a_claim_not_named_after_its_cidr_is_ignored() {
    let mut c = claim("2001:db8::/80", "a", "u1");
    c.metadata.name = Some("my-own-name".into());
    assert_eq!(Held::of(&c), None);
    // Any text form of the CIDR names the same claim.
    let full = claim("2001:0DB8:0000:0000:0000:0000:0000:0000/80", "a", "u1");
    assert_eq!(full.name_any(), "ipv6-2001-db8-0-0-0-0-0-0-80");
    assert_eq!(
        Held::of(&full).unwrap().cidr,
        parse_cidr("2001:db8::/80").unwrap()
    );
    assert_eq!(parse_cidr("[2001:db8::]/80"), parse_cidr("2001:db8::/80"));
    assert_eq!(parse_cidr("2001:db8::5/80"), None);
    assert_eq!(
        parse_cidr("10.255.1.0/24").unwrap().to_string(),
        "10.255.1.0/24"
    );
}
