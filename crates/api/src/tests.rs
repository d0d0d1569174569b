use super::*;
use std::path::PathBuf;

fn crd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds")
}

/// The checked-in CRDs are what the Rust types generate. `WEFT_UPDATE_CRDS=1 cargo test
/// -p weft-api` rewrites them after a type change.
#[test]
fn checked_in_crds_are_current() {
    let update = std::env::var_os("WEFT_UPDATE_CRDS").is_some();
    for crd in crds() {
        let name = crd.metadata.name.clone().unwrap();
        let path = crd_dir().join(format!("{name}.json"));
        let generated = serde_json::to_string_pretty(&crd).unwrap() + "\n";
        if update {
            std::fs::write(&path, &generated).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "{} is stale: run WEFT_UPDATE_CRDS=1 cargo test -p weft-api",
            path.display()
        );
    }
}

#[test]
fn claim_names_are_canonical_whatever_the_text_form() {
    let a: ipnet::IpNet = "2001:db8:1000:1::/80".parse().unwrap();
    let b: ipnet::IpNet = "2001:0DB8:1000:0001:0000:0000:0000:0000/80"
        .to_lowercase()
        .parse()
        .unwrap();
    assert_eq!(claim_name(a), "ipv6-2001-db8-1000-1-0-0-0-0-80");
    assert_eq!(claim_name(a), claim_name(b));
    assert_eq!(
        claim_name("10.255.1.0/24".parse().unwrap()),
        "ipv4-10-255-1-0-24"
    );
}

fn spec(json: serde_json::Value) -> WeftNetworkSpec {
    serde_json::from_value(json).unwrap()
}

#[test]
fn defaults_follow_the_documented_plan() {
    let s = spec(serde_json::json!({"ipv6Ranges": [{"range": "2001:db8:1000::/64"}]}));
    let plan = s.plan().unwrap();
    assert_eq!(plan.mode, weft_wire::Mode::Dual);
    assert_eq!(plan.ipv6_routing, Ipv6Routing::Fabric);
    assert_eq!(plan.ipv4_network.to_string(), "10.255.0.0/16");
    assert_eq!(plan.ipv4_subnet_length, 24);
    assert_eq!(plan.ipv6_ranges[0].prefix_length, 80);
    assert_eq!((plan.vxlan_vni, plan.vxlan_port), (1, 4789));
    assert_eq!(plan.release_cooldown.as_secs(), 30);
}

#[test]
fn reserved_entries_take_the_bosh_forms_and_every_ipv6_text_form() {
    let s = spec(serde_json::json!({"ipv6Ranges": [{
        "range": "2001:0db8:1000:0000::/64", "zone": "z1",
        "reserved": ["2001:db8:1000::/80", "2001:db8:1000:0:1::-2001:db8:1000:0:1:ffff:ffff:ffff", "[2001:db8:1000::ffff:1]"],
        "gateway": "2001:db8:1000::1"}]}));
    let plan = s.plan().unwrap();
    let r = &plan.ipv6_ranges[0];
    assert_eq!(r.zone.as_deref(), Some("z1"));
    assert_eq!(r.reserved.len(), 4);
    assert_eq!(
        r.reserved[1].1,
        "2001:db8:1000:0:1:ffff:ffff:ffff"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
    );
}

