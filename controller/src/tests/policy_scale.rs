//! The policy model at the scale: 5,000 nodes, 100,000 pods, 1,000 namespaces,
//! 500 policies, then pod churn. A measurement, not a check of results (the property
//! test does that): run it in release,
//! `cargo test --release -p weft-controller policy_scale -- --ignored --nocapture`.
use super::*;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;
use std::time::{Duration, Instant};

const NODES: usize = 5_000;
const PODS: usize = 100_000;
const NAMESPACES: usize = 1_000;
const POLICIES: usize = 500;
const CHURN: usize = 20_000;

fn pod(i: usize, generation: usize) -> PolicyPod {
    let labels = [
        ("app".to_owned(), format!("a{}", i % 50)),
        ("tier".to_owned(), format!("t{}", i % 5)),
    ];
    PolicyPod {
        namespace: format!("ns-{}", i % NAMESPACES),
        name: format!("pod-{i}"),
        uid: format!("uid-{i}-{generation}"),
        labels: labels.into_iter().collect(),
        node: Some(format!("node-{}", i % NODES)),
        phase: Some("Running".into()),
        ips: vec![
            format!("2001:db8:{:x}::{:x}", i / 65_536, i % 65_536 + 1),
            format!("10.{}.{}.{}", i / 65_536, (i / 256) % 256, i % 256),
        ],
        ..PolicyPod::default()
    }
}

/// Policies over the first 200 namespaces: 40 % pod peers, 20 % namespace peers, 10 %
/// ipBlock, 10 % named ports, 10 % default deny, 10 % egress to DNS.
fn policy(i: usize) -> NetworkPolicy {
    let namespace = format!("ns-{}", i % 200);
    let target = json!({"matchLabels": {"app": format!("a{}", i % 50)}});
    let spec = match i % 10 {
        0..=3 => json!({"podSelector": target, "ingress": [{"from": [
            {"podSelector": {"matchLabels": {"tier": format!("t{}", i % 5)}}}],
            "ports": [{"protocol": "TCP", "port": 8080}]}]}),
        4 | 5 => json!({"podSelector": target, "ingress": [{"from": [
            {"namespaceSelector": {"matchLabels": {"team": format!("team-{}", i % 20)}}}]}]}),
        6 => json!({"podSelector": target, "ingress": [{"from": [
            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
            {"ipBlock": {"cidr": "2001:db8::/32", "except": ["2001:db8:1::/48"]}}]}]}),
        7 => json!({"podSelector": target, "ingress": [{"ports": [{"port": "http"}]}]}),
        8 => json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
        _ => json!({"podSelector": target, "policyTypes": ["Egress"], "egress": [{"ports": [
            {"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}),
    };
    serde_json::from_value(json!({"metadata": {"namespace": namespace,
        "name": format!("policy-{i}"), "uid": format!("policy-uid-{i}"), "generation": 1},
        "spec": spec}))
    .unwrap()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
fn policy_scale_5000_nodes_100000_pods_500_policies() {
    let mut model = Model::new();
    let started = (Instant::now(), cpu_seconds());
    for n in 0..NAMESPACES {
        let labels = [("team".to_owned(), format!("team-{}", n % 20))];
        model.upsert_namespace(&format!("ns-{n}"), labels.into_iter().collect());
    }
    for i in 0..PODS {
        model.upsert_pod(pod(i, 0));
    }
    let pods_in = (started.0.elapsed(), cpu_seconds() - started.1);
    let mut written = 0usize;
    for i in 0..POLICIES {
        written += model.upsert_policy(&policy(i)).unwrap().members.len();
    }
    let policies_in = (
        started.0.elapsed() - pods_in.0,
        cpu_seconds() - started.1 - pods_in.1,
    );
    let snapshot = model.snapshot();
    let members: usize = snapshot.groups.values().map(|g| g.members.len()).sum();
    let spans: usize = snapshot.policies.values().map(|p| p.span.len()).sum();
    // Churn: pods replaced (a new UID, as a Deployment's rollout does) one at a time.
    let mut each = Vec::with_capacity(CHURN);
    let churn_cpu = cpu_seconds();
    for k in 0..CHURN {
        let i = (k * 7_919) % PODS;
        let t = Instant::now();
        model.delete_pod(&pod(i, 0).key());
        model.upsert_pod(pod(i, k + 1));
        each.push(t.elapsed());
    }
    let churn_cpu = cpu_seconds() - churn_cpu;
    each.sort();
    let at = |q: f64| each[((each.len() as f64 * q) as usize).min(each.len() - 1)];
    let mean: Duration = each.iter().sum::<Duration>() / each.len() as u32;
    println!("| step | wall | CPU |");
    println!("|---|---|---|");
    println!(
        "| {NAMESPACES} namespaces and {PODS} pods on {NODES} nodes | {:.2} s | {:.2} s |",
        pods_in.0.as_secs_f64(),
        pods_in.1
    );
    println!("| {POLICIES} policies ({} groups, {members} memberships, {spans} policy-node spans, {} node objects; {written} member writes) | {:.2} s | {:.2} s |", snapshot.groups.len(), snapshot.nodes.len(), policies_in.0.as_secs_f64(), policies_in.1);
    println!("| {CHURN} pod replacements: mean / p50 / p99 / max per replacement | {:.0} / {:.0} / {:.0} / {:.0} µs | {:.2} s total ({:.0} replacements per CPU-second) |",
        mean.as_secs_f64() * 1e6, at(0.5).as_secs_f64() * 1e6, at(0.99).as_secs_f64() * 1e6, each[each.len() - 1].as_secs_f64() * 1e6, churn_cpu, CHURN as f64 / churn_cpu.max(0.01));
    println!("| peak RSS of the process | {:.0} MiB | |", peak_rss_mib());
    assert!(
        members > 0 && spans > 0,
        "the generated policies select pods"
    );
}
