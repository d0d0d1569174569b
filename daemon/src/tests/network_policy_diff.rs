//! The compiler's states and the scripts between them.
use super::super::names::{block_sets, profile_chain, Direction};
use super::super::state::Desired;
use super::super::*;
use super::{entry, member, spec, GROUP_A, GROUP_B};
use serde_json::json;
use std::collections::BTreeMap;
use weft_api::{GroupMember, PodPolicies, WeftPolicySpec};

/// Pods `a` and `b` (ingress: x.web, egress: x.out, named port http), `c` unpoliced, `d`
/// pending: whichever a compile lists.
struct Scene {
    specs: BTreeMap<String, WeftPolicySpec>,
    groups: BTreeMap<String, Vec<GroupMember>>,
    entries: BTreeMap<&'static str, PodPolicies>,
}

impl Scene {
    fn new() -> Scene {
        let specs = [
            (
                "x.web",
                spec(
                    json!({"ingress": [{"peers": [{"group": GROUP_A}], "ports": [{"port": 80}, {"namedPort": "http"}]}]}),
                ),
            ),
            (
                "x.out",
                spec(
                    json!({"egress": [{"peers": [{"ipBlock": {"cidr": "198.51.100.0/24", "except": ["198.51.100.7/32"]}}]}]}),
                ),
            ),
            ("x.deny", spec(json!({"ingress": [], "egress": []}))),
        ];
        let mut a = entry(&["x.web"], &["x.out"]);
        a.named_ports =
            vec![serde_json::from_value(json!({"name": "http", "port": 8080})).unwrap()];
        let mut b = entry(&["x.web"], &["x.out"]);
        b.named_ports = a.named_ports.clone();
        Scene {
            specs: specs.into_iter().map(|(n, s)| (n.to_owned(), s)).collect(),
            groups: [(
                GROUP_A.to_owned(),
                vec![member("ua", &["192.0.2.1", "2001:db8::1"], json!([]))],
            )]
            .into_iter()
            .collect(),
            entries: [("a", a), ("b", b)].into_iter().collect(),
        }
    }

    /// The state for `pods` started, the node's entries theirs.
    fn compile(&self, pods: &[&str]) -> Compiled {
        self.compile_with_entries(pods, pods)
    }

    /// The state for `pods` started, the node's entries those of `scheduled`.
    fn compile_with_entries(&self, pods: &[&str], scheduled: &[&str]) -> Compiled {
        let view = PolicyView {
            policies: self.specs.iter().map(|(n, s)| (n.as_str(), s)).collect(),
            groups: self
                .groups
                .iter()
                .map(|(n, m)| (n.as_str(), m.iter().collect()))
                .collect(),
            all_pods_group: Some("g-all"),
            entries: scheduled
                .iter()
                .filter_map(|name| self.entries.get(name))
                .collect(),
        };
        let local: Vec<LocalPod> = pods.iter().map(|name| self.local(name)).collect();
        compile(&view, &local)
    }
}

impl Scene {
    /// Pod `name` (`a`..`e`): `c` unpoliced, `d` pending, the others under their entry.
    fn local(&self, name: &str) -> LocalPod<'_> {
        let index = name.as_bytes()[0] - b'a' + 1;
        LocalPod {
            families_off: Vec::new(),
            veth: veth(name),
            addresses: vec![
                format!("192.0.2.1{index}").parse().unwrap(),
                format!("2001:db8::1{index}").parse().unwrap(),
            ],
            state: match name {
                "c" => PodState::Unpoliced,
                "d" => PodState::Pending,
                other => PodState::Policed(&self.entries[other]),
            },
        }
    }
}

fn veth(name: &str) -> String {
    format!("weft{name:0>11}")
}

