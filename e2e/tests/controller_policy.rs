//! weft-controller's NetworkPolicy objects against a real kube-apiserver (one control
//! plane per test, in a namespace of its own): Nodes, Namespaces, Pods (created with
//! `nodeName` and labels, their status written through the status subresource as
//! kubelet does) and NetworkPolicies go in; the controller, running with exactly the
//! chart's RBAC, must write the compiled `WeftPolicy`s with their span labels, the
//! address group slices, each node's `WeftNodePolicy` (owned by its Node, entries by
//! pod UID) and the `WeftPolicyIndex`, follow label changes and deletes, raise an Event
//! on a policy it cannot compile, write nothing on failover, and count a policy
//! programmed once a node's weftd reports the versions it applied. Needs root.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use weft_api::span::span_label;
use weft_e2e::{serving_namespace, wait_until, ControlPlane, Netns};

#[path = "support/controller.rs"]
mod support;
use support::{rbac, Controller};

const SERVER_V6: &str = "2001:db8:ffff::2";
const SERVER_V4: &str = "192.0.2.2";
/// The policy of the first test, as weft names its object.
const WEB: &str = "x.web-ingress";

/// A control plane with weft's CRDs and the controller's RBAC; field order is drop order.
struct Cluster {
    cp: ControlPlane,
    ns: Netns,
    kubeconfig: PathBuf,
}

impl Cluster {
    fn start(tag: &str) -> Cluster {
        let ns = serving_namespace(
            tag,
            &[&format!("{SERVER_V6}/64"), &format!("{SERVER_V4}/24")],
        );
        let cp = ControlPlane::start(&ns, SERVER_V6.parse().unwrap());
        cp.install_weft_crds();
        let kubeconfig = cp.dir().join("weft-controller.kubeconfig");
        cp.write_kubeconfig(&kubeconfig, "weft-controller", &[]);
        let cluster = Cluster { cp, ns, kubeconfig };
        cluster.kubectl_input("create", &rbac("weft-controller"));
        cluster
    }

    fn kubectl_input(&self, verb: &str, doc: &Value) -> String {
        self.cp
            .kubectl_input_ok(&[verb, "-f", "-", "-o", "json"], &doc.to_string())
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.cp.kubectl_ok(args)
    }

    fn get(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl(&all)).unwrap()
    }

    /// The objects of `kind` by name.
    fn objects(&self, kind: &str) -> BTreeMap<String, Value> {
        let items = self.get(&[kind])["items"].as_array().unwrap().clone();
        let name = |o: &Value| o["metadata"]["name"].as_str().unwrap().to_owned();
        items.into_iter().map(|o| (name(&o), o)).collect()
    }

    fn object(&self, kind: &str, name: &str) -> Option<Value> {
        self.objects(kind).remove(name)
    }

    /// Every policy object's resourceVersion, by kind and name.
    fn versions(&self) -> BTreeMap<String, String> {
        let mut all = BTreeMap::new();
        for kind in KINDS {
            for (name, o) in self.objects(kind) {
                let version = o["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                all.insert(format!("{kind}/{name}"), version);
            }
        }
        all
    }

    /// A Node; its uid.
    fn node(&self, name: &str) -> String {
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
        uid(&serde_json::from_str(&self.kubectl_input("create", &node)).unwrap())
    }

    fn namespace(&self, name: &str, labels: Value) {
        self.kubectl_input(
            "create",
            &json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": labels}}),
        );
    }

    /// A running pod as a kubelet reports it; its uid.
    fn pod(&self, namespace: &str, name: &str, labels: Value, node: &str, host: u8) -> String {
        let object = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                "ports": [{"name": "http", "containerPort": 8080}]}]}});
        let created: Value = serde_json::from_str(&self.kubectl_input("create", &object)).unwrap();
        let status = json!({"phase": "Running", "podIP": format!("198.51.100.{host}"),
            "podIPs": [{"ip": format!("198.51.100.{host}")}, {"ip": format!("2001:db8:1::{host}")}]});
        self.cp.patch_status("pod", Some(namespace), name, &status);
        uid(&created)
    }

    fn label_pod(&self, namespace: &str, name: &str, label: &str) {
        self.kubectl(&["label", "pod", name, "-n", namespace, label, "--overwrite"]);
    }

    fn policy(&self, namespace: &str, name: &str, spec: Value) {
        self.kubectl_input(
            "apply",
            &json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": name, "namespace": namespace}, "spec": spec}),
        );
    }

    /// Starts a controller replica with the chart's RBAC.
    fn controller(&self, identity: &str) -> Controller {
        let args = ["--log-level=info"];
        Controller::start(&self.ns, self.cp.dir(), identity, &self.kubeconfig, &args)
    }

    /// The sum of a metric's samples whose line starts with `series`.
    fn metric(&self, c: &Controller, series: &str) -> f64 {
        let text = self.ns.http_get(&c.metrics, "/metrics").1;
        text.lines()
            .filter(|l| l.starts_with(series))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits for `done`, printing the controllers' logs on a timeout.
    fn wait(&self, controllers: &[&Controller], what: &str, done: impl FnMut() -> bool) {
        if let Err(e) = wait_until(what, Duration::from_secs(30), done) {
            let logs: Vec<String> = controllers.iter().map(|c| c.log_tail(60)).collect();
            panic!("{e}\n{}", logs.join("\n-----\n"));
        }
    }

    /// The slices of `group`, by name.
    fn slices(&self, group: &str) -> BTreeMap<String, Value> {
        let mut slices = self.objects("weftaddressgroups");
        slices.retain(|_, s| s["spec"]["group"] == group);
        slices
    }
}

