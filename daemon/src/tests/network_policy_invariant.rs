//! The family invariant (design §2.2) over many generated rules and policies.
use super::super::names::Direction;
use super::super::*;
use super::{entry, forms, spec};
use serde_json::json;
use std::collections::BTreeMap;
use weft_api::{PodPolicies, WeftPolicySpec};

/// A small deterministic generator (xorshift), so the invariant test covers many
/// shapes and fails the same way every run.
struct Generator(u64);

impl Generator {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn peer(&mut self) -> serde_json::Value {
        match self.below(4) {
            0 => json!({"group": format!("g-00000000000{}", self.below(4))}),
            1 => json!({"ipBlock": {"cidr": "198.51.100.0/24",
                "except": [format!("198.51.100.{}/32", self.below(256))]}}),
            2 => json!({"ipBlock": {"cidr": format!("192.0.2.{}/32", self.below(256))}}),
            _ => json!({"ipBlock": {"cidr": "2001:db8::/32",
                "except": [format!("2001:db8:{:x}::/48", self.below(65536))]}}),
        }
    }

    fn port(&mut self) -> serde_json::Value {
        let protocol = ["TCP", "UDP", "SCTP"][self.below(3) as usize];
        match self.below(4) {
            0 => json!({"protocol": protocol, "port": 1 + self.below(1000)}),
            1 => json!({"protocol": protocol, "port": 1000, "endPort": 1000 + self.below(100)}),
            2 => json!({"protocol": protocol}),
            _ => {
                let name = ["http", "dns", "metrics"][self.below(3) as usize];
                json!({"protocol": protocol, "namedPort": name})
            }
        }
    }

    fn rule(&mut self) -> serde_json::Value {
        let mut rule = json!({});
        if self.below(3) > 0 {
            let peers: Vec<_> = (0..1 + self.below(3)).map(|_| self.peer()).collect();
            rule["peers"] = json!(peers);
        }
        let ports: Vec<_> = (0..self.below(3)).map(|_| self.port()).collect();
        rule["ports"] = json!(ports);
        rule
    }
}

/// The families a rule's text matches addresses of.
fn families(rule: &str) -> (bool, bool) {
    let v4 = rule.contains("ip saddr") || rule.contains("ip daddr") || rule.contains("-v4");
    let v6 = rule.contains("ip6 saddr") || rule.contains("ip6 daddr") || rule.contains("-v6");
    (v4, v6)
}

/// The family invariant (design §2.2): every accept rule either matches addresses of
/// exactly one family, on sets of that family, or matches no address at all, and the
/// latter only for rules without peers. So an IPv4 ipBlock can never open IPv6 (nor an
/// IPv6 one IPv4).
#[test]
fn every_accept_rule_matches_one_family_or_every_peer() {
    let mut generator = Generator(0x5eed_1234_abcd_ef01);
    for _ in 0..2000 {
        let rule_json = generator.rule();
        let peers: Vec<serde_json::Value> =
            rule_json["peers"].as_array().cloned().unwrap_or_default();
        let no_peers = rule_json.get("peers").is_none();
        let opens = |family: &str| {
            no_peers
                || peers.iter().any(|p| {
                    p.get("group").is_some()
                        || p["ipBlock"]["cidr"]
                            .as_str()
                            .is_some_and(|c| c.contains(':') == (family == "v6"))
                })
        };
        for direction in [Direction::Ingress, Direction::Egress] {
            let (rules, needs) = forms(rule_json.clone(), direction);
            assert!(needs.problems.is_empty(), "{:?}", needs.problems);
            for text in &rules {
                assert!(text.ends_with(" accept") || text == "accept", "{text}");
                assert!(!text.contains("ct "), "{text}");
                match families(text) {
                    (true, true) => panic!("both families in one rule: {text}"),
                    (true, false) => assert!(opens("v4"), "{text} from {rule_json}"),
                    (false, true) => assert!(opens("v6"), "{text} from {rule_json}"),
                    (false, false) => {
                        assert!(no_peers, "no address match from peers: {text} {rule_json}");
                        assert!(!text.contains("addr"), "{text}");
                    }
                }
            }
        }
    }
}

/// The same invariant through the compiler, with each rule's sets checked against the
/// kinds the compiler gives them.
#[test]
fn compiled_chains_refer_only_to_sets_of_the_rules_family() {
    let mut generator = Generator(0x0dd_ba11);
    let specs: Vec<(String, WeftPolicySpec)> = (0..200)
        .map(|i| {
            let rules = |g: &mut Generator| (0..g.below(4)).map(|_| g.rule()).collect::<Vec<_>>();
            let value = json!({"ingress": rules(&mut generator), "egress": rules(&mut generator)});
            (format!("x.p{i}"), spec(value))
        })
        .collect();
    let entries: Vec<PodPolicies> = (0..40)
        .map(|i| {
            let pick = |g: &mut Generator| {
                (0..1 + g.below(4))
                    .map(|_| format!("x.p{}", g.below(200)))
                    .collect::<Vec<_>>()
            };
            let ingress = pick(&mut generator);
            let egress = pick(&mut generator);
            let mut entry = entry(&[], &[]);
            entry.uid = format!("u{i}");
            entry.ingress = ingress;
            entry.egress = egress;
            entry
        })
        .collect();
    let pods: Vec<LocalPod> = entries
        .iter()
        .enumerate()
        .map(|(i, entry)| LocalPod {
            families_off: Vec::new(),
            veth: format!("weft{i:011x}"),
            addresses: vec![
                format!("192.0.2.{i}").parse().unwrap(),
                format!("2001:db8::{i:x}").parse().unwrap(),
            ],
            state: PodState::Policed(entry),
        })
        .collect();
    let view = PolicyView {
        policies: specs.iter().map(|(n, s)| (n.as_str(), s)).collect(),
        groups: BTreeMap::new(),
        all_pods_group: Some("g-all"),
        entries: Vec::new(),
    };
    let compiled = compile(&view, &pods);
    assert!(compiled.problems.is_empty(), "{:?}", compiled.problems);
    assert!(
        compiled.desired.chains.len() > 40,
        "both directions, shared profiles"
    );
    for (chain, rules) in &compiled.desired.chains {
        assert_eq!(rules.first().map(String::as_str), Some(ESTABLISHED));
        assert_eq!(rules.last().map(String::as_str), Some(DENIED));
        for text in &rules[1..rules.len() - 1] {
            let (v4, v6) = families(text);
            assert!(!(v4 && v6), "{chain}: {text}");
            for set in text
                .split('@')
                .skip(1)
                .map(|s| s.split(' ').next().unwrap())
            {
                let kind = compiled.desired.sets[set].kind;
                let family = match kind {
                    SetKind::Addresses(f) | SetKind::Prefixes(f) | SetKind::AddressPorts(f) => f,
                };
                assert_eq!(
                    family == Family::V4,
                    v4,
                    "{chain}: {text}: {set} is {kind:?}"
                );
            }
        }
    }
}
