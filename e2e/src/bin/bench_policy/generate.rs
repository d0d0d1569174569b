//! The generated background: namespaces, pods and policies in the design's mix
//! (docs/networkpolicy-design.md §4.5): of every ten policies four select peers by
//! podSelector, two by namespaceSelector, one by ipBlock with except in both families,
//! one opens a named port, one is a default deny and one allows egress to DNS. Every
//! value is derived from an index, so runs generate the same objects.

use serde_json::{json, Value};

/// Distinct `app` labels of the generated pods.
const APPS: usize = 10;
/// Distinct `tier` labels.
const TIERS: usize = 3;
/// Distinct `team` labels of the generated namespaces.
const TEAMS: usize = 5;

/// The kinds of generated policies, as the mix names them.
pub(crate) const KINDS: [&str; 6] = [
    "podSelector peers",
    "namespaceSelector peers",
    "ipBlock with except (both families)",
    "named port",
    "default deny",
    "egress to DNS",
];

/// The kind of policy `j`: its index in [`KINDS`].
pub(crate) fn kind_of(j: usize) -> usize {
    match j % 10 {
        0..=3 => 0,
        4 | 5 => 1,
        6 => 2,
        7 => 3,
        8 => 4,
        _ => 5,
    }
}

/// The mix of `policies` generated policies, as a sentence.
pub(crate) fn mix(policies: usize) -> String {
    let mut counts = [0usize; KINDS.len()];
    for j in 0..policies {
        counts[kind_of(j)] += 1;
    }
    let parts: Vec<String> = KINDS
        .iter()
        .zip(counts)
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    format!("generated policies: {}", parts.join(", "))
}

/// Namespace `n`'s name.
pub(crate) fn namespace_name(n: usize) -> String {
    format!("bp-{n:02}")
}

/// The generated namespaces.
pub(crate) fn namespaces(count: usize) -> Vec<Value> {
    (0..count)
        .map(|n| {
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": namespace_name(n),
                "labels": {"team": format!("t{}", n % TEAMS)}}})
        })
        .collect()
}

/// The labels of generated pod `k`.
pub(crate) fn pod_labels(k: usize) -> Value {
    json!({"app": format!("a{}", k % APPS), "tier": format!("r{}", k % TIERS)})
}

/// Generated policy `j` in namespace `j mod namespaces`; `nodes` bounds the ipBlock
/// excepts to the nodes' ranges.
pub(crate) fn policy(j: usize, namespaces: usize, nodes: usize) -> Value {
    let app = |shift: usize| format!("a{}", (j + shift) % APPS);
    let node = j % nodes + 1;
    let tcp = |port: Value| json!({"protocol": "TCP", "port": port});
    let spec = match kind_of(j) {
        0 => json!({
            "podSelector": {"matchLabels": {"app": app(0)}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": app(1)}}}],
                         "ports": [tcp(json!(80))]}]}),
        1 => json!({
            "podSelector": {"matchLabels": {"tier": format!("r{}", j % TIERS)}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector":
                {"matchLabels": {"team": format!("t{}", j % TEAMS)}}}]}]}),
        2 => json!({
            "podSelector": {"matchLabels": {"app": app(2)}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [
                {"ipBlock": {"cidr": "10.255.0.0/16",
                             "except": [format!("10.255.{node}.{}/28", (j % 16) * 16)]}},
                {"ipBlock": {"cidr": "2001:db8:1000::/48",
                             "except": [format!("2001:db8:1000:{node:x}::{:x}:0/112", j)]}}]}]}),
        3 => json!({
            "podSelector": {"matchLabels": {"app": app(3)}},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [tcp(json!("http"))]}]}),
        4 => json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
        _ => json!({
            "podSelector": {"matchLabels": {"app": app(4)}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector":
                {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                "ports": [{"protocol": "UDP", "port": 53}, tcp(json!(53))]}]}),
    };
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": format!("gen-{j:04}"), "namespace": namespace_name(j % namespaces)},
        "spec": spec})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_the_designs() {
        let mut counts = [0usize; KINDS.len()];
        for j in 0..500 {
            counts[kind_of(j)] += 1;
        }
        assert_eq!(counts, [200, 100, 50, 50, 50, 50]);
    }

    #[test]
    fn policies_spread_over_namespaces_with_distinct_names() {
        let names: std::collections::BTreeSet<(String, String)> = (0..500)
            .map(|j| policy(j, 50, 4))
            .map(|p| {
                let m = &p["metadata"];
                (m["namespace"].to_string(), m["name"].to_string())
            })
            .collect();
        assert_eq!(names.len(), 500);
        let namespaces: std::collections::BTreeSet<&String> = names.iter().map(|n| &n.0).collect();
        assert_eq!(namespaces.len(), 50);
    }
}
