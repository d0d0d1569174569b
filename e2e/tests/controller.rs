//! weft-controller against a real kube-apiserver (etcd and kube-apiserver from
//! e2e/setup.sh, one control plane per test in a namespace of its own, addresses from
//! the documentation prefixes). Each test applies the CRDs, a WeftNetwork and Nodes,
//! runs target/debug/weft-controller inside the control plane's namespace and checks
//! what it wrote through kubectl. Needs root.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};
use weft_e2e::{serving_namespace, ControlPlane, Netns};

#[path = "support/controller.rs"]
mod support;
use support::{rbac, Controller};

const SERVER_V6: &str = "2001:db8:ffff::2";
const SERVER_V4: &str = "192.0.2.2";
const ZONE: &str = "topology.kubernetes.io/zone";

/// A control plane with weft's CRDs, in a namespace of its own.
struct Cluster {
    // Field order is drop order: the control plane goes before its namespace.
    cp: ControlPlane,
    ns: Netns,
}

impl Cluster {
    fn start() -> Cluster {
        let ns = serving_namespace(
            "ctl",
            &[&format!("{SERVER_V6}/64"), &format!("{SERVER_V4}/24")],
        );
        let cp = ControlPlane::start(&ns, SERVER_V6.parse().unwrap());
        cp.install_weft_crds();
        Cluster { cp, ns }
    }

    fn kubectl_input(&self, verb: &str, doc: &Value) -> String {
        self.cp
            .kubectl_input_ok(&[verb, "-f", "-"], &doc.to_string())
    }

    fn apply(&self, doc: Value) {
        self.kubectl_input("apply", &doc);
    }

    fn create(&self, doc: Value) {
        self.kubectl_input("create", &doc);
    }