#[test]
fn bad_specs_name_every_field_and_value() {
    let s = spec(serde_json::json!({
        "mode": "triple",
        "ipv6Ranges": [
            {"range": "2001:db8:1000::/64", "prefixLength": 56},
            {"range": "2001:db8:1000::/72"},
            {"range": "2001:db8:2000::/64", "reserved": ["2001:db8:3000::/80", "x::y"], "gateway": "10.0.0.1"},
            {"range": "2001:db8:zz::/64"},
            {"range": "2001:db8:1000:0:1::/80"}
        ],
        "ipv4Network": "10.255.0.0/16",
        "ipv4SubnetLength": 30,
        "vxlanVNI": 16777216,
        "vxlanPort": 0
    }));
    let errors: Vec<String> = s
        .plan()
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect();
    let has = |needle: &str| errors.iter().any(|e| e.contains(needle));
    for needle in [
        "spec.mode: 'triple'",
        "spec.ipv6Ranges[0].prefixLength: 56 is not between 64 and 120",
        "spec.ipv6Ranges[2].reserved[0]: '2001:db8:3000::/80' is outside the range 2001:db8:2000::/64",
        "spec.ipv6Ranges[2].reserved[1]: 'x::y'",
        "spec.ipv6Ranges[2].gateway: '10.0.0.1' is not IPv6",
        "spec.ipv6Ranges[3].range: '2001:db8:zz::/64'",
        "spec.ipv6Ranges: ranges 2001:db8:1000::/72 and 2001:db8:1000:0:1::/80 overlap",
        "spec.ipv4SubnetLength: 30 is not between 16 and 28",
        "spec.vxlanVNI: 16777216",
        "spec.vxlanPort: 0",
    ] {
        assert!(has(needle), "missing {needle:?} in {errors:#?}");
    }
    let s = spec(
        serde_json::json!({"ipv6Ranges": [{"range": "2001:db8:1000::/96", "prefixLength": 80}],
        "ipv4Network": "10.255.0.0/24", "ipv4SubnetLength": 20}),
    );
    let errors: Vec<String> = s
        .plan()
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("/80 prefixes do not fit in 2001:db8:1000::/96")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("/20 subnets do not fit in 10.255.0.0/24")),
        "{errors:?}"
    );
    let s = spec(serde_json::json!({"mode": "dual"}));
    assert!(s.plan().unwrap_err()[0]
        .to_string()
        .contains("no range is given"));
    assert!(spec(serde_json::json!({"mode": "ipv4"})).plan().is_ok());
}

#[test]
fn every_range_belongs_to_one_named_block() {
    let net = |s: &str| s.parse::<ipnet::IpNet>().unwrap();
    let (block, name) = block_of(net("2001:db8:0:0:3f::/80"));
    assert_eq!(block, net("2001:db8::/74"));
    assert_eq!(name, "ipv6-2001-db8-0-0-0-0-0-0-74-80");
    // The 65th range starts the next block.
    assert_eq!(
        block_of(net("2001:db8:0:0:40::/80")).0,
        net("2001:db8:0:0:40::/74")
    );
    assert_eq!(
        block_of(net("10.255.77.0/24")),
        (net("10.255.64.0/18"), "ipv4-10-255-64-0-18-24".into())
    );
    // Short ranges: the block is as short as a prefix can be.
    assert_eq!(block_of(net("10.0.0.0/4")).0, net("0.0.0.0/0"));
}

/// `ipv6Routing` is an enum in the schema, so the apiserver itself refuses any other
/// word (naming the field) before a controller or weftd ever reads it.
#[test]
fn ipv6_routing_is_an_enum_defaulting_to_fabric() {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(WeftNetwork::crd()).unwrap();
    let field = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["ipv6Routing"];
    assert_eq!(
        field["enum"],
        serde_json::json!(["fabric", "direct"]),
        "{field}"
    );
    assert_eq!(field["default"], "fabric", "{field}");
    let routing = |json| spec(serde_json::json!({"ipv6Routing": json})).ipv6_routing;
    assert_eq!(routing("direct"), Ipv6Routing::Direct);
    assert_eq!(routing("fabric"), Ipv6Routing::Fabric);
    let bad = serde_json::from_value::<WeftNetworkSpec>(serde_json::json!({"ipv6Routing": "bgp"}));
    assert!(bad.unwrap_err().to_string().contains("bgp"));
    assert_eq!("direct".parse(), Ok(Ipv6Routing::Direct));
    assert!("bgp".parse::<Ipv6Routing>().unwrap_err().contains("'bgp'"));
}

fn policy(json: serde_json::Value) -> WeftPolicySpec {
    serde_json::from_value(json).unwrap()
}

