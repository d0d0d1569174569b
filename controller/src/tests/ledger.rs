use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn parse(cidr: &str) -> IpNet {
    parse_cidr(cidr).unwrap()
}

fn cidrs(held: &[Held]) -> Vec<String> {
    let mut v: Vec<String> = held.iter().map(|h| h.cidr.to_string()).collect();
    v.sort();
    v
}

fn entry(cidr: &str, node: &str, uid: &str) -> BlockClaim {
    BlockClaim {
        cidr: cidr.into(),
        from: String::new(),
        node_name: node.into(),
        node_uid: uid.into(),
        released_at: None,
    }
}

fn block(first: &str, version: u64, entries: Vec<BlockClaim>) -> WeftClaimBlock {
    let (cidr, name) = block_of(parse(first));
    let mut b = WeftClaimBlock::new(
        &name,
        weft_api::WeftClaimBlockSpec {
            cidr: cidr.to_string(),
            range_length: parse(first).prefix_len(),
            claims: entries,
        },
    );
    b.metadata.resource_version = Some(version.to_string());
    b
}

fn listed(ledger: &Ledger, blocks: Vec<WeftClaimBlock>) {
    ledger.on_block_event(watcher::Event::Init);
    for b in blocks {
        ledger.on_block_event(watcher::Event::InitApply(b));
    }
    ledger.on_block_event(watcher::Event::InitDone);
}

#[test]
fn the_ledger_indexes_claims_by_node_and_follows_the_watch() {
    let ledger = Ledger::default();
    ledger.on_block_event(watcher::Event::Init);
    let v6 = block("2001:db8::/80", 1, vec![entry("2001:db8::/80", "a", "u1")]);
    let v4 = block("10.255.0.0/24", 2, vec![entry("10.255.0.0/24", "a", "u1")]);
    // Each listed block's holders are triggered.
    let holders = ledger.on_block_event(watcher::Event::InitApply(v6));
    assert_eq!(holders, [("a".to_owned(), None)]);
    ledger.on_block_event(watcher::Event::InitApply(v4));
    // Nothing is visible, and the ledger is not ready, before the list is complete.
    assert!(ledger.of_node("a").is_empty());
    assert!(!*ledger.ready.borrow());
    ledger.on_block_event(watcher::Event::InitDone);
    assert!(*ledger.ready.borrow());
    assert_eq!(
        cidrs(&ledger.of_node("a")),
        ["10.255.0.0/24", "2001:db8::/80"]
    );
    assert!(ledger.of_node("a").iter().all(|h| h.live_for("a", "u1")));
    assert!(!ledger.of_node("a")[0].live_for("a", "u2"));

    let v6 = block(
        "2001:db8::/80",
        3,
        vec![entry("2001:db8:0:0:1::/80", "b", "u2")],
    );
    ledger.on_block_event(watcher::Event::Apply(v6));
    assert_eq!(ledger.nodes().len(), 2);
    assert_eq!(cidrs(&ledger.of_node("a")), ["10.255.0.0/24"]);
    // A relist replaces everything: a block deleted while the watch was down is gone.
    listed(
        &ledger,
        vec![block(
            "10.255.0.0/24",
            4,
            vec![entry("10.255.0.0/24", "a", "u1")],
        )],
    );
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
    ledger.apply_block(
        &block("2001:db8::/80", 1, vec![entry("2001:db8::/80", "a", "u1")]),
        false,
    );
    ledger.apply_block(
        &block("10.255.0.0/24", 1, vec![entry("10.255.0.0/24", "a", "u1")]),
        false,
    );
    let (net, from) = ledger.reserve_ipv6(&plan, None).unwrap();
    assert_eq!(
        (net.to_string(), from.as_str()),
        ("2001:db8:0:0:1::/80".into(), "2001:db8::/64")
    );
    assert_eq!(
        ledger.reserve_ipv4(&plan).unwrap().to_string(),
        "10.255.1.0/24"
    );
    // The claim dropped from its block frees its range.
    ledger.apply_block(&block("2001:db8::/80", 2, vec![]), false);
    let (again, _) = ledger.reserve_ipv6(&plan, None).unwrap();
    assert_eq!(again.to_string(), "2001:db8::/80");
    let (v6, v4) = ledger.usage(&plan);
    assert_eq!((v6[0].allocated, v4.allocated), (2, 2));
}