const KINDS: [&str; 4] = [
    "weftpolicies",
    "weftaddressgroups",
    "weftnodepolicies",
    "weftpolicyindexes",
];

fn uid(object: &Value) -> String {
    object["metadata"]["uid"].as_str().unwrap().to_owned()
}

/// web pods of x take http from db pods of x and from every pod of team-b namespaces.
fn web_ingress() -> Value {
    json!({
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{
            "from": [
                {"podSelector": {"matchLabels": {"app": "db"}}},
                {"namespaceSelector": {"matchLabels": {"team": "b"}}},
            ],
            "ports": [{"port": "http"}],
        }],
    })
}

/// Namespaces x (team a) and y (team b); x/web on node-1, x/db and y/client on
/// node-2. Returns the pods' uids by name.
fn populate(cluster: &Cluster) -> BTreeMap<&'static str, String> {
    cluster.namespace("x", json!({"team": "a"}));
    cluster.namespace("y", json!({"team": "b"}));
    BTreeMap::from([
        (
            "web",
            cluster.pod("x", "web", json!({"app": "web"}), "node-1", 1),
        ),
        (
            "db",
            cluster.pod("x", "db", json!({"app": "db"}), "node-2", 2),
        ),
        (
            "client",
            cluster.pod("y", "client", json!({"app": "client"}), "node-2", 3),
        ),
    ])
}

/// The group names a policy's first ingress rule's peers.
fn peer_groups(policy: &Value) -> Vec<String> {
    let peers = policy["spec"]["ingress"][0]["peers"].as_array().unwrap();
    peers
        .iter()
        .map(|p| p["group"].as_str().unwrap().to_owned())
        .collect()
}