#[test]
fn pods_get_accept_drop_or_their_shared_profile() {
    let scene = Scene::new();
    let compiled = scene.compile(&["a", "b", "c", "d"]);
    assert!(compiled.problems.is_empty(), "{:?}", compiled.problems);
    let desired = &compiled.desired;
    let web = profile_chain(Direction::Ingress, &["x.web".into()]);
    let out = profile_chain(Direction::Egress, &["x.out".into()]);
    assert_eq!(desired.ingress[&veth("a")], Verdict::Jump(web.clone()));
    assert_eq!(desired.ingress[&veth("b")], Verdict::Jump(web.clone()));
    assert_eq!(desired.egress[&veth("a")], Verdict::Jump(out.clone()));
    assert_eq!(desired.ingress[&veth("c")], Verdict::Accept);
    assert_eq!(desired.egress[&veth("c")], Verdict::Accept);
    assert_eq!(desired.ingress[&veth("d")], Verdict::Drop);
    assert_eq!(desired.egress[&veth("d")], Verdict::Drop);
    assert_eq!(desired.chains.len(), 2, "one chain per profile, shared");
    assert_eq!(desired.own.len(), 4, "every pod may reach itself");
    assert_eq!(
        desired.chains[&web],
        [
            ESTABLISHED,
            "ip saddr @np-g-00000000000a-v4 meta l4proto . th dport { tcp . 80 } accept",
            "ip6 saddr @np-g-00000000000a-v6 meta l4proto . th dport { tcp . 80 } accept",
            "ip saddr @np-g-00000000000a-v4 meta l4proto tcp ip daddr . meta l4proto . th dport @np-lp-http-v4 accept",
            "ip6 saddr @np-g-00000000000a-v6 meta l4proto tcp ip6 daddr . meta l4proto . th dport @np-lp-http-v6 accept",
            DENIED
        ]
    );
    let text = |set: &str| -> Vec<String> {
        desired.sets[set]
            .elements
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(text("np-g-00000000000a-v4"), ["192.0.2.1"]);
    assert_eq!(text("np-g-00000000000a-v6"), ["2001:db8::1"]);
    assert_eq!(
        text("np-lp-http-v4"),
        ["192.0.2.11 . tcp . 8080", "192.0.2.12 . tcp . 8080"],
        "the policed local pods' own named port"
    );
    let (cidr_set, except_set) = block_sets("198.51.100.0/24 198.51.100.7/32", Family::V4);
    assert_eq!(text(&cidr_set), ["198.51.100.0/24"]);
    assert_eq!(text(&except_set), ["198.51.100.7/32"]);
    assert_eq!(desired.sets[&cidr_set].kind, SetKind::Prefixes(Family::V4));
    assert!(
        !desired
            .sets
            .keys()
            .any(|s| s.starts_with("np-b-") && s.ends_with("-v6")),
        "an IPv4 block makes no IPv6 set"
    );
}

#[test]
fn an_entry_without_a_started_pod_has_its_profiles_laid_without_verdicts_or_problems() {
    let mut scene = Scene::new();
    scene.entries.get_mut("b").unwrap().egress = vec!["x.gone".into()];
    let started = scene.compile(&["a", "b", "c"]);
    assert_eq!(started.desired.chains.len(), 3, "x.web, x.out and x.gone");
    assert_eq!(started.problems.len(), 1, "x.gone: {:?}", started.problems);

    let scheduled = scene.compile_with_entries(&["c"], &["a", "b"]);
    assert!(
        scheduled.problems.is_empty(),
        "no pod is judged by x.gone yet"
    );
    assert_eq!(scheduled.desired.chains, started.desired.chains);
    assert!(
        started
            .desired
            .sets
            .keys()
            .filter(|set| !set.starts_with("np-lp-"))
            .all(|set| scheduled.desired.sets.contains_key(set)),
        "the chains' group and block sets are filled"
    );
    assert_eq!(
        scheduled.desired.ingress.keys().collect::<Vec<_>>(),
        [&veth("c")]
    );

    // The pod starting under those profiles needs only its own elements.
    let mut entry = scene.entries["a"].clone();
    entry.named_ports.clear();
    let pod = LocalPod {
        veth: veth("e"),
        addresses: vec!["192.0.2.15".parse().unwrap()],
        families_off: Vec::new(),
        state: PodState::Policed(&entry),
    };
    let own = compile::pod_elements(&pod, &scheduled.desired).expect("chains laid");
    let web = profile_chain(Direction::Ingress, &["x.web".into()]);
    assert_eq!(own.ingress, Verdict::Jump(web));
    assert!(compile::pod_elements(&pod, &Desired::default()).is_none());
}

#[test]
fn a_pods_own_elements_over_the_laid_state_are_the_state_with_it_started() {
    let mut scene = Scene::new();
    // b keeps IPv6 only: its entry turns IPv4 off.
    scene.entries.get_mut("b").unwrap().ip_families = Some(vec!["IPv6".into()]);
    for (started, starting) in [(&["c"][..], "a"), (&["c", "a"][..], "b"), (&["a"][..], "c")] {
        let laid = scene.compile_with_entries(started, &["a", "b"]).desired;
        let with: Vec<&str> = started.iter().copied().chain([starting]).collect();
        let expected = scene.compile_with_entries(&with, &["a", "b"]).desired;
        let pod = scene.local(starting);
        let own = compile::pod_elements(&pod, &laid).expect("profiles laid");
        let mut admitted = laid.clone();
        own.apply_to(&mut admitted);
        assert_eq!(admitted, expected, "{starting} starting beside {started:?}");
    }
    let a = scene.local("a");
    let own = compile::pod_elements(&a, &scene.compile_with_entries(&[], &["a"]).desired);
    let ports: Vec<String> = own
        .unwrap()
        .ports
        .values()
        .flatten()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        ports,
        ["192.0.2.11 . tcp . 8080", "2001:db8::11 . tcp . 8080"],
        "a's named port, both families"
    );
}