#[test]
fn a_well_formed_policy_has_no_problems_and_keeps_absent_apart_from_empty() {
    let p = policy(serde_json::json!({
        "source": {"namespace": "x", "name": "allow-db", "uid": "u1", "generation": 3},
        "ingress": [
            {"peers": [{"group": "g-0123456789ab"},
                       {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
             "ports": [{"protocol": "TCP", "port": 5432},
                       {"protocol": "UDP", "port": 1000, "endPort": 2000},
                       {"protocol": "SCTP"},
                       {"namedPort": "http"}]},
            {}
        ],
        "egress": []
    }));
    assert_eq!(p.problems(), vec![]);
    assert_eq!(
        p.ingress.as_ref().unwrap()[1].peers,
        None,
        "absent peers: every peer"
    );
    assert_eq!(p.egress, Some(vec![]), "isolated egress allowing nothing");
    assert_eq!(
        p.ingress.as_ref().unwrap()[0].ports[3].protocol,
        Protocol::Tcp
    );
    let round_trip: WeftPolicySpec =
        serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
    assert_eq!(round_trip, p);
}

#[test]
fn policy_problems_name_the_field_and_the_value() {
    let p = policy(serde_json::json!({
        "source": {"namespace": "x", "name": "bad", "uid": "u1", "generation": 1},
        "ingress": [{"peers": []}],
        "egress": [{
            "peers": [{"ipBlock": {"cidr": "10.0.0.1/8"}},
                      {"ipBlock": {"cidr": "2001:db8::/32", "except": ["10.1.0.0/16", "bogus"]}},
                      {},
                      {"group": "g-1", "ipBlock": {"cidr": "10.0.0.0/8"}}],
            "ports": [{"port": 0}, {"port": 90, "endPort": 80}, {"endPort": 80},
                      {"port": 80, "namedPort": "http"}, {"namedPort": ""}]
        }]
    }));
    let found: Vec<(String, String)> = p
        .problems()
        .into_iter()
        .map(|e| (e.field, e.problem))
        .collect();
    let expect = [
        ("spec.ingress[0].peers", "is empty"),
        (
            "spec.egress[0].peers[0].ipBlock.cidr",
            "'10.0.0.1/8' is not a CIDR",
        ),
        (
            "spec.egress[0].peers[1].ipBlock.except[0]",
            "'10.1.0.0/16' is not inside cidr '2001:db8::/32'",
        ),
        (
            "spec.egress[0].peers[1].ipBlock.except[1]",
            "'bogus' is not a CIDR",
        ),
        (
            "spec.egress[0].peers[2]",
            "exactly one of group and ipBlock",
        ),
        (
            "spec.egress[0].peers[3]",
            "exactly one of group and ipBlock",
        ),
        ("spec.egress[0].ports[0].port", "0 is not a port"),
        ("spec.egress[0].ports[1].endPort", "80 is below port 90"),
        ("spec.egress[0].ports[2].endPort", "80 without a port"),
        ("spec.egress[0].ports[3]", "both a named port and a number"),
        ("spec.egress[0].ports[4].namedPort", "is empty"),
    ];
    assert_eq!(found.len(), expect.len(), "{found:#?}");
    for ((field, text), (want_field, want_text)) in found.iter().zip(expect) {
        assert_eq!(field, want_field);
        assert!(text.contains(want_text), "{field}: {text}");
    }
}

#[test]
fn ip_blocks_parse_to_one_family() {
    let block = IpBlock {
        cidr: "2001:db8::/32".into(),
        except: vec!["2001:db8:1::/48".into()],
    };
    let (cidr, except) = block.parse().unwrap();
    assert_eq!(cidr.to_string(), "2001:db8::/32");
    assert_eq!(except[0].to_string(), "2001:db8:1::/48");
}

#[test]
fn the_index_answers_by_namespace() {
    let index = WeftPolicyIndexSpec {
        namespaces: ["a", "c"]
            .map(|name| PolicedNamespace {
                name: name.into(),
                ingress: true,
                egress: false,
            })
            .to_vec(),
    };
    assert!(index.polices("a") && index.polices("c"));
    assert!(!index.polices("b") && !index.polices(""));
}