    fn get(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.cp.kubectl_ok(&all)).unwrap()
    }

    fn items(&self, kind: &str) -> Vec<Value> {
        self.get(&[kind])["items"].as_array().unwrap().clone()
    }

    fn network(&self, spec: Value) {
        self.apply(json!({
            "apiVersion": "weft.dev/v1alpha1", "kind": "WeftNetwork",
            "metadata": {"name": "default"}, "spec": spec,
        }));
    }

    fn nodes(&self, names: &[(&str, Option<&str>)]) {
        let items: Vec<Value> = names.iter().map(|(n, z)| node(n, *z)).collect();
        self.create(json!({"apiVersion": "v1", "kind": "List", "items": items}));
    }

    /// Starts a controller replica (admin kubeconfig unless `kubeconfig`).
    fn controller(&self, identity: &str, args: &[&str], kubeconfig: Option<&Path>) -> Controller {
        let kubeconfig = kubeconfig.map_or_else(|| self.cp.kubeconfig(), Path::to_owned);
        let args: Vec<&str> = ["--log-level=debug"].iter().chain(args).copied().collect();
        Controller::start(&self.ns, self.cp.dir(), identity, &kubeconfig, &args)
    }

    fn scrape(&self, c: &Controller) -> String {
        self.ns.http_get(&c.metrics, "/metrics").1
    }

    /// A metric's value (the first sample whose line starts with `series`).
    fn metric(&self, c: &Controller, series: &str) -> Option<f64> {
        self.scrape(c)
            .lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// The WeftNodes by node name.
    fn weftnodes(&self) -> BTreeMap<String, Value> {
        self.items("weftnodes")
            .into_iter()
            .map(|wn| (wn["metadata"]["name"].as_str().unwrap().to_owned(), wn))
            .collect()
    }

    fn wait(
        &self,
        controllers: &[&Controller],
        what: &str,
        timeout: Duration,
        mut done: impl FnMut() -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !done() {
            if Instant::now() > deadline {
                let logs: Vec<String> = controllers.iter().map(|c| c.log_tail(40)).collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n{}",
                    logs.join("\n-----\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until every named node's WeftNode says `Allocated=True`.
    fn wait_allocated(&self, controllers: &[&Controller], names: &[&str], timeout: Duration) {
        self.wait(
            controllers,
            &format!("{names:?} allocated"),
            timeout,
            || {
                let wns = self.weftnodes();
                names.iter().all(|n| {
                    wns.get(*n)
                        .is_some_and(|wn| condition(wn, "Allocated").0 == "True")
                })
            },
        );
    }
}

fn node(name: &str, zone: Option<&str>) -> Value {
    let mut n = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
    if let Some(z) = zone {
        n["metadata"]["labels"] = json!({ ZONE: z });
    }
    n
}

/// (status, reason, message) of a condition.
fn condition(obj: &Value, type_: &str) -> (String, String, String) {
    let empty = vec![];
    let c = obj["status"]["conditions"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or(Value::Null);
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    (s("status"), s("reason"), s("message"))
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// Every claim: the entries of the claim blocks.
fn claims(cluster: &Cluster) -> Vec<Value> {
    cluster
        .items("weftclaimblocks")
        .iter()
        .flat_map(|b| b["spec"]["claims"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// The live (not released) claims: (cidr, node).
fn live_claims(cluster: &Cluster) -> Vec<(String, String)> {
    claims(cluster)
        .iter()
        .filter(|c| c["releasedAt"].is_null())
        .map(|c| (text(&c["cidr"]), text(&c["nodeName"])))
        .collect()
}

/// Every node has exactly one live IPv6 and one live IPv4 claim, its WeftNode names
/// them, its podCIDRs are [prefix, subnet], no range is shared, and no other node
/// holds a live claim. Returns the
/// (prefix, subnet) per node.
fn check_unique(cluster: &Cluster, names: &[String]) -> BTreeMap<String, (String, String)> {
    let wns = cluster.weftnodes();
    let mut per_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (cidr, node) in live_claims(cluster) {
        per_node.entry(node).or_default().push(cidr);
    }
    let nodes: BTreeMap<String, Value> = cluster
        .items("nodes")
        .into_iter()
        .map(|n| (text(&n["metadata"]["name"]), n))
        .collect();
    let mut seen = BTreeSet::new();
    let mut out = BTreeMap::new();
    for name in names {
        let wn = &wns[name.as_str()];
        let (v6, v4) = (
            text(&wn["spec"]["ipv6Prefix"]),
            text(&wn["spec"]["ipv4Subnet"]),
        );
        assert!(!v6.is_empty() && !v4.is_empty(), "{name}: {wn}");
        let mut claims = per_node.remove(name).unwrap_or_default();
        claims.sort();
        let mut want = vec![v6.clone(), v4.clone()];
        want.sort();
        assert_eq!(claims, want, "{name}: live claims differ from its WeftNode");
        assert!(seen.insert(v6.clone()), "{v6} given twice");
        assert!(seen.insert(v4.clone()), "{v4} given twice");
        // Unless someone else had set them (then the condition says they differ).
        if condition(wn, "PodCIDRs").1 != "PodCIDRsDiffer" {
            let spec = &nodes[name.as_str()]["spec"];
            assert_eq!(spec["podCIDRs"], json!([v6, v4]), "{name} podCIDRs");
            assert_eq!(text(&spec["podCIDR"]), v6, "{name} podCIDR");
        }
        out.insert(name.clone(), (v6, v4));
    }
    assert!(
        per_node.is_empty(),
        "live claims of unknown nodes: {per_node:?}"
    );
    out
}

#[test]
fn nodes_get_prefixes_by_zone_subnets_and_pod_cidrs() {
    let cluster = Cluster::start();
    // The controller runs with only the permissions it documents.
    let kubeconfig = cluster.cp.dir().join("weft-controller.kubeconfig");
    cluster
        .cp
        .write_kubeconfig(&kubeconfig, "weft-controller", &[]);
    cluster.create(rbac("weft-controller"));
    // Seed 004's shape: per-zone ranges whose low addresses and gateway are reserved,
    // written in several IPv6 text forms, and a zone-less range for everyone else.
    cluster.network(json!({
        "ipv6Ranges": [
            {"range": "2001:DB8:1000:0000::/64", "zone": "z1",
             "reserved": ["2001:db8:1000:: - 2001:db8:1000::ffff"], "gateway": "2001:db8:1000::1"},
            {"range": "2001:0db8:2000::/64", "zone": "z2", "gateway": "2001:db8:2000::1"},
            {"range": "2001:db8:9000::/64"},
        ],
        "ipv4Network": "10.255.0.0/16",
    }));
    // a1 as a kubelet makes it: the controller caches it trimmed (no status, no
    // annotations) and must still allocate it and leave those untouched.
    let mut kubelet_made = node("a1", Some("z1"));
    kubelet_made["metadata"]["annotations"] = json!({"node.alpha.kubernetes.io/ttl": "0"});
    kubelet_made["status"] = json!({
        "images": [{"names": ["registry.k8s.io/pause:3.10"], "sizeBytes": 320368}],
        "addresses": [{"type": "InternalIP", "address": "192.0.2.10"}],
    });
    cluster.create(kubelet_made);
    cluster.nodes(&[
        ("a2", Some("z1")),
        ("b1", Some("z2")),
        ("c1", None),
        ("d1", Some("z9")),
    ]);
    // A node whose podCIDRs someone else set: weft leaves them and says so.
    let mut preset = node("p1", None);
    preset["spec"] = json!({"podCIDR": "10.0.0.0/24", "podCIDRs": ["10.0.0.0/24"]});
    cluster.create(preset);

    let c = cluster.controller("solo", &[], Some(&kubeconfig));
    let all = ["a1", "a2", "b1", "c1", "d1", "p1"];
    let began = Instant::now();
    cluster.wait_allocated(&[&c], &all, Duration::from_secs(60));
    eprintln!("6 nodes allocated in {:?}", began.elapsed());

    let wns = cluster.weftnodes();
    let prefix = |n: &str| text(&wns[n]["spec"]["ipv6Prefix"]);
    let mut z1 = [prefix("a1"), prefix("a2")];
    z1.sort();
    // The first /80 of z1 holds reserved addresses: BOSH starts at the second.
    assert_eq!(z1, ["2001:db8:1000:0:1::/80", "2001:db8:1000:0:2::/80"]);
    // The gateway sits in z2's first /80.
    assert_eq!(prefix("b1"), "2001:db8:2000:0:1::/80");
    let shared: BTreeSet<String> = [prefix("c1"), prefix("d1"), prefix("p1")].into();
    let want = [
        "2001:db8:9000::/80",
        "2001:db8:9000:0:1::/80",
        "2001:db8:9000:0:2::/80",
    ];
    assert_eq!(shared, want.map(String::from).into());
    assert_eq!(text(&wns["a1"]["spec"]["zone"]), "z1");
    assert_eq!(text(&wns["a1"]["spec"]["nodeName"]), "a1");
    let owner = &wns["a1"]["metadata"]["ownerReferences"][0];
    assert_eq!(
        (text(&owner["kind"]), text(&owner["name"])),
        ("Node".into(), "a1".into())
    );

    let got = check_unique(&cluster, &all.map(String::from));
    let subnets: BTreeSet<&str> = got.values().map(|(_, v4)| v4.as_str()).collect();
    assert_eq!(subnets.len(), 6);
    assert!(subnets
        .iter()
        .all(|s| s.starts_with("10.255.") && s.ends_with(".0/24")));

    // a1 keeps what the controller does not cache.
    let a1 = cluster.get(&["node", "a1"]);
    assert_eq!(
        a1["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"],
        "0"
    );
    assert_eq!(a1["status"]["images"][0]["sizeBytes"], 320368);
    assert_eq!(a1["status"]["addresses"][0]["address"], "192.0.2.10");

    // p1: allocated, but its podCIDRs stay; a condition and an Event say they differ.
    let p1 = cluster.get(&["node", "p1"]);
    assert_eq!(p1["spec"]["podCIDRs"], json!(["10.0.0.0/24"]));
    let (status, reason, message) = condition(&wns["p1"], "PodCIDRs");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "PodCIDRsDiffer")
    );
    assert!(message.contains("10.0.0.0/24"), "{message}");
    cluster.wait(
        &[&c],
        "the PodCIDRsDiffer event",
        Duration::from_secs(10),
        || {
            cluster
                .cp
                .kubectl_ok(&["get", "events", "-A"])
                .contains("PodCIDRsDiffer")
        },
    );

    // The claims are entries of the blocks named after their ranges' blocks.
    let block = cluster.get(&["weftclaimblocks", "ipv6-2001-db8-2000-0-0-0-0-0-74-80"]);
    assert_eq!(block["spec"]["cidr"], "2001:db8:2000::/74");
    let b1: Vec<String> = block["spec"]["claims"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["nodeName"] == "b1")
        .map(|c| text(&c["cidr"]))
        .collect();
    assert_eq!(b1, ["2001:db8:2000:0:1::/80"], "{block}");

    // kubectl shows the allocations at a glance.
    let table = cluster.cp.kubectl_ok(&["get", "weftnodes"]);
    assert!(table.contains("2001:db8:2000:0:1::/80"), "{table}");

    // The network's status: valid, per-range use, the generation it describes.
    cluster.wait(&[&c], "the network status", Duration::from_secs(10), || {
        let net = cluster.get(&["weftnetwork", "default"]);
        net["status"]["ipv6Ranges"][2]["allocated"] == 3
            && net["status"]["observedGeneration"] == net["metadata"]["generation"]
            && net["status"]["ipv4Network"]["allocated"] == 6
    });
    let net = cluster.get(&["weftnetwork", "default"]);
    assert_eq!(condition(&net, "Valid").0, "True");
    assert_eq!(condition(&net, "Exhausted").0, "False");
    assert_eq!(net["status"]["ipv6Ranges"][0]["allocated"], 2);
    assert_eq!(net["status"]["ipv6Ranges"][0]["free"], 65536 - 3);
    assert_eq!(net["status"]["ipv4Network"]["free"], 256 - 6);

    // Metrics.
    assert_eq!(cluster.metric(&c, "weft_controller_leader"), Some(1.0));
    assert_eq!(
        cluster.metric(
            &c,
            "weft_controller_allocations{range=\"2001:db8:9000::/64\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        cluster.metric(&c, "weft_controller_free_prefixes{range=\"10.255.0.0/16\"}"),
        Some(250.0)
    );
    assert_eq!(
        cluster.metric(&c, "weft_controller_exhausted_nodes"),
        Some(0.0)
    );
    assert!(
        cluster
            .metric(&c, "weft_controller_reconcile_duration_seconds_count")
            .unwrap()
            >= 6.0
    );
    assert_eq!(cluster.ns.http_get(&c.metrics, "/healthz").0, 200);
    assert_eq!(cluster.ns.http_get(&c.metrics, "/readyz").0, 200);

    // weftd's fields survive the controller's writes: another field manager sets the
    // underlay and a Ready condition; a change of zone label re-reconciles the node.
    let wn_patch = json!({"apiVersion": "weft.dev/v1alpha1", "kind": "WeftNode",
        "metadata": {"name": "c1"}, "spec": {"nodeName": "c1", "underlayIPv6": "2001:db8:ffff::10"}});
    let out = cluster.cp.kubectl_input(
        &["apply", "--server-side", "--field-manager=weftd", "-f", "-"],
        &wn_patch.to_string(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready = json!({"apiVersion": "weft.dev/v1alpha1", "kind": "WeftNode", "metadata": {"name": "c1"},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Serving", "message": "",
        "lastTransitionTime": "2025-01-01T00:00:00Z"}]}});
    let out = cluster.cp.kubectl_input(
        &[
            "apply",
            "--server-side",
            "--field-manager=weftd",
            "--subresource=status",
            "-f",
            "-",
        ],
        &ready.to_string(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster
        .cp
        .kubectl_ok(&["label", "node", "c1", &format!("{ZONE}=z2"), "--overwrite"]);
    std::thread::sleep(Duration::from_secs(2));
    let c1 = cluster.get(&["weftnode", "c1"]);
    assert_eq!(text(&c1["spec"]["underlayIPv6"]), "2001:db8:ffff::10");
    assert_eq!(condition(&c1, "Ready").0, "True");
    assert_eq!(condition(&c1, "Allocated").0, "True");
    // A node keeps its prefix when its zone label changes: pods use it.
    assert_eq!(text(&c1["spec"]["ipv6Prefix"]), prefix("c1"));
}

#[test]
fn an_invalid_network_is_reported_by_field_and_fixing_it_allocates() {
    let cluster = Cluster::start();
    cluster.network(json!({
        "ipv6Ranges": [
            {"range": "2001:db8:1000::/64", "prefixLength": 56},
            {"range": "2001:db8:2000::/64", "reserved": ["2001:db8:3000::/80"], "gateway": "192.0.2.1"},
        ],
        "ipv4SubnetLength": 30,
    }));
    cluster.nodes(&[("n1", None)]);
    let c = cluster.controller("solo", &[], None);
    cluster.wait(&[&c], "Valid=False", Duration::from_secs(30), || {
        condition(&cluster.get(&["weftnetwork", "default"]), "Valid").0 == "False"
    });
    let net = cluster.get(&["weftnetwork", "default"]);
    let (_, reason, message) = condition(&net, "Valid");
    assert_eq!(reason, "InvalidSpec");
    for needle in [
        "spec.ipv6Ranges[0].prefixLength: 56 is not between 64 and 120",
        "spec.ipv6Ranges[1].reserved[0]: '2001:db8:3000::/80' is outside the range 2001:db8:2000::/64",
        "spec.ipv6Ranges[1].gateway: '192.0.2.1' is not IPv6",
        "spec.ipv4SubnetLength: 30 is not between 16 and 28",
    ] {
        assert!(message.contains(needle), "missing {needle:?} in {message}");
    }
    // kubectl's table shows it, the node waits and says why, an Event names the fields.
    let table = cluster.cp.kubectl_ok(&["get", "weftnetworks"]);
    assert!(table.contains("False"), "{table}");
    cluster.wait(&[&c], "n1 waiting", Duration::from_secs(20), || {
        cluster
            .weftnodes()
            .get("n1")
            .is_some_and(|wn| condition(wn, "Allocated").1 == "InvalidNetwork")
    });
    let (_, _, why) = condition(&cluster.weftnodes()["n1"], "Allocated");
    assert!(why.contains("spec.ipv6Ranges[0].prefixLength"), "{why}");
    cluster.wait(
        &[&c],
        "the InvalidSpec event",
        Duration::from_secs(10),
        || {
            cluster
                .cp
                .kubectl_ok(&["get", "events", "-A"])
                .contains("InvalidSpec")
        },
    );
    assert_eq!(
        cluster.metric(&c, "weft_controller_exhausted_nodes"),
        Some(1.0)
    );
    assert!(
        cluster
            .metric(
                &c,
                "weft_controller_reconcile_errors_total{error=\"InvalidNetwork\"}"
            )
            .unwrap_or(0.0)
            >= 1.0
    );

    // Fixed: the network watch re-triggers the waiting node at once.
    let fixed = Instant::now();
    cluster
        .network(json!({"ipv6Ranges": [{"range": "2001:db8:1000::/64"}], "ipv4SubnetLength": 24}));
    cluster.wait_allocated(&[&c], &["n1"], Duration::from_secs(10));
    eprintln!("allocated {:?} after the fix", fixed.elapsed());
    cluster.wait(&[&c], "Valid=True", Duration::from_secs(10), || {
        condition(&cluster.get(&["weftnetwork", "default"]), "Valid").0 == "True"
    });
    assert_eq!(
        cluster.metric(&c, "weft_controller_exhausted_nodes"),
        Some(0.0)
    );
}

#[test]
fn exhaustion_is_reported_and_a_new_range_takes_effect_live() {
    let cluster = Cluster::start();
    // Two /120s in z1's range; the third z1 node finds none.
    cluster.network(json!({
        "ipv6Ranges": [{"range": "2001:db8:1000::/119", "zone": "z1", "prefixLength": 120}],
    }));
    cluster.nodes(&[("n1", Some("z1")), ("n2", Some("z1")), ("n3", Some("z1"))]);
    let c = cluster.controller("solo", &[], None);
    cluster.wait(&[&c], "one node exhausted", Duration::from_secs(30), || {
        let wns = cluster.weftnodes();
        let reasons: Vec<String> = ["n1", "n2", "n3"]
            .iter()
            .map(|n| {
                wns.get(*n)
                    .map(|wn| condition(wn, "Allocated").1)
                    .unwrap_or_default()
            })
            .collect();
        reasons.iter().filter(|r| *r == "Allocated").count() == 2
            && reasons.iter().any(|r| r == "RangeExhausted")
    });
    let wns = cluster.weftnodes();
    let waiting = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| condition(&wns[*n], "Allocated").1 == "RangeExhausted")
        .unwrap();
    let (_, _, message) = condition(&wns[waiting], "Allocated");
    assert_eq!(
        message,
        "no free IPv6 prefix left for zone z1 in 2001:db8:1000::/119 (/120)"
    );
    // The other nodes are whole; the waiting one has no podCIDRs yet.
    assert!(cluster.get(&["node", waiting])["spec"]["podCIDRs"].is_null());

    // kubectl shows it: the Event on the Node and the network's Exhausted condition.
    cluster.wait(
        &[&c],
        "the RangeExhausted event",
        Duration::from_secs(10),
        || {
            let described = cluster.cp.kubectl_ok(&["describe", "node", waiting]);
            described.contains("RangeExhausted") && described.contains("2001:db8:1000::/119")
        },
    );
    cluster.wait(&[&c], "Exhausted=True", Duration::from_secs(10), || {
        condition(&cluster.get(&["weftnetwork", "default"]), "Exhausted").0 == "True"
    });
    let exhausted = cluster.cp.kubectl_ok(&[
        "get",
        "weftnetwork",
        "default",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Exhausted\")].message}",
    ]);
    assert!(
        exhausted.contains(waiting) && exhausted.contains("zone z1"),
        "{exhausted}"
    );
    assert_eq!(
        cluster.metric(&c, "weft_controller_exhausted_nodes"),
        Some(1.0)
    );
    assert_eq!(
        cluster.metric(
            &c,
            "weft_controller_free_prefixes{range=\"2001:db8:1000::/119\"}"
        ),
        Some(0.0)
    );

    // A second z1 range, added live: the waiting node gets it within seconds.
    let added = Instant::now();
    cluster.network(json!({
        "ipv6Ranges": [
            {"range": "2001:db8:1000::/119", "zone": "z1", "prefixLength": 120},
            {"range": "2001:db8:1001::/64", "zone": "z1"},
        ],
    }));
    cluster.wait_allocated(&[&c], &[waiting], Duration::from_secs(10));
    eprintln!(
        "exhausted node allocated {:?} after the range was added",
        added.elapsed()
    );
    assert_eq!(
        text(&cluster.weftnodes()[waiting]["spec"]["ipv6Prefix"]),
        "2001:db8:1001::/80"
    );
    cluster.wait(&[&c], "Exhausted=False", Duration::from_secs(10), || {
        condition(&cluster.get(&["weftnetwork", "default"]), "Exhausted").0 == "False"
    });
    assert_eq!(
        cluster.metric(&c, "weft_controller_exhausted_nodes"),
        Some(0.0)
    );
    check_unique(&cluster, &["n1", "n2", "n3"].map(String::from));
}

#[test]
fn a_deleted_nodes_ranges_return_only_after_the_cooldown() {
    let cluster = Cluster::start();
    let cooldown = 15;
    cluster.network(json!({
        "ipv6Ranges": [{"range": "2001:db8:1000::/64"}],
        "releaseCooldownSeconds": cooldown,
    }));
    cluster.nodes(&[("n1", None), ("n2", None)]);
    let c = cluster.controller("solo", &[], None);
    cluster.wait_allocated(&[&c], &["n1", "n2"], Duration::from_secs(30));
    let before = check_unique(&cluster, &["n1", "n2"].map(String::from));
    let (gone_v6, gone_v4) = before["n1"].clone();

    cluster.cp.kubectl_ok(&["delete", "node", "n1"]);
    let deleted = Instant::now();
    // Its claims are marked released (no garbage collector: the controller also deletes
    // the WeftNode).
    cluster.wait(
        &[&c],
        "n1's claims released",
        Duration::from_secs(10),
        || {
            let claims = claims(&cluster);
            let n1: Vec<&Value> = claims.iter().filter(|c| c["nodeName"] == "n1").collect();
            n1.len() == 2 && n1.iter().all(|c| !c["releasedAt"].is_null())
        },
    );
    cluster.wait(
        &[&c],
        "n1's WeftNode deleted",
        Duration::from_secs(10),
        || !cluster.weftnodes().contains_key("n1"),
    );
    // A node created during the cooldown gets new ranges, not n1's.
    cluster.nodes(&[("n3", None)]);
    cluster.wait_allocated(&[&c], &["n3"], Duration::from_secs(10));
    let n3 = check_unique(&cluster, &["n2", "n3"].map(String::from))["n3"].clone();
    assert!(
        deleted.elapsed() < Duration::from_secs(cooldown),
        "too slow to test the cooldown"
    );
    assert_ne!(n3.0, gone_v6);
    assert_ne!(n3.1, gone_v4);

    // After the cooldown the claims go and the lowest ranges are n1's again.
    cluster.wait(
        &[&c],
        "n1's claims deleted",
        Duration::from_secs(cooldown + 10),
        || !claims(&cluster).iter().any(|c| c["nodeName"] == "n1"),
    );
    let freed = deleted.elapsed();
    assert!(
        freed >= Duration::from_secs(cooldown),
        "claims deleted after {freed:?}"
    );
    eprintln!("claims deleted {freed:?} after the node");
    cluster.nodes(&[("n4", None)]);
    cluster.wait_allocated(&[&c], &["n4"], Duration::from_secs(10));
    let n4 = check_unique(&cluster, &["n2", "n3", "n4"].map(String::from))["n4"].clone();
    assert_eq!(n4, (gone_v6, gone_v4));

    // A Node re-created under a used name is another node: new claims, old ones released.
    let n2_uid = text(&cluster.get(&["node", "n2"])["metadata"]["uid"]);
    let (n2_v6, _) = before["n2"].clone();
    cluster.cp.kubectl_ok(&["delete", "node", "n2"]);
    cluster.nodes(&[("n2", None)]);
    cluster.wait(
        &[&c],
        "the new n2 allocated",
        Duration::from_secs(20),
        || {
            let wns = cluster.weftnodes();
            wns.get("n2").is_some_and(|wn| {
                condition(wn, "Allocated").0 == "True"
                    && text(&wn["metadata"]["ownerReferences"][0]["uid"]) != n2_uid
            })
        },
    );
    cluster.wait(
        &[&c],
        "the old n2's claims released",
        Duration::from_secs(10),
        || live_claims(&cluster).len() == 6,
    );
    let again = check_unique(&cluster, &["n2", "n3", "n4"].map(String::from));
    assert_ne!(again["n2"].0, n2_v6);
}

#[test]
fn single_family_networks_allocate_only_their_family() {
    let cluster = Cluster::start();
    cluster.network(json!({"mode": "ipv6", "ipv6Ranges": [{"range": "2001:db8:1000::/64", "prefixLength": 96}]}));
    cluster.nodes(&[("n1", None)]);
    let c = cluster.controller("solo", &[], None);
    cluster.wait_allocated(&[&c], &["n1"], Duration::from_secs(30));
    let wn = &cluster.weftnodes()["n1"];
    assert_eq!(text(&wn["spec"]["ipv6Prefix"]), "2001:db8:1000::/96");
    assert!(wn["spec"]["ipv4Subnet"].is_null(), "{wn}");
    assert_eq!(
        cluster.get(&["node", "n1"])["spec"]["podCIDRs"],
        json!(["2001:db8:1000::/96"])
    );
    assert_eq!(
        live_claims(&cluster),
        [("2001:db8:1000::/96".to_owned(), "n1".to_owned())]
    );
    let net = cluster.get(&["weftnetwork", "default"]);
    cluster.wait(&[&c], "the network status", Duration::from_secs(10), || {
        cluster.get(&["weftnetwork", "default"])["status"]["ipv6Ranges"][0]["allocated"] == 1
    });
    assert!(net["status"]["ipv4Network"].is_null(), "{net}");
}

/// During a burst of new Nodes the controller writes ranges first and holds back the
/// `Allocated=True` / `PodCIDRs=True` conditions (controller/src/pacing.rs); once the
/// burst is over every node gets them, and nothing stays held.
#[test]
fn good_news_conditions_follow_a_burst_of_allocations() {
    let cluster = Cluster::start();
    cluster.network(
        json!({"ipv6Ranges": [{"range": "2001:db8:1000::/64"}], "ipv4Network": "10.0.0.0/8"}),
    );
    let c = cluster.controller("solo", &[], None);
    cluster.nodes(&[("warm", None)]);
    cluster.wait_allocated(&[&c], &["warm"], Duration::from_secs(30));
    assert_eq!(
        cluster.metric(&c, "weft_controller_held_conditions"),
        Some(0.0)
    );

    let names: Vec<String> = (0..300).map(|i| format!("burst-{i:03}")).collect();
    let batch: Vec<(&str, Option<&str>)> = names.iter().map(|n| (n.as_str(), None)).collect();
    cluster.nodes(&batch);
    // While the burst is allocated: some nodes hold their ranges without the condition.
    let (mut most_held, mut ranges_before_condition) = (0.0_f64, 0);
    cluster.wait(
        &[&c],
        "the burst's ranges",
        Duration::from_secs(120),
        || {
            most_held = most_held.max(
                cluster
                    .metric(&c, "weft_controller_held_conditions")
                    .unwrap_or(0.0),
            );
            let wns = cluster.weftnodes();
            let ranged = |wn: &Value| {
                !wn["spec"]["ipv6Prefix"].is_null() && !wn["spec"]["ipv4Subnet"].is_null()
            };
            ranges_before_condition = ranges_before_condition.max(
                wns.values()
                    .filter(|wn| ranged(wn) && condition(wn, "Allocated").0.is_empty())
                    .count(),
            );
            names.iter().all(|n| wns.get(n).is_some_and(ranged))
        },
    );
    assert!(
        most_held > 0.0,
        "no condition was ever held back during the burst"
    );
    assert!(
        ranges_before_condition > 0,
        "every node had its condition as soon as its ranges"
    );
    // Then every node reports, and the gauge returns to 0.
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    cluster.wait_allocated(&[&c], &all, Duration::from_secs(90));
    cluster.wait(&[&c], "no held conditions", Duration::from_secs(10), || {
        cluster.metric(&c, "weft_controller_held_conditions") == Some(0.0)
    });
    let wns = cluster.weftnodes();
    for n in &names {
        assert_eq!(condition(&wns[n], "PodCIDRs").0, "True", "{n}: {}", wns[n]);
    }
}

#[test]
fn a_standby_replica_takes_over_within_15_seconds() {
    let cluster = Cluster::start();
    cluster.network(json!({"ipv6Ranges": [{"range": "2001:db8:1000::/64"}]}));
    cluster.nodes(&[("n1", None)]);
    let mut replicas = [
        cluster.controller("a", &[], None),
        cluster.controller("b", &[], None),
    ];
    cluster.wait_allocated(
        &[&replicas[0], &replicas[1]],
        &["n1"],
        Duration::from_secs(30),
    );
    let leader = cluster.cp.lease_holder();
    let (l, s) = if leader == "a" { (0, 1) } else { (1, 0) };
    assert!(leader == "a" || leader == "b", "holder {leader:?}");
    assert_eq!(
        cluster.metric(&replicas[l], "weft_controller_leader"),
        Some(1.0)
    );
    assert_eq!(
        cluster.metric(&replicas[s], "weft_controller_leader"),
        Some(0.0)
    );
    // Only the leader reconciles.
    assert_eq!(
        cluster.metric(
            &replicas[s],
            "weft_controller_reconcile_duration_seconds_count"
        ),
        Some(0.0)
    );

    replicas[l].kill();
    let killed = Instant::now();
    cluster.nodes(&[("n2", None)]);
    let standby = &replicas[s];
    cluster.wait(
        &[standby],
        "the standby to lead",
        Duration::from_secs(15),
        || cluster.metric(standby, "weft_controller_leader") == Some(1.0),
    );
    cluster.wait_allocated(
        &[standby],
        &["n2"],
        Duration::from_secs(15).saturating_sub(killed.elapsed()),
    );
    let took = killed.elapsed();
    eprintln!("failover: the standby led and allocated a new node {took:?} after the kill");
    assert!(took < Duration::from_secs(15));
    assert_eq!(cluster.cp.lease_holder(), if s == 0 { "a" } else { "b" });
    check_unique(&cluster, &["n1", "n2"].map(String::from));

    // A clean exit hands the Lease back: a restarted replica leads at its next attempt.
    let nix_pid = nix::unistd::Pid::from_raw(replicas[s].child.as_ref().unwrap().id() as i32);
    let fresh = cluster.controller("c", &[], None);
    nix::sys::signal::kill(nix_pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let handed = Instant::now();
    cluster.wait(
        &[&fresh],
        "the new replica to lead",
        Duration::from_secs(8),
        || cluster.metric(&fresh, "weft_controller_leader") == Some(1.0),
    );
    eprintln!(
        "after SIGTERM, the next replica led in {:?}",
        handed.elapsed()
    );
}

/// 1,000 Nodes created in batches while two controllers race: first with separate Leases
/// (both lead at once, every allocation contested), then as one election (a random
/// replica SIGKILLed and restarted every few seconds, mid-write). Every node ends with
/// exactly one prefix and one subnet, none shared.
#[test]
fn racing_controllers_killed_at_random_while_1000_nodes_are_created() {
    let cluster = Cluster::start();
    cluster.network(json!({
        "ipv6Ranges": [
            {"range": "2001:db8:1000::/64", "zone": "z1", "gateway": "2001:db8:1000::1"},
            {"range": "2001:db8:2000::/64", "zone": "z2"},
            {"range": "2001:db8:9000::/64"},
        ],
        "ipv4Network": "10.0.0.0/8",
        "releaseCooldownSeconds": 5,
    }));
    let names: Vec<String> = (0..1000).map(|i| format!("node-{i:04}")).collect();
    let zone = |i: usize| match i % 3 {
        0 => Some("z1"),
        1 => Some("z2"),
        _ => None,
    };
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };

    // Phase 1: two leaders at once (separate Leases) on the first 400 nodes.
    let a = cluster.controller("race-a", &["--lease-name=race-a"], None);
    let b = cluster.controller("race-b", &["--lease-name=race-b"], None);
    let began = Instant::now();
    for chunk in (0..400).collect::<Vec<_>>().chunks(50) {
        let batch: Vec<(&str, Option<&str>)> = chunk
            .iter()
            .map(|&i| (names[i].as_str(), zone(i)))
            .collect();
        cluster.nodes(&batch);
    }
    let first: Vec<&str> = names[..400].iter().map(String::as_str).collect();
    cluster.wait_allocated(&[&a, &b], &first, Duration::from_secs(120));
    eprintln!(
        "400 nodes allocated by two racing leaders in {:?}",
        began.elapsed()
    );
    // Duplicates from the race are released; once they are, each node holds one of each.
    cluster.wait(
        &[&a, &b],
        "duplicates released",
        Duration::from_secs(30),
        || live_claims(&cluster).len() == 800,
    );
    check_unique(&cluster, &names[..400]);
    drop((a, b));

    // Phase 2: one election, a replica killed at random every 1-4 s while 600 more
    // nodes arrive.
    let mut replicas = [
        cluster.controller("r0", &[], None),
        cluster.controller("r1", &[], None),
    ];
    let mut generation = 2;
    let mut kills = 0;
    let began = Instant::now();
    let mut created = 400;
    let mut next_kill = Instant::now() + Duration::from_millis(1000 + next(3000));
    while created < 1000 {
        let batch: Vec<(&str, Option<&str>)> = (created..created + 25)
            .map(|i| (names[i].as_str(), zone(i)))
            .collect();
        cluster.nodes(&batch);
        created += 25;
        std::thread::sleep(Duration::from_millis(150));
        if Instant::now() >= next_kill {
            let victim = usize::try_from(next(2)).unwrap();
            replicas[victim].kill();
            kills += 1;
            replicas[victim] = cluster.controller(&format!("r{generation}"), &[], None);
            generation += 1;
            next_kill = Instant::now() + Duration::from_millis(1000 + next(3000));
        }
    }
    eprintln!(
        "600 nodes created in {:?} with {kills} kills",
        began.elapsed()
    );
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    let refs: Vec<&Controller> = replicas.iter().collect();
    cluster.wait_allocated(&refs, &all, Duration::from_secs(180));
    eprintln!(
        "all 1000 allocated {:?} after phase 2 began",
        began.elapsed()
    );
    cluster.wait(
        &refs,
        "duplicates released",
        Duration::from_secs(30),
        || live_claims(&cluster).len() == 2000,
    );
    let got = check_unique(&cluster, &names);
    // Zones were honoured.
    for (i, name) in names.iter().enumerate() {
        let want = match zone(i) {
            Some("z1") => "2001:db8:1000:",
            Some(_) => "2001:db8:2000:",
            None => "2001:db8:9000:",
        };
        assert!(got[name].0.starts_with(want), "{name}: {}", got[name].0);
    }
}

#[test]
#[ignore = "a measurement, not a check: N nodes (default 1000) exist, then one controller starts"]
fn allocation_throughput() {
    let cluster = Cluster::start();
    cluster.network(
        json!({"ipv6Ranges": [{"range": "2001:db8:1000::/64"}], "ipv4Network": "10.0.0.0/8"}),
    );
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let names: Vec<String> = (0..n).map(|i| format!("node-{i:05}")).collect();
    for chunk in names.chunks(500) {
        let batch: Vec<(&str, Option<&str>)> = chunk.iter().map(|n| (n.as_str(), None)).collect();
        cluster.nodes(&batch);
    }
    let cpu = |pid: u32| -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
        (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
    };
    let pids = std::fs::read_to_string(cluster.cp.dir().join("pids")).unwrap();
    let pids: Vec<u32> = pids.lines().map(|l| l.parse().unwrap()).collect();
    let (etcd0, api0) = (cpu(pids[0]), cpu(pids[1]));
    let c = cluster.controller("solo", &[], None);
    let began = Instant::now();
    // Polling one small object: listing every WeftNode would load the apiserver.
    cluster.wait(&[&c], "all claims", Duration::from_secs(600), || {
        cluster.get(&["weftnetwork", "default"])["status"]["ipv4Network"]["allocated"] == n
    });
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    cluster.wait_allocated(&[&c], &all, Duration::from_secs(600));
    let took = began.elapsed();
    let pid = c.child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak: Vec<String> = status
        .lines()
        .filter(|l| {
            ["VmHWM", "RssAnon", "RssFile"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let peak = peak.join(", ");
    eprintln!(
        "{n} nodes allocated in {took:?}; CPU seconds: apiserver {:.1}, etcd {:.1}, controller {:.1}; controller {peak}",
        cpu(pids[1]) - api0,
        cpu(pids[0]) - etcd0,
        cpu(pid),
    );
}
