use super::*;
use std::sync::{Arc, Mutex};
use weft_api::WeftNetworkSpec;

fn plan(json: serde_json::Value) -> Plan {
    serde_json::from_value::<WeftNetworkSpec>(json)
        .unwrap()
        .plan()
        .unwrap()
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn v6(pool: &mut Pool, plan: &Plan, zone: Option<&str>) -> String {
    let (prefix, _) = pool.reserve_ipv6(plan, zone).unwrap();
    pool.settle(IpNet::V6(prefix), true);
    prefix.to_string()
}

fn zoned() -> Plan {
    plan(serde_json::json!({"ipv6Ranges": [
        {"range": "2001:db8:1000::/64", "zone": "z1"},
        {"range": "2001:db8:2000::/64", "zone": "z2"},
        {"range": "2001:db8:9000::/118", "prefixLength": 120},
    ]}))
}

#[test]
fn each_zone_takes_its_own_ranges_sequentially() {
    let p = zoned();
    let mut pool = Pool::default();
    assert_eq!(v6(&mut pool, &p, Some("z1")), "2001:db8:1000::/80");
    assert_eq!(v6(&mut pool, &p, Some("z2")), "2001:db8:2000::/80");
    assert_eq!(v6(&mut pool, &p, Some("z1")), "2001:db8:1000:0:1::/80");
    assert_eq!(v6(&mut pool, &p, Some("z2")), "2001:db8:2000:0:1::/80");
    assert_eq!(v6(&mut pool, &p, Some("z1")), "2001:db8:1000:0:2::/80");
}

#[test]
fn zone_less_ranges_serve_every_zone_after_its_own() {
    let p = zoned();
    let mut pool = Pool::default();
    // A node without a zone, or of a zone without a range, takes from the shared range.
    assert_eq!(v6(&mut pool, &p, None), "2001:db8:9000::/120");
    assert_eq!(v6(&mut pool, &p, Some("z9")), "2001:db8:9000::100/120");
    // Once z1's range is full, z1 nodes fall back to the shared range.
    let small = plan(serde_json::json!({"ipv6Ranges": [
        {"range": "2001:db8:1000::/119", "zone": "z1", "prefixLength": 120},
        {"range": "2001:db8:9000::/118", "prefixLength": 120},
    ]}));
    let mut pool = Pool::default();
    assert_eq!(v6(&mut pool, &small, Some("z1")), "2001:db8:1000::/120");
    assert_eq!(v6(&mut pool, &small, Some("z1")), "2001:db8:1000::100/120");
    assert_eq!(v6(&mut pool, &small, Some("z1")), "2001:db8:9000::/120");
    let ranges: Vec<String> = ranges_for_zone(&small, Some("z1"))
        .iter()
        .map(|r| r.range.to_string())
        .collect();
    assert_eq!(ranges, ["2001:db8:1000::/119", "2001:db8:9000::/118"]);
}

#[test]
fn a_zone_no_range_serves_is_named() {
    let p =
        plan(serde_json::json!({"ipv6Ranges": [{"range": "2001:db8:1000::/64", "zone": "z1"}]}));
    let mut pool = Pool::default();
    let e = pool.reserve_ipv6(&p, Some("z2")).unwrap_err();
    assert_eq!(e.to_string(), "no IPv6 range serves zone z2");
    let e = pool.reserve_ipv6(&p, None).unwrap_err();
    assert_eq!(e.to_string(), "no IPv6 range serves nodes without a zone");
}

#[test]
fn reserved_intervals_and_the_gateway_are_skipped_as_bosh_does() {
    // Seed 004's prefix-delegation subnet: the low addresses and the gateway are
    // reserved, so the first /80 (which holds them) is never delegated.
    let p = plan(serde_json::json!({"ipv6Ranges": [{
        "range": "2001:db8:1000::/64", "zone": "z1",
        "reserved": ["2001:db8:1000:: - 2001:db8:1000::ffff"],
        "gateway": "2001:db8:1000::1"}]}));
    let mut pool = Pool::default();
    assert_eq!(v6(&mut pool, &p, Some("z1")), "2001:db8:1000:0:1::/80");
    // A reserved interval spanning prefixes 2..=4 and a gateway inside prefix 6.
    let p = plan(serde_json::json!({"ipv6Ranges": [{
        "range": "2001:db8:1000::/64",
        "reserved": ["2001:db8:1000:0:2::5-2001:db8:1000:0:4::1", "2001:db8:1000:0:1::/80"],
        "gateway": "2001:db8:1000:0:6::1"}]}));
    let mut pool = Pool::default();
    let got: Vec<String> = (0..4).map(|_| v6(&mut pool, &p, None)).collect();
    assert_eq!(
        got,
        [
            "2001:db8:1000::/80",
            "2001:db8:1000:0:5::/80",
            "2001:db8:1000:0:7::/80",
            "2001:db8:1000:0:8::/80"
        ]
    );
    // Overlapping reserved intervals are skipped as their union.
    let p = plan(serde_json::json!({"ipv6Ranges": [{
        "range": "2001:db8:1000::/64",
        "reserved": ["2001:db8:1000::-2001:db8:1000:0:3::", "2001:db8:1000:0:1::-2001:db8:1000:0:1::1"]}]}));
    let mut pool = Pool::default();
    assert_eq!(v6(&mut pool, &p, None), "2001:db8:1000:0:4::/80");
}

#[test]
fn exhaustion_names_the_zone_and_ranges() {
    let p = plan(serde_json::json!({"ipv6Ranges": [
        {"range": "2001:db8:1000::/119", "zone": "z1", "prefixLength": 120, "gateway": "2001:db8:1000::1"},
        {"range": "2001:db8:9000::/120", "prefixLength": 120},
    ], "ipv4Network": "10.255.0.0/27", "ipv4SubnetLength": 28}));
    let mut pool = Pool::default();
    assert_eq!(v6(&mut pool, &p, Some("z1")), "2001:db8:1000::100/120");
    assert_eq!(v6(&mut pool, &p, Some("z1")), "2001:db8:9000::/120");
    let e = pool.reserve_ipv6(&p, Some("z1")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no free IPv6 prefix left for zone z1 in 2001:db8:1000::/119 (/120), 2001:db8:9000::/120 (/120)"
    );
    for want in ["10.255.0.0/28", "10.255.0.16/28"] {
        let s = pool.reserve_ipv4(&p).unwrap();
        pool.settle(IpNet::V4(s), true);
        assert_eq!(s.to_string(), want);
    }
    let e = pool.reserve_ipv4(&p).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no free /28 subnet left in the IPv4 network 10.255.0.0/27"
    );
    assert_eq!(
        pool.ipv4_usage(&p),
        RangeUsage {
            range: "10.255.0.0/27".into(),
            allocated: 2,
            free: 0
        }
    );
}