/// The member uids of a group's slices.
fn members(cluster: &Cluster, group: &str) -> Vec<String> {
    let slices = cluster.slices(group);
    let members = slices
        .values()
        .flat_map(|s| s["spec"]["members"].as_array().cloned().unwrap());
    members
        .map(|m| m["uid"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn policies_become_spanned_objects_that_follow_labels_and_deletes() {
    let cluster = Cluster::start("ctlpol");
    let node_1 = cluster.node("node-1");
    cluster.node("node-2");
    let uids = populate(&cluster);
    cluster.policy("x", "web-ingress", web_ingress());
    let c = cluster.controller("solo");

    cluster.wait(&[&c], "the compiled policy", || {
        cluster.object("weftpolicies", WEB).is_some()
    });
    let policy = cluster.object("weftpolicies", WEB).unwrap();
    assert_eq!(policy["spec"]["source"]["namespace"], "x");
    assert_eq!(policy["spec"]["source"]["name"], "web-ingress");
    let np = cluster.get(&["networkpolicy", "web-ingress", "-n", "x"]);
    assert_eq!(policy["spec"]["source"]["uid"], np["metadata"]["uid"]);
    assert_eq!(
        policy["spec"]["ingress"][0]["ports"],
        json!([{"protocol": "TCP", "namedPort": "http"}])
    );
    assert!(policy["spec"]["egress"].is_null(), "{policy}");
    // Spanned to node-1 alone, the node of the only pod it applies to.
    assert_eq!(
        policy["metadata"]["labels"],
        json!({span_label("node-1"): ""})
    );
    let groups = peer_groups(&policy);
    assert_eq!(groups.len(), 2, "{policy}");
    let (db_group, team_b) = (&groups[0], &groups[1]);
    cluster.wait(&[&c], "both groups' members", || {
        members(&cluster, db_group) == [uids["db"].clone()]
            && members(&cluster, team_b) == [uids["client"].clone()]
    });
    for slice in cluster.slices(db_group).values() {
        // A group spans the nodes of the policies naming it. An ingress rule's named
        // port is the destination's (in the node policy), so members list none.
        assert_eq!(
            slice["metadata"]["labels"],
            json!({span_label("node-1"): ""})
        );
        assert_eq!(
            slice["spec"]["members"],
            json!([{"uid": uids["db"], "ips": ["198.51.100.2", "2001:db8:1::2"]}])
        );
    }

    // Each node's pods of policed namespaces, by uid; owned by the Node.
    let nodes = cluster.objects("weftnodepolicies");
    assert_eq!(nodes.keys().collect::<Vec<_>>(), ["node-1", "node-2"]);
    let n1 = &nodes["node-1"];
    assert_eq!(
        n1["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Node", "name": "node-1", "uid": node_1, "controller": true}])
    );
    assert_eq!(
        n1["spec"],
        json!({"nodeName": "node-1", "pods": [{"namespace": "x", "name": "web", "uid": uids["web"],
            "ingress": [WEB], "namedPorts": [{"name": "http", "protocol": "TCP", "port": 8080}]}]})
    );
    // y is not policed: y/client has no entry.
    assert_eq!(
        nodes["node-2"]["spec"]["pods"],
        json!([{"namespace": "x", "name": "db", "uid": uids["db"]}])
    );
    let index = cluster.object("weftpolicyindexes", "default").unwrap();
    assert_eq!(
        index["spec"]["namespaces"],
        json!([{"name": "x", "ingress": true, "egress": false}])
    );

    // db relabelled: it leaves the group (its slice goes); web-2, created outside the
    // policy on node-2, relabelled into it: the policy spans node-2 too.
    cluster.label_pod("x", "db", "app=cache");
    let web_2 = cluster.pod("x", "web-2", json!({"app": "other"}), "node-2", 4);
    cluster.label_pod("x", "web-2", "app=web");
    cluster.wait(&[&c], "the relabelled pods moved", || {
        let policy = cluster.object("weftpolicies", WEB).unwrap();
        let entries = cluster.object("weftnodepolicies", "node-2").unwrap()["spec"]["pods"].clone();
        members(&cluster, db_group).is_empty()
            && policy["metadata"]["labels"]
                == json!({span_label("node-1"): "", span_label("node-2"): ""})
            && entries
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["uid"] == web_2 && e["ingress"] == json!([WEB]))
    });

    // web-2 leaves again: the node-2 label goes from the policy (the controller owns
    // its labels: server-side apply drops one it no longer sets).
    cluster.label_pod("x", "web-2", "app=other");
    cluster.wait(&[&c], "the node-2 label removed", || {
        let policy = cluster.object("weftpolicies", WEB).unwrap();
        policy["metadata"]["labels"] == json!({span_label("node-1"): ""})
    });

    // A policy the apiserver accepts and the controller cannot compile: the apiserver
    // reads the prefix length "016" as 16 (legacy CIDR validation: StrictIPCIDRValidation
    // is alpha and off in 1.35), the controller's CIDR parser takes at most two digits
    // for IPv4. An Event on the policy says which field and value; nothing is written
    // for it.
    cluster.policy(
        "x",
        "bad",
        json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/016"}}]}]}),
    );
    cluster.wait(&[&c], "the InvalidNetworkPolicy event", || {
        let events = cluster.get(&["events.events.k8s.io", "-n", "x"]);
        events["items"].as_array().unwrap().iter().any(|e| {
            e["reason"] == "InvalidNetworkPolicy"
                && e["type"] == "Warning"
                && e["regarding"]["kind"] == "NetworkPolicy"
                && e["regarding"]["name"] == "bad"
                && e["note"]
                    .as_str()
                    .unwrap()
                    .contains("spec.ingress[0].from[0].ipBlock.cidr: '10.0.0.0/016'")
        })
    });
    assert!(cluster.object("weftpolicies", "x.bad").is_none());

    // The policy deleted: its object, its groups' slices and the node policies go (x
    // has no other valid policy); the index stays, empty.
    cluster.kubectl(&["delete", "networkpolicy", "web-ingress", "-n", "x"]);
    cluster.wait(&[&c], "the policy's objects deleted", || {
        cluster.objects("weftpolicies").is_empty()
            && cluster.objects("weftaddressgroups").is_empty()
            && cluster.objects("weftnodepolicies").is_empty()
    });
    let index = cluster.object("weftpolicyindexes", "default").unwrap();
    assert_eq!(index["spec"]["namespaces"], json!([]));

    let applied = |kind: &str| {
        cluster.metric(
            &c,
            &format!("weft_controller_policy_writes_total{{kind=\"{kind}\",result=\"applied\"}}"),
        )
    };
    assert!(applied("WeftPolicy") >= 2.0);
    assert!(applied("WeftPolicyIndex") >= 2.0);
    let deleted = cluster.metric(
        &c,
        "weft_controller_policy_writes_total{kind=\"WeftNodePolicy\",result=\"deleted\"}",
    );
    assert_eq!(deleted, 2.0);
    assert_eq!(
        cluster.metric(
            &c,
            "weft_controller_policy_objects{kind=\"WeftPolicyIndex\"}"
        ),
        1.0
    );
    let log = c.log();
    assert!(
        !log.contains("forbidden") && !log.contains("Forbidden"),
        "{log}"
    );
}