#[test]
fn profiles_ignore_order_and_missing_policies_allow_nothing() {
    let mut scene = Scene::new();
    scene.entries.get_mut("a").unwrap().ingress = vec!["x.web".into(), "x.deny".into()];
    scene.entries.get_mut("b").unwrap().ingress = vec!["x.deny".into(), "x.web".into()];
    scene.entries.get_mut("b").unwrap().egress = vec!["x.gone".into()];
    scene.entries.get_mut("b").unwrap().ip_families = Some(vec!["IPv6".into()]);
    let compiled = scene.compile(&["a", "b"]);
    let desired = &compiled.desired;
    assert_eq!(desired.ingress[&veth("a")], desired.ingress[&veth("b")]);
    let gone = profile_chain(Direction::Egress, &["x.gone".into()]);
    assert_eq!(desired.chains[&gone], [ESTABLISHED, DENIED]);
    assert_eq!(compiled.problems.len(), 1, "{:?}", compiled.problems);
    assert!(compiled.problems[0].contains("x.gone"));
    assert_eq!(desired.v4_off, [veth("b")].into_iter().collect());
    assert!(desired.v6_off.is_empty());
}

#[test]
fn the_same_state_changes_nothing_and_the_full_script_rebuilds_it() {
    let desired = Scene::new().compile(&["a", "b", "c"]).desired;
    assert_eq!(diff_script(&desired, &desired), "");
    let stale = [
        "np-i-ffffffffffffffff".to_owned(),
        "np-g-ffffffffffff-v4".to_owned(),
    ];
    let full = full_script(&desired, &stale.iter().cloned().collect());
    let lines: Vec<&str> = full.lines().collect();
    let position = |needle: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle}:\n{full}"))
    };
    for set in desired.sets.keys() {
        assert!(
            position(&format!("add set inet weft {set} "))
                < position(&format!("flush set inet weft {set}"))
        );
    }
    for chain in desired.chains.keys() {
        assert!(
            position(&format!("flush chain inet weft {chain}"))
                < position("flush map inet weft np-ingress-pods")
        );
    }
    assert!(
        position("flush map inet weft np-egress-pods")
            < position("add element inet weft np-egress-pods")
    );
    assert!(position("flush set inet weft np-self") < position("add element inet weft np-self"));
    assert!(
        position("delete chain inet weft np-i-ffffffffffffffff")
            < position("delete set inet weft np-g-ffffffffffff-v4")
    );
    assert!(position("add element inet weft np-ingress-pods") < position("delete chain"));
}