#[test]
fn a_released_range_stays_taken_until_its_claim_is_deleted() {
    let p = plan(serde_json::json!({"ipv6Ranges": [{"range": "2001:db8:1000::/64"}]}));
    let mut pool = Pool::default();
    assert_eq!(v6(&mut pool, &p, None), "2001:db8:1000::/80");
    assert_eq!(v6(&mut pool, &p, None), "2001:db8:1000:0:1::/80");
    // The first node is deleted: its claim is released but still exists (cooling), so
    // the pool keeps it marked and the next node gets a new prefix.
    assert_eq!(v6(&mut pool, &p, None), "2001:db8:1000:0:2::/80");
    // The cooldown ends and the claim is deleted: the lowest prefix is free again.
    pool.unmark(net("2001:db8:1000::/80"));
    assert_eq!(v6(&mut pool, &p, None), "2001:db8:1000::/80");

    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let cooldown = Duration::from_secs(30);
    assert_eq!(cooldown_left(t0, cooldown, t0), cooldown);
    assert_eq!(
        cooldown_left(t0, cooldown, t0 + Duration::from_secs(12)),
        Duration::from_secs(18)
    );
    assert_eq!(
        cooldown_left(t0, cooldown, t0 + Duration::from_secs(30)),
        Duration::ZERO
    );
    assert_eq!(
        cooldown_left(t0, cooldown, t0 + Duration::from_secs(99)),
        Duration::ZERO
    );
    // Released "in the future" (a replica's clock ahead): the full cooldown from now.
    assert_eq!(
        cooldown_left(t0 + Duration::from_secs(5), cooldown, t0),
        cooldown
    );
}

#[test]
fn ipv4_takes_the_lowest_free_subnet_and_respects_other_lengths() {
    let p = plan(serde_json::json!({"mode": "ipv4", "ipv4Network": "10.255.0.0/16"}));
    let mut pool = Pool::default();
    // A /23 claimed under an older subnet length covers the second and third /24.
    pool.mark(net("10.255.2.0/23"));
    pool.mark(net("10.255.5.0/24"));
    let mut got = Vec::new();
    for _ in 0..4 {
        let s = pool.reserve_ipv4(&p).unwrap();
        pool.settle(IpNet::V4(s), true);
        got.push(s.to_string());
    }
    assert_eq!(
        got,
        [
            "10.255.0.0/24",
            "10.255.1.0/24",
            "10.255.4.0/24",
            "10.255.6.0/24"
        ]
    );
    // A claim for the whole network (a supernet) leaves nothing.
    pool.mark(net("10.0.0.0/8"));
    assert!(pool.reserve_ipv4(&p).is_err());
}

#[test]
fn ipv6_claims_of_another_length_block_what_they_overlap() {
    let p = plan(
        serde_json::json!({"ipv6Ranges": [{"range": "2001:db8:1000::/64", "prefixLength": 96}]}),
    );
    let mut pool = Pool::default();
    // A /80 from before the prefix length changed covers the first 65,536 /96s.
    pool.mark(net("2001:db8:1000::/80"));
    assert_eq!(v6(&mut pool, &p, None), "2001:db8:1000:0:1::/96");
    // A claim for the range's supernet blocks the whole range.
    pool.mark(net("2001:db8::/32"));
    assert!(matches!(
        pool.reserve_ipv6(&p, None),
        Err(Exhausted::Ipv6 { .. })
    ));
}