#[test]
fn block_entries_are_claims_and_each_write_replaces_the_last() {
    let ledger = Ledger::default();
    let v1 = block(
        "2001:db8::/80",
        10,
        vec![
            entry("2001:db8::/80", "a", "u1"),
            entry("2001:db8:0:0:1::/80", "b", "u2"),
        ],
    );
    let v4 = block("10.255.0.0/24", 5, vec![entry("10.255.0.0/24", "a", "u1")]);
    listed(&ledger, vec![v1, v4]);
    assert_eq!(
        cidrs(&ledger.of_node("a")),
        ["10.255.0.0/24", "2001:db8::/80"]
    );
    assert_eq!(
        ledger.of_node("b")[0].block,
        "ipv6-2001-db8-0-0-0-0-0-0-74-80"
    );
    // b's entry goes, c's comes: only their nodes are touched.
    let v2 = block(
        "2001:db8::/80",
        12,
        vec![
            entry("2001:db8::/80", "a", "u1"),
            entry("2001:db8:0:0:2::/80", "c", "u3"),
        ],
    );
    let mut touched = ledger.on_block_event(watcher::Event::Apply(v2));
    touched.sort();
    assert_eq!(
        touched,
        [
            ("b".to_owned(), parse_cidr("2001:db8:0:0:1::/80")),
            ("c".to_owned(), parse_cidr("2001:db8:0:0:2::/80"))
        ]
    );
    assert!(ledger.of_node("b").is_empty());
    // A late event of an older version changes nothing.
    let stale = block("2001:db8::/80", 11, vec![entry("2001:db8::/80", "a", "u1")]);
    assert!(ledger
        .on_block_event(watcher::Event::Apply(stale))
        .is_empty());
    assert_eq!(ledger.of_node("c").len(), 1);
    // The block deleted: its claims go, and the other block's stay.
    let gone = block("2001:db8::/80", 13, vec![]);
    ledger.on_block_event(watcher::Event::Delete(gone));
    assert_eq!(cidrs(&ledger.of_node("a")), ["10.255.0.0/24"]);
    // A relist holds what is listed.
    listed(
        &ledger,
        vec![block(
            "10.255.0.0/24",
            20,
            vec![
                entry("10.255.0.0/24", "a", "u1"),
                entry("10.255.1.0/24", "d", "u4"),
            ],
        )],
    );
    let mut nodes = ledger.nodes();
    nodes.sort();
    assert_eq!(nodes, ["a", "d"]);
}

#[test]
fn a_block_not_named_after_its_cidr_or_an_entry_outside_it_is_ignored() {
    let mut b = block("2001:db8::/80", 1, vec![entry("2001:db8::/80", "a", "u1")]);
    b.metadata.name = Some("my-block".into());
    assert!(Held::of_block(&b).is_empty());
    let b = block(
        "2001:db8::/80",
        1,
        vec![
            entry("2001:db8::/80", "a", "u1"),
            // Same range in another text form: one claim, the first.
            entry("2001:0db8:0:0:0:0:0:0/80", "b", "u2"),
            // Outside the block, and of another length.
            entry("2001:db8:0:0:40::/80", "c", "u3"),
            entry("2001:db8::/96", "d", "u4"),
        ],
    );
    let held = Held::of_block(&b);
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].node_name, "a");
    let mut released = entry("2001:db8:0:0:1::/80", "e", "u5");
    released.released_at = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    let held = Held::of_block(&block("2001:db8::/80", 1, vec![released]));
    assert!(held[0].released_at.is_some() && !held[0].live_for("e", "u5"));
}