#[test]
fn a_pod_of_an_existing_profile_is_only_elements() {
    let scene = Scene::new();
    let before = scene.compile(&["a", "c"]).desired;
    let after = scene.compile(&["a", "b", "c"]).desired;
    let script = diff_script(&before, &after);
    let b = veth("b");
    let web = profile_chain(Direction::Ingress, &["x.web".into()]);
    let out = profile_chain(Direction::Egress, &["x.out".into()]);
    assert_eq!(
        script,
        format!(
            "add element inet weft np-lp-http-v4 {{ 192.0.2.12 . tcp . 8080 }}\n\
             add element inet weft np-lp-http-v6 {{ 2001:db8::12 . tcp . 8080 }}\n\
             add element inet weft np-ingress-pods {{ \"{b}\" : jump {web} }}\n\
             add element inet weft np-egress-pods {{ \"{b}\" : jump {out} }}\n\
             add element inet weft np-self {{ \"{b}\" . \"{b}\" }}\n"
        )
    );
    // And back: the elements go, nothing else.
    let back = diff_script(&after, &before);
    assert!(
        back.lines().all(|l| l.starts_with("delete element")),
        "{back}"
    );
    assert_eq!(back.lines().count(), 5, "{back}");
}

#[test]
fn a_policy_change_flushes_only_the_chains_of_its_profiles() {
    let mut scene = Scene::new();
    let before = scene.compile(&["a", "b", "c"]).desired;
    scene.specs.insert(
        "x.web".into(),
        spec(json!({"ingress": [{"peers": [{"group": GROUP_B}]}]})),
    );
    let after = scene.compile(&["a", "b", "c"]).desired;
    let script = diff_script(&before, &after);
    let web = profile_chain(Direction::Ingress, &["x.web".into()]);
    let flushed: Vec<&str> = script.lines().filter(|l| l.starts_with("flush")).collect();
    assert_eq!(flushed, [format!("flush chain inet weft {web}")]);
    let lines: Vec<&str> = script.lines().collect();
    let position = |needle: &str| lines.iter().position(|l| l.starts_with(needle)).unwrap();
    // The new group's sets before the rules naming them; the old ones deleted after.
    assert!(position("add set inet weft np-g-00000000000b-v4") < position("flush chain"));
    assert!(position("flush chain") < position("delete set inet weft np-g-00000000000a-v4"));
    assert!(position("delete set inet weft np-lp-http-v4") > position("flush chain"));
    assert!(
        !script.contains("np-ingress-pods"),
        "verdicts unchanged: {script}"
    );
    assert!(
        !script.contains("np-e-"),
        "the egress profile is untouched: {script}"
    );
}

#[test]
fn a_profile_left_by_its_last_pod_is_deleted_after_its_elements() {
    let mut scene = Scene::new();
    let before = scene.compile(&["a", "b"]).desired;
    scene.entries.get_mut("b").unwrap().ingress = vec!["x.deny".into()];
    scene.entries.get_mut("a").unwrap().ingress = vec!["x.deny".into()];
    let after = scene.compile(&["a", "b"]).desired;
    let script = diff_script(&before, &after);
    let web = profile_chain(Direction::Ingress, &["x.web".into()]);
    let deny = profile_chain(Direction::Ingress, &["x.deny".into()]);
    let lines: Vec<&str> = script.lines().collect();
    let position = |needle: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no {needle}:\n{script}"))
    };
    assert!(
        position(&format!("add chain inet weft {deny}"))
            < position("add element inet weft np-ingress-pods")
    );
    assert!(
        position("delete element inet weft np-ingress-pods")
            < position("add element inet weft np-ingress-pods")
    );
    assert!(
        position("add element inet weft np-ingress-pods")
            < position(&format!("delete chain inet weft {web}"))
    );
    assert!(
        position(&format!("delete chain inet weft {web}"))
            < position("delete set inet weft np-g-00000000000a-v4")
    );
}

#[test]
fn a_group_member_change_is_one_element_per_family() {
    let mut scene = Scene::new();
    let before = scene.compile(&["a"]).desired;
    scene.groups.get_mut(GROUP_A).unwrap().push(member(
        "ub",
        &["192.0.2.2", "2001:db8::2"],
        json!([]),
    ));
    let after = scene.compile(&["a"]).desired;
    assert_eq!(
        diff_script(&before, &after),
        "add element inet weft np-g-00000000000a-v4 { 192.0.2.2 }\n\
         add element inet weft np-g-00000000000a-v6 { 2001:db8::2 }\n"
    );
}