#[test]
fn racing_workers_never_get_the_same_candidate() {
    let p = Arc::new(plan(
        serde_json::json!({"ipv6Ranges": [{"range": "2001:db8:1000::/64", "gateway": "2001:db8:1000:0:3::1"}], "ipv4SubnetLength": 28}),
    ));
    let pool = Arc::new(Mutex::new(Pool::default()));
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (p, pool) = (p.clone(), pool.clone());
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..200 {
                    let (v6, _) = pool.lock().unwrap().reserve_ipv6(&p, None).unwrap();
                    let v4 = pool.lock().unwrap().reserve_ipv4(&p).unwrap();
                    // Some creates fail: those candidates go back and are reused.
                    let created = (w + i) % 7 != 0;
                    let mut pool = pool.lock().unwrap();
                    pool.settle(IpNet::V6(v6), created);
                    pool.settle(IpNet::V4(v4), created);
                    if created {
                        mine.push(IpNet::V6(v6));
                        mine.push(IpNet::V4(v4));
                    }
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<IpNet> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "a candidate went to two workers");
    assert!(
        !all.contains(&net("2001:db8:1000:0:3::/80")),
        "the gateway's prefix"
    );
    // The candidates whose create failed were reused: the held ones are the lowest.
    let held_v6 = all.iter().filter(|n| matches!(n, IpNet::V6(_))).count();
    assert_eq!(
        pool.lock().unwrap().ipv6_usage(&p.ipv6_ranges[0]).allocated,
        held_v6 as u64
    );
}

#[test]
fn a_candidate_in_flight_survives_a_relist_and_a_deletion() {
    let p = plan(serde_json::json!({"ipv6Ranges": [{"range": "2001:db8:1000::/64"}]}));
    let mut pool = Pool::default();
    let (a, _) = pool.reserve_ipv6(&p, None).unwrap();
    pool.replace([net("2001:db8:1000:0:1::/80")]);
    pool.unmark(IpNet::V6(a));
    assert!(pool.is_marked(IpNet::V6(a)));
    assert_eq!(v6(&mut pool, &p, None), "2001:db8:1000:0:2::/80");
    // The create failed: the candidate is free again.
    pool.settle(IpNet::V6(a), false);
    assert_eq!(v6(&mut pool, &p, None), a.to_string());
}

#[test]
fn every_ipv6_text_form_means_the_same_range() {
    let forms = [
        serde_json::json!({"range": "2001:db8:1000::/64", "reserved": ["2001:db8:1000::/80"], "gateway": "2001:db8:1000:0:1::1"}),
        serde_json::json!({"range": "2001:0db8:1000:0000:0000:0000:0000:0000/64",
            "reserved": ["2001:0db8:1000:0000:0000:0000:0000:0000-2001:0db8:1000:0000:0000:ffff:ffff:ffff"],
            "gateway": "2001:0DB8:1000:0:1:0:0:1"}),
        serde_json::json!({"range": "2001:DB8:1000:0::/64", "reserved": ["2001:db8:1000:0::0/80"],
            "gateway": "[2001:db8:1000::1:0:0:1]"}),
    ];
    for form in forms {
        let p = plan(serde_json::json!({ "ipv6Ranges": [form] }));
        let mut pool = Pool::default();
        // A claim written in the full, upper-case form marks the same prefix.
        let claimed = weft_wire::parse_ipv6_prefix(
            "cidr",
            "2001:0DB8:1000:0000:0002:0000:0000:0000/80",
            64..=128,
        )
        .unwrap();
        pool.mark(IpNet::V6(claimed));
        let got: Vec<String> = (0..2).map(|_| v6(&mut pool, &p, None)).collect();
        assert_eq!(
            got,
            ["2001:db8:1000:0:3::/80", "2001:db8:1000:0:4::/80"],
            "{form}"
        );
    }
}

#[test]
fn usage_counts_allocated_and_free_prefixes() {
    let p = plan(
        serde_json::json!({"ipv6Ranges": [{"range": "2001:db8:1000::/112", "prefixLength": 120,
        "reserved": ["2001:db8:1000::-2001:db8:1000::1ff"], "gateway": "2001:db8:1000::1"}]}),
    );
    let mut pool = Pool::default();
    for _ in 0..3 {
        v6(&mut pool, &p, None);
    }
    // 256 prefixes, 2 reserved, 3 allocated.
    assert_eq!(
        pool.ipv6_usage(&p.ipv6_ranges[0]),
        RangeUsage {
            range: "2001:db8:1000::/112".into(),
            allocated: 3,
            free: 251
        }
    );
    // A huge range does not overflow: the 2^72 /120s of a /48 saturate the count.
    let p =
        plan(serde_json::json!({"ipv6Ranges": [{"range": "2001:db8::/48", "prefixLength": 120}]}));
    assert_eq!(Pool::default().ipv6_usage(&p.ipv6_ranges[0]).free, u64::MAX);
}
