use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::json;

fn selector(value: serde_json::Value) -> Selector {
    let raw: LabelSelector = serde_json::from_value(value).unwrap();
    Selector::parse(&raw, "s").unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn each_operator_reads_as_the_api_defines_it() {
    let in_ = selector(
        json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a", "b"]}]}),
    );
    assert!(in_.matches(&labels(&[("app", "b")])));
    assert!(!in_.matches(&labels(&[("app", "c")])));
    assert!(!in_.matches(&labels(&[])), "In needs the key");
    let not_in = selector(
        json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]}),
    );
    assert!(not_in.matches(&labels(&[("app", "b")])));
    assert!(!not_in.matches(&labels(&[("app", "a")])));
    assert!(
        not_in.matches(&labels(&[])),
        "NotIn holds where the key is absent"
    );
    let exists = selector(json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}));
    assert!(exists.matches(&labels(&[("app", "")])));
    assert!(!exists.matches(&labels(&[("tier", "a")])));
    let absent =
        selector(json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}));
    assert!(absent.matches(&labels(&[("tier", "a")])));
    assert!(!absent.matches(&labels(&[("app", "a")])));
}

#[test]
fn match_labels_and_expressions_must_all_hold_and_empty_selects_everything() {
    let both = selector(json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}],
    }));
    assert!(both.matches(&labels(&[("app", "web")])));
    assert!(!both.matches(&labels(&[("app", "web"), ("tier", "db")])));
    assert!(!both.matches(&labels(&[("tier", "web")])));
    let empty = selector(json!({}));
    assert_eq!(empty, Selector::everything());
    assert!(empty.matches(&labels(&[])));
    assert!(empty.matches(&labels(&[("any", "thing")])));
    assert_eq!(empty.to_string(), "");
}

#[test]
fn the_normal_form_folds_match_labels_and_sorts() {
    let a = selector(json!({
        "matchLabels": {"tier": "db", "app": "web"},
        "matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}, {"key": "env", "operator": "In", "values": ["b", "a", "b"]}],
    }));
    let b = selector(json!({"matchExpressions": [
        {"key": "zone", "operator": "DoesNotExist"},
        {"key": "tier", "operator": "In", "values": ["db"]},
        {"key": "env", "operator": "In", "values": ["a", "b"]},
        {"key": "app", "operator": "In", "values": ["web"]},
        {"key": "app", "operator": "In", "values": ["web"]},
    ]}));
    assert_eq!(a, b);
    assert_eq!(
        a.to_string(),
        "app in (web),env in (a,b),tier in (db),!zone"
    );
    // The inverted index keys on a pair every selected object carries.
    assert_eq!(a.required_pair(), Some(("app", "web")));
    let no_pair = selector(
        json!({"matchExpressions": [{"key": "env", "operator": "In", "values": ["a", "b"]}]}),
    );
    assert_eq!(no_pair.required_pair(), None);
}