/// Reports on `node`'s WeftNodePolicy, as its weftd would once its kernel holds them,
/// the newest version of each resource.
fn report_programmed(cluster: &Cluster, node: &str) {
    let newest = |kind: &str| {
        let versions = cluster.objects(kind).into_values();
        let version = |o: Value| {
            o["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        versions.map(version).max().unwrap().to_string()
    };
    let (policies, slices) = (newest("weftpolicies"), newest("weftaddressgroups"));
    let status = json!({"observed": {
        "weftPolicies/node": policies, "weftPolicies/all": policies,
        "weftAddressGroups/node": slices, "weftAddressGroups/all": slices}});
    cluster
        .cp
        .patch_status("weftnodepolicy", None, node, &status);
}

/// (spanNodes, programmedNodes, pendingNodes, Programmed) of a policy's status.
fn programmed(cluster: &Cluster, name: &str) -> (Value, Value, Value, Value) {
    let status = cluster.object("weftpolicies", name).unwrap()["status"].clone();
    let condition = status["conditions"][0]["status"].clone();
    (
        status["spanNodes"].clone(),
        status["programmedNodes"].clone(),
        status["pendingNodes"].clone(),
        condition,
    )
}

#[test]
fn a_new_leader_writes_nothing_and_statuses_follow_weftd_reports() {
    let cluster = Cluster::start("ctlpolf");
    cluster.node("node-1");
    cluster.node("node-2");
    populate(&cluster);
    cluster.policy("x", "web-ingress", web_ingress());
    // A second policy, in y: two policies, two namespaces, both nodes.
    cluster.policy(
        "y",
        "deny-all",
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    );
    let mut a = cluster.controller("a");
    // Every object, and both statuses: pending, as no weftd reported.
    cluster.wait(&[&a], "every object and status", || {
        cluster.objects("weftnodepolicies").len() == 2
            && cluster.objects("weftaddressgroups").len() == 2
            && programmed(&cluster, WEB) == (json!(1), json!(0), json!(["node-1"]), json!("False"))
            && programmed(&cluster, "y.deny-all")
                == (json!(1), json!(0), json!(["node-2"]), json!("False"))
    });
    let b = cluster.controller("b");
    // a has written everything and stays quiet.
    std::thread::sleep(Duration::from_secs(2));
    let before = cluster.versions();
    assert!(!before.values().any(|v| v.is_empty()));
    assert_eq!(before.len(), 2 + 2 + 2 + 1, "{before:?}");
    a.kill();
    cluster.wait(&[&b], "b in sync with the model", || {
        b.log().contains("policy objects in sync with the model")
    });
    // Its first statuses too.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(cluster.versions(), before, "{}", b.log_tail(40));
    assert_eq!(
        cluster.metric(&b, "weft_controller_policy_writes_total"),
        0.0
    );
    assert_eq!(
        cluster.metric(
            &b,
            "weft_controller_policy_objects{kind=\"WeftNodePolicy\"}"
        ),
        2.0
    );

    // node-1's weftd reports: x's policy (span node-1) is programmed, y's still waits.
    report_programmed(&cluster, "node-1");
    cluster.wait(&[&b], "x.web-ingress programmed", || {
        programmed(&cluster, WEB) == (json!(1), json!(1), Value::Null, json!("True"))
    });
    assert_eq!(
        programmed(&cluster, "y.deny-all"),
        (json!(1), json!(0), json!(["node-2"]), json!("False"))
    );
    // A report older than the objects counts for nothing: node-2 reports versions
    // below y's policy.
    let old = json!({"observed": {"weftPolicies/node": "1", "weftAddressGroups/node": "1"}});
    cluster
        .cp
        .patch_status("weftnodepolicy", None, "node-2", &old);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(programmed(&cluster, "y.deny-all").1, json!(0));
    report_programmed(&cluster, "node-2");
    cluster.wait(&[&b], "y.deny-all programmed", || {
        programmed(&cluster, "y.deny-all") == (json!(1), json!(1), Value::Null, json!("True"))
    });
    let table = cluster.kubectl(&["get", "weftpolicies"]);
    assert!(table.contains("PROGRAMMED"), "{table}");
}
