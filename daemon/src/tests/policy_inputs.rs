use super::*;
use weft_api::{PolicedNamespace, PolicyRule, PolicySource};

fn spec(ingress_peers: Option<Vec<weft_api::PolicyPeer>>) -> WeftPolicySpec {
    WeftPolicySpec {
        source: PolicySource {
            namespace: "x".into(),
            name: "p".into(),
            uid: "u".into(),
            generation: 1,
        },
        ingress: Some(vec![PolicyRule {
            peers: ingress_peers,
            ports: vec![],
        }]),
        egress: None,
    }
}

#[test]
fn a_policy_with_problems_is_refused_whole_and_the_previous_one_stays() {
    let mut inputs = PolicyInputs::default();
    inputs.apply_policy(SpanWatch::Node, "x.p", spec(None));
    inputs.apply_policy(SpanWatch::Node, "x.p", spec(Some(vec![])));
    assert_eq!(
        inputs.policy("x.p"),
        Some(&spec(None)),
        "the valid one stays"
    );
    let errors = inputs.errors();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("WeftPolicy x.p") && errors[0].contains("spec.ingress[0].peers"),
        "{errors:?}"
    );
    // A relist holding the bad version keeps the good one and the error.
    inputs.relist_policies(
        SpanWatch::Node,
        [("x.p".to_owned(), spec(Some(vec![])))].into(),
        Instant::now(),
    );
    assert_eq!(inputs.policy("x.p"), Some(&spec(None)));
    assert_eq!(inputs.errors().len(), 1);
    // A fixed version clears it.
    inputs.apply_policy(SpanWatch::Node, "x.p", spec(None));
    assert!(inputs.errors().is_empty());
}

#[test]
fn slices_merge_into_their_groups() {
    let mut inputs = PolicyInputs::default();
    let member = |uid: &str| GroupMember {
        uid: uid.into(),
        ips: vec![format!("2001:db8::{uid}")],
        ports: vec![],
    };
    let slice = |uids: &[&str]| WeftAddressGroupSpec {
        group: "g-1".into(),
        selector: "s".into(),
        members: uids.iter().map(|u| member(u)).collect(),
    };
    inputs.apply_slice(SpanWatch::Node, "g-1-0", slice(&["a", "b"]));
    inputs.apply_slice(SpanWatch::All, "g-1-1", slice(&["c"]));
    let groups = inputs.groups();
    let uids: Vec<&str> = groups["g-1"].iter().map(|m| m.uid.as_str()).collect();
    assert_eq!(uids, ["a", "b", "c"]);
}

#[test]
fn admission_waits_only_in_policed_namespaces_and_for_the_very_pod() {
    let mut inputs = PolicyInputs::default();
    assert_eq!(inputs.admission("x", "u1"), Admission::Unknown);
    inputs.set_complete();
    assert_eq!(
        inputs.admission("x", "u1"),
        Admission::Unpoliced,
        "listed and no index: no controller computes policies"
    );
    inputs.set_index(Some(WeftPolicyIndexSpec {
        namespaces: vec![PolicedNamespace {
            name: "x".into(),
            ingress: true,
            egress: false,
        }],
    }));
    assert_eq!(inputs.admission("y", "u1"), Admission::Unpoliced);
    assert_eq!(inputs.admission("x", "u1"), Admission::Pending);
    let entry = PodPolicies {
        namespace: "x".into(),
        name: "a".into(),
        uid: "u1".into(),
        ingress: vec!["x.p".into()],
        ..PodPolicies::default()
    };
    inputs.set_node(Some(WeftNodePolicySpec {
        node_name: "n".into(),
        pods: vec![entry.clone()],
    }));
    assert_eq!(inputs.admission("x", "u1"), Admission::Entry(&entry));
    // A pod re-created under the same name has another UID: it waits for its own entry.
    assert_eq!(inputs.admission("x", "u2"), Admission::Pending);
}
