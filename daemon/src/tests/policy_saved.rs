use super::*;
use weft_api::{
    PodPolicies, PolicedNamespace, PolicySource, WeftNodePolicySpec, WeftPolicyIndexSpec,
    WeftPolicySpec,
};

#[test]
fn a_saved_copy_restores_complete_inputs_and_a_bad_one_is_ignored() {
    let dir = std::env::temp_dir().join(format!("weft-policy-saved-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    assert!(load(&dir).is_none(), "nothing saved yet");
    let mut inputs = PolicyInputs::default();
    let spec = WeftPolicySpec {
        source: PolicySource {
            namespace: "x".into(),
            name: "deny".into(),
            uid: "u".into(),
            generation: 1,
        },
        ingress: Some(vec![]),
        egress: None,
    };
    inputs.apply_policy(
        crate::policy::spanned::SpanWatch::All,
        "x.deny",
        spec.clone(),
    );
    inputs.set_index(Some(WeftPolicyIndexSpec {
        namespaces: vec![PolicedNamespace {
            name: "x".into(),
            ingress: true,
            egress: false,
        }],
    }));
    let entry = PodPolicies {
        namespace: "x".into(),
        name: "a".into(),
        uid: "u1".into(),
        ingress: vec!["x.deny".into()],
        ..PodPolicies::default()
    };
    inputs.set_node(Some(WeftNodePolicySpec {
        node_name: "n".into(),
        pods: vec![entry.clone()],
    }));
    save(&dir, &inputs).unwrap();
    let restored = load(&dir).unwrap();
    assert!(restored.complete());
    assert_eq!(restored.policy("x.deny"), Some(&spec));
    assert_eq!(
        restored.admission("x", "u1"),
        crate::policy::inputs::Admission::Entry(&entry)
    );
    assert_eq!(restored.saved(), inputs.saved());
    std::fs::write(dir.join("kubernetes-policy.json"), b"{\"policies\": 7}").unwrap();
    assert!(load(&dir).is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}
