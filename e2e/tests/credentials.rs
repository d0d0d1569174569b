//! weft's Kubernetes credentials under attack, on a real kube-apiserver with the chart
//! installed by helm (its RBAC and admission policies exactly as shipped; no kubelets:
//! Nodes and Pods are objects only). Every token is real: the apiserver issues it
//! through the TokenRequest API, bound to a Pod whose `spec.nodeName` it writes into
//! the token (ServiceAccountTokenPodNodeInfo, GA in 1.32).
//!
//! - node A's weftd writes weftd's fields of node A's WeftNode, and nothing of node B's
//!   (create, update, patch, apply, status, delete), nor the controller's fields of its
//!   own; with RBAC widened to every verb the admission policy alone still refuses;
//! - the controller, running with its own token, allocates, sets Nodes' podCIDRs,
//!   publishes Events and holds its Lease; the same token cannot change any other Node
//!   field, write another Lease, or publish Events elsewhere or about other objects.
//!
//! - the real weftd and controller, each with its own pod-bound token, allocate, publish
//!   and report a namespace node's WeftNode under exactly these rules, and weftd's resync
//!   restores its identity after someone removes it.
//!
//! Each attack comes after the same path is shown to work with a legitimate request.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use weft_e2e::{
    binary, node_beside, serving_namespace, wait_until, Background, ControlPlane, Netns, Node,
    NodeOptions, SOLO_NODE_V6,
};

const NAMESPACE: &str = "kube-system";
const RELEASE: &str = "weft";
const SERVER_V6: &str = "2001:db8:ffff::2";
const WEFTD: &str = "weft-weftd";
const CONTROLLER: &str = "weft-controller";
/// The admission policy's words for a write to another node's WeftNode.
const NOT_ITS_NODE: &str = "weftd may write only the WeftNode of the node its token is bound to";
/// ... for a change to the controller's fields of its own.
const NOT_ITS_FIELDS: &str = "weftd may change only its own fields of WeftNode";

/// A control plane with the chart installed; field order is drop order.
struct Cluster {
    cp: ControlPlane,
    ns: Netns,
}

/// What a request came to: Ok(stdout) or Err(stderr).
type Answer = Result<String, String>;

fn answer(out: Output) -> Answer {
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

#[track_caller]
fn allowed(what: &str, answer: Answer) -> String {
    answer.unwrap_or_else(|e| panic!("{what} was refused: {e}"))
}

#[track_caller]
fn refused(what: &str, answer: Answer, saying: &str) {
    match answer {
        Ok(out) => panic!("{what} was allowed: {out}"),
        Err(e) => assert!(
            e.contains(saying),
            "{what}: refused without '{saying}': {e}"
        ),
    }
}

impl Cluster {
    fn start(tag: &str) -> Cluster {
        let ns = serving_namespace(tag, &[&format!("{SERVER_V6}/64")]);
        let cp = ControlPlane::start(&ns, SERVER_V6.parse().unwrap());
        let cluster = Cluster { cp, ns };
        cluster.helm_install();
        cluster
    }

    fn helm_install(&self) {
        let helm = std::env::var_os("HELM")
            .map(PathBuf::from)
            .unwrap_or_else(|| weft_e2e::tools_bin().join("helm"));
        let home = self.cp.dir().join("helm");
        let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/weft");
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", self.ns.name()])
            .arg(helm)
            .args(["install", RELEASE])
            .arg(chart)
            .args(["--namespace", NAMESPACE])
            .arg(format!("--kubeconfig={}", self.cp.kubeconfig().display()))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"))
            .output()
            .unwrap();
        allowed("helm install", answer(out));
    }

    fn admin(&self, args: &[&str]) -> String {
        self.cp.kubectl_ok(args)
    }

    fn get(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend(args);
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.admin(&all)).unwrap()
    }

    fn create(&self, doc: &Value) -> Value {
        let out = self
            .cp
            .kubectl_input_ok(&["create", "-o", "json", "-f", "-"], &doc.to_string());
        serde_json::from_str(&out).unwrap()
    }

    /// A Pod of `account` on `node`, as a DaemonSet or Deployment would make it
    /// (nothing runs it here).
    fn pod(&self, name: &str, account: &str, node: &str) {
        self.create(&json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"nodeName": node, "serviceAccountName": account,
                     "containers": [{"name": "main", "image": "weft.dev/weft:0.1.0"}]}}));
    }

    /// A kubeconfig holding a real token of `account`, bound to `pod` when given.
    fn token_kubeconfig(&self, account: &str, pod: Option<&str>) -> PathBuf {
        let mut args = vec!["create", "token", account, "-n", NAMESPACE];
        let bound;
        if let Some(pod) = pod {
            bound = format!("--bound-object-name={pod}");
            args.extend(["--bound-object-kind=Pod", &bound]);
        }
        let token = self.admin(&args);
        let user = pod.unwrap_or(account);
        self.cp.token_kubeconfig(user, &token)
    }

    /// kubectl with `kubeconfig`; `input`, if any, is written to a file `-f` names.
    fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], input: Option<&Value>) -> Answer {
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        if let Some(input) = input {
            let file = self
                .cp
                .dir()
                .join(format!("input-{}.json", weft_e2e::unique_name("doc")));
            std::fs::write(&file, input.to_string()).unwrap();
            args.extend(["-f".into(), file.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        answer(self.cp.kubectl_from(&self.ns, kubeconfig, &args))
    }

    /// A Node, and its WeftNode as the controller makes it: ranges, zone, owned by the
    /// Node, `Allocated`.
    fn allocated_node(&self, name: &str, index: u8) {
        let node = self.create(&json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": "z1"}}}));
        self.create(
            &json!({"apiVersion": "weft.dev/v1alpha1", "kind": "WeftNode",
            "metadata": {"name": name, "ownerReferences": [{"apiVersion": "v1", "kind": "Node",
                "name": name, "uid": node["metadata"]["uid"], "controller": true}]},
            "spec": {"nodeName": name, "zone": "z1",
                     "ipv6Prefix": format!("2001:db8:1000:0:{index}::/80"),
                     "ipv4Subnet": format!("10.244.{index}.0/24")}}),
        );
        let status = json!({"status": {"conditions": [{"type": "Allocated", "status": "True",
            "reason": "Allocated", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        self.admin(&[
            "patch",
            "weftnode",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]);
    }

    /// The real weft-controller, as its Deployment runs it, with `kubeconfig`'s token.
    fn start_controller(&self, kubeconfig: &Path) -> Background {
        let bin = binary("weft-controller").display().to_string();
        let kubeconfig = kubeconfig.display().to_string();
        let args = [
            "--kubeconfig",
            &kubeconfig,
            "--identity",
            "controller-0",
            "--lease-namespace",
            NAMESPACE,
            "--metrics-addr",
            "[::1]:9650",
        ];
        Background::spawn(&self.ns, &bin, &args)
    }

    /// Waits until the policies are in force: the apiserver compiles and loads them a
    /// moment after they are created. A server-side dry run goes through admission and
    /// writes nothing.
    fn wait_policy(&self, kubeconfig: &Path, args: &[&str], saying: &str) {
        let mut args = args.to_vec();
        args.push("--dry-run=server");
        let mut last = Ok(String::new());
        wait_until("the admission policy", Duration::from_secs(30), || {
            last = self.kubectl_as(kubeconfig, &args, None);
            last.as_ref().is_err_and(|e| e.contains(saying))
        })
        .unwrap_or_else(|e| panic!("{e}: {last:?}"));
    }
}

fn merge(kind: &str, name: &str, patch: Value) -> Vec<String> {
    [
        "patch",
        kind,
        name,
        "--type=merge",
        "-p",
        &patch.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// weftd's identity as weftd applies it (server-side apply, field manager weftd).
fn identity(node: &str, underlay_v4: &str) -> Value {
    json!({"apiVersion": "weft.dev/v1alpha1", "kind": "WeftNode", "metadata": {"name": node},
        "spec": {"nodeName": node, "underlayIPv4": underlay_v4,
                 "underlayIPv6": "2001:db8:ffff::11", "vtepMAC": "0e:fe:0a:f4:01:00"}})
}

/// weftd's status report as weftd applies it: usage and its Ready condition.
fn usage(node: &str) -> Value {
    json!({"apiVersion": "weft.dev/v1alpha1", "kind": "WeftNode", "metadata": {"name": node},
        "status": {"ipv6InUse": 3, "ipv4InUse": 3, "ipv4Capacity": 254, "ipv4Usage": "3/254",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Serving",
                "message": "weftd serves pods", "lastTransitionTime": "2026-01-01T00:00:01Z"}]}})
}

/// kubectl's server-side apply as weftd does it, of the object and of its status.
const APPLY: [&str; 4] = [
    "apply",
    "--server-side",
    "--force-conflicts",
    "--field-manager=weftd",
];
const APPLY_STATUS: [&str; 5] = [
    "apply",
    "--server-side",
    "--force-conflicts",
    "--field-manager=weftd",
    "--subresource=status",
];

/// The chart installed, node-a and node-b allocated, and weftd's token of node-a,
/// shown to write what weftd writes to node-a's WeftNode once the policy is in force.
fn weftd_of_node_a(tag: &str) -> (Cluster, PathBuf) {
    let cluster = Cluster::start(tag);
    cluster.allocated_node("node-a", 1);
    cluster.allocated_node("node-b", 2);
    cluster.pod("weftd-a", WEFTD, "node-a");
    let weftd_a = cluster.token_kubeconfig(WEFTD, Some("weftd-a"));
    let probe = merge(
        "weftnode",
        "node-b",
        json!({"spec": {"vtepMAC": "0e:fe:0a:f4:02:00"}}),
    );
    cluster.wait_policy(&weftd_a, &strs(&probe), NOT_ITS_NODE);

    allowed(
        "weftd-a applying node-a's identity",
        cluster.kubectl_as(&weftd_a, &APPLY, Some(&identity("node-a", "192.0.2.11"))),
    );
    allowed(
        "weftd-a reporting node-a's usage",
        cluster.kubectl_as(&weftd_a, &APPLY_STATUS, Some(&usage("node-a"))),
    );
    let a = cluster.get(&["weftnode", "node-a"]);
    assert_eq!(a["spec"]["underlayIPv4"], "192.0.2.11");
    assert_eq!(a["spec"]["ipv6Prefix"], "2001:db8:1000:0:1::/80");
    assert_eq!(a["status"]["ipv4Usage"], "3/254");
    let types: Vec<&Value> = a["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["type"])
        .collect();
    assert_eq!(types, [&json!("Allocated"), &json!("Ready")]);
    (cluster, weftd_a)
}

/// Grants weftd's ServiceAccount every verb on WeftNodes, as a careless RBAC would:
/// what is refused then, the policy alone refuses.
fn widen_weftd_rbac(cluster: &Cluster, weftd: &Path) {
    cluster.create(
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "widened"},
        "rules": [{"apiGroups": ["weft.dev"], "resources": ["weftnodes", "weftnodes/status"],
                   "verbs": ["*"]}]}),
    );
    cluster.create(&json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding", "metadata": {"name": "widened"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "widened"},
        "subjects": [{"kind": "ServiceAccount", "name": WEFTD, "namespace": NAMESPACE}]}));
    wait_until("the widened RBAC", Duration::from_secs(10), || {
        cluster
            .kubectl_as(weftd, &["auth", "can-i", "delete", "weftnodes"], None)
            .is_ok_and(|out| out.trim() == "yes")
    })
    .unwrap();
}

#[test]
fn a_weftd_token_writes_nothing_of_another_nodes_weftnode() {
    let (cluster, weftd_a) = weftd_of_node_a("cred-other");
    let b_before = cluster.get(&["weftnode", "node-b"]);
    let not_b = format!("{NOT_ITS_NODE}, not node-b");
    let to_b = |patch: Value| merge("weftnode", "node-b", patch);
    let json_patch =
        r#"[{"op":"replace","path":"/spec/ipv6Prefix","value":"2001:db8:1000:0:1::/80"}]"#;
    let json_patch: Vec<String> = [
        "patch",
        "weftnode",
        "node-b",
        "--type=json",
        "-p",
        json_patch,
    ]
    .map(String::from)
    .to_vec();
    let attacks: [(&str, Vec<String>, Option<Value>); 4] = [
        (
            "merge patch",
            to_b(json!({"spec": {"underlayIPv4": "192.0.2.66"}})),
            None,
        ),
        ("JSON patch", json_patch, None),
        (
            "apply",
            APPLY.map(String::from).to_vec(),
            Some(identity("node-b", "192.0.2.66")),
        ),
        (
            "status apply",
            APPLY_STATUS.map(String::from).to_vec(),
            Some(usage("node-b")),
        ),
    ];
    for (what, args, input) in &attacks {
        refused(
            &format!("weftd-a's {what} of node-b"),
            cluster.kubectl_as(&weftd_a, &strs(args), input.as_ref()),
            &not_b,
        );
    }
    // A token bound to no pod names no node: it writes nothing, not even node-a.
    let unbound = cluster.token_kubeconfig(WEFTD, None);
    let to_a = merge(
        "weftnode",
        "node-a",
        json!({"spec": {"underlayIPv4": "192.0.2.66"}}),
    );
    refused(
        "an unbound weftd token's patch of node-a",
        cluster.kubectl_as(&unbound, &strs(&to_a), None),
        &format!("{NOT_ITS_NODE}, not node-a"),
    );

    // Verbs weftd's RBAC does not have are refused before admission; with RBAC widened
    // to all of them, the policy refuses each.
    let mut replaced = b_before.clone();
    replaced["spec"]["underlayIPv4"] = json!("192.0.2.66");
    let node_c = identity("node-c", "192.0.2.67");
    let unlisted = |saying_b: &str, saying_c: &str| {
        for (what, args, input, saying) in [
            (
                "update of node-b",
                vec!["replace"],
                Some(&replaced),
                saying_b,
            ),
            (
                "delete of node-b",
                vec!["delete", "weftnode", "node-b"],
                None,
                saying_b,
            ),
            ("create of node-c", vec!["create"], Some(&node_c), saying_c),
            (
                "apply creating node-c",
                APPLY.to_vec(),
                Some(&node_c),
                saying_c,
            ),
        ] {
            refused(
                &format!("weftd-a's {what}"),
                cluster.kubectl_as(&weftd_a, &args, input),
                saying,
            );
        }
    };
    unlisted("cannot", "cannot create");
    widen_weftd_rbac(&cluster, &weftd_a);
    unlisted(&not_b, &format!("{NOT_ITS_NODE}, not node-c"));

    let b_after = cluster.get(&["weftnode", "node-b"]);
    assert_eq!(b_after["spec"], b_before["spec"]);
    assert_eq!(b_after["status"], b_before["status"]);
    assert!(!cluster
        .cp
        .kubectl(&["get", "weftnode", "node-c"])
        .status
        .success());
}

#[test]
fn a_weftd_token_changes_none_of_the_controllers_fields_of_its_own_weftnode() {
    let (cluster, weftd_a) = weftd_of_node_a("cred-own");
    let a_before = cluster.get(&["weftnode", "node-a"]);
    for (field, patch) in [
        (
            "ipv6Prefix",
            json!({"spec": {"ipv6Prefix": "2001:db8:1000:0:2::/80"}}),
        ),
        (
            "ipv4Subnet",
            json!({"spec": {"ipv4Subnet": "10.244.2.0/24"}}),
        ),
        ("zone", json!({"spec": {"zone": "z2"}})),
        ("nodeName", json!({"spec": {"nodeName": "node-b"}})),
        (
            "a label",
            json!({"metadata": {"labels": {"weft.dev/x": "y"}}}),
        ),
        (
            "an annotation",
            json!({"metadata": {"annotations": {"weft.dev/x": "y"}}}),
        ),
        (
            "a finalizer",
            json!({"metadata": {"finalizers": ["weft.dev/keep"]}}),
        ),
        ("the owner", json!({"metadata": {"ownerReferences": null}})),
    ] {
        refused(
            &format!("weftd-a changing node-a's {field}"),
            cluster.kubectl_as(&weftd_a, &strs(&merge("weftnode", "node-a", patch)), None),
            NOT_ITS_FIELDS,
        );
    }
    let mut forged = identity("node-a", "192.0.2.11");
    forged["spec"]["ipv6Prefix"] = json!("2001:db8:1000:0:2::/80");
    refused(
        "weftd-a applying an ipv6Prefix to node-a",
        cluster.kubectl_as(&weftd_a, &APPLY, Some(&forged)),
        NOT_ITS_FIELDS,
    );
    let mut allocated_false = usage("node-a");
    allocated_false["status"]["conditions"] = json!([{"type": "Allocated", "status": "False",
        "reason": "Forged", "message": "", "lastTransitionTime": "2026-01-01T00:00:02Z"}]);
    refused(
        "weftd-a applying the controller's Allocated condition",
        cluster.kubectl_as(&weftd_a, &APPLY_STATUS, Some(&allocated_false)),
        NOT_ITS_FIELDS,
    );

    // With RBAC widened: it still never deletes its WeftNode, and creates one (an apply
    // of an absent object is a create) only with weftd's fields.
    widen_weftd_rbac(&cluster, &weftd_a);
    refused(
        "weftd-a's delete of node-a",
        cluster.kubectl_as(&weftd_a, &["delete", "weftnode", "node-a"], None),
        "weftd never deletes a WeftNode",
    );
    cluster.create(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-d"}}));
    cluster.pod("weftd-d", WEFTD, "node-d");
    let weftd_d = cluster.token_kubeconfig(WEFTD, Some("weftd-d"));
    let mut forged = identity("node-d", "192.0.2.14");
    forged["spec"]["ipv6Prefix"] = json!("2001:db8:1000:0:1::/80");
    refused(
        "weftd-d creating node-d with an ipv6Prefix",
        cluster.kubectl_as(&weftd_d, &APPLY, Some(&forged)),
        "weftd may create WeftNode node-d only with its own fields",
    );
    allowed(
        "weftd-d creating node-d with its identity",
        cluster.kubectl_as(&weftd_d, &APPLY, Some(&identity("node-d", "192.0.2.14"))),
    );

    let a_after = cluster.get(&["weftnode", "node-a"]);
    for part in ["spec", "status"] {
        assert_eq!(a_after[part], a_before[part], "{part}");
    }
    assert_eq!(
        a_after["metadata"]["ownerReferences"],
        a_before["metadata"]["ownerReferences"]
    );
}

/// The admission policy's words for a Node change other than podCIDRs.
const NOT_POD_CIDRS: &str = "weft-controller may change only spec.podCIDR and spec.podCIDRs";

fn event(namespace: &str, reporter: &str, regarding: Value) -> Value {
    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"generateName": "forged-", "namespace": namespace},
        "eventTime": "2026-01-01T00:00:00.000000Z", "type": "Warning", "reason": "Forged",
        "action": "Allocate", "reportingController": reporter,
        "reportingInstance": "controller-0", "regarding": regarding})
}

#[test]
fn the_controller_token_patches_only_pod_cidrs_and_writes_only_its_lease_and_events() {
    let cluster = Cluster::start("cred-ctl");
    cluster.create(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}}));
    // A node whose podCIDRs someone else set: the controller says so in an Event.
    cluster.create(
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-p"},
        "spec": {"podCIDR": "10.0.0.0/24", "podCIDRs": ["10.0.0.0/24"]}}),
    );
    cluster.pod("controller-0", "weft-controller", "node-a");
    let controller = cluster.token_kubeconfig("weft-controller", Some("controller-0"));
    let label = merge(
        "node",
        "node-a",
        json!({"metadata": {"labels": {"weft.dev/x": "y"}}}),
    );
    cluster.wait_policy(&controller, &strs(&label), NOT_POD_CIDRS);

    // The legitimate path: the real controller with this token allocates node-a, sets
    // its podCIDRs, publishes the Event about node-p, and holds its Lease.
    let running = cluster.start_controller(&controller);
    let pod_cidrs = |node: &str| cluster.get(&["node", node])["spec"]["podCIDRs"].clone();
    wait_until("node-a's podCIDRs", Duration::from_secs(30), || {
        pod_cidrs("node-a").as_array().is_some_and(|c| c.len() == 2)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", running.output()));
    let wn = cluster.get(&["weftnode", "node-a"]);
    assert_eq!(
        pod_cidrs("node-a"),
        json!([wn["spec"]["ipv6Prefix"], wn["spec"]["ipv4Subnet"]])
    );
    wait_until("the PodCIDRsDiffer event", Duration::from_secs(20), || {
        cluster
            .admin(&["get", "events.events.k8s.io", "-n", "default", "-o", "json"])
            .contains("PodCIDRsDiffer")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", running.output()));
    let lease = cluster.get(&["lease", "-n", NAMESPACE, "weft-controller"]);
    assert_eq!(lease["spec"]["holderIdentity"], "controller-0");
    // Nothing it does was refused.
    let log = running.output();
    eprintln!("{log}");
    assert!(
        !log.contains("forbidden") && !log.contains("Forbidden"),
        "{log}"
    );
    drop(running);

    // Any other change to a Node: refused, whatever the field.
    let node_before = cluster.get(&["node", "node-a"]);
    for (field, patch) in [
        (
            "a label",
            json!({"metadata": {"labels": {"weft.dev/x": "y"}}}),
        ),
        (
            "an annotation",
            json!({"metadata": {"annotations": {"weft.dev/x": "y"}}}),
        ),
        (
            "a taint",
            json!({"spec": {"taints": [{"key": "weft.dev/x", "effect": "NoSchedule"}]}}),
        ),
        ("unschedulable", json!({"spec": {"unschedulable": true}})),
        (
            "providerID",
            json!({"spec": {"providerID": "forged://node-a"}}),
        ),
        (
            "a finalizer",
            json!({"metadata": {"finalizers": ["weft.dev/keep"]}}),
        ),
    ] {
        refused(
            &format!("the controller setting node-a's {field}"),
            cluster.kubectl_as(&controller, &strs(&merge("node", "node-a", patch)), None),
            &format!("{NOT_POD_CIDRS} of Node node-a"),
        );
    }
    let mut status = merge(
        "node",
        "node-a",
        json!({"status": {"capacity": {"pods": "1"}}}),
    );
    status.push("--subresource=status".into());
    for (what, args) in [
        ("status", strs(&status)),
        ("delete", vec!["delete", "node", "node-a"]),
    ] {
        refused(
            &format!("the controller's {what} of node-a"),
            cluster.kubectl_as(&controller, &args, None),
            "cannot",
        );
    }
    let node_after = cluster.get(&["node", "node-a"]);
    assert_eq!(
        node_after["metadata"]["labels"],
        node_before["metadata"]["labels"]
    );
    assert_eq!(node_after["spec"], node_before["spec"]);

    // Leases: its own only.
    let other_lease = |name: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"holderIdentity": "controller-0"}})
    };
    refused(
        "the controller creating another Lease",
        cluster.kubectl_as(
            &controller,
            &["create"],
            Some(&other_lease("kube-scheduler")),
        ),
        "weft-controller may write only its Lease weft-controller, not kube-scheduler",
    );
    cluster.create(&other_lease("kube-controller-manager"));
    refused(
        "the controller taking another Lease",
        cluster.kubectl_as(
            &controller,
            &strs(&merge(
                "lease",
                "kube-controller-manager",
                json!({"spec": {"holderIdentity": "controller-0"}}),
            ))
            .into_iter()
            .chain(["-n", NAMESPACE])
            .collect::<Vec<_>>(),
            None,
        ),
        "cannot",
    );

    // Events: its own, about a Node or the WeftNetwork in 'default', or about a
    // NetworkPolicy in that policy's own namespace.
    let node_a = json!({"apiVersion": "v1", "kind": "Node", "name": "node-a"});
    allowed(
        "the controller's own Event about node-a",
        cluster.kubectl_as(
            &controller,
            &["create"],
            Some(&event("default", CONTROLLER, node_a.clone())),
        ),
    );
    let forged = "weft-controller may write only Events it reports, about a Node or a WeftNetwork";
    refused(
        "an Event about a Node in kube-system",
        cluster.kubectl_as(
            &controller,
            &["create"],
            Some(&event(NAMESPACE, CONTROLLER, node_a.clone())),
        ),
        forged,
    );
    let policy_in = |namespace: &str| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "name": "deny", "namespace": namespace})
    };
    allowed(
        "the controller's own Event about a NetworkPolicy, in its namespace",
        cluster.kubectl_as(
            &controller,
            &["create"],
            Some(&event(NAMESPACE, CONTROLLER, policy_in(NAMESPACE))),
        ),
    );
    refused(
        "an Event about a NetworkPolicy of another namespace",
        cluster.kubectl_as(
            &controller,
            &["create"],
            Some(&event("default", CONTROLLER, policy_in(NAMESPACE))),
        ),
        forged,
    );
    refused(
        "an Event reported as the kubelet",
        cluster.kubectl_as(
            &controller,
            &["create"],
            Some(&event("default", "kubelet", node_a)),
        ),
        forged,
    );
    let pod =
        json!({"apiVersion": "v1", "kind": "Pod", "name": "controller-0", "namespace": NAMESPACE});
    refused(
        "an Event about a Pod",
        cluster.kubectl_as(
            &controller,
            &["create"],
            Some(&event("default", CONTROLLER, pod)),
        ),
        forged,
    );
}

#[test]
fn the_real_weftd_and_controller_serve_a_node_with_their_own_tokens() {
    let cluster = Cluster::start("cred-run");
    let name = "solo-node";
    cluster.create(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}));
    cluster.pod("weftd-solo", WEFTD, name);
    cluster.pod("controller-0", CONTROLLER, name);
    let weftd = cluster.token_kubeconfig(WEFTD, Some("weftd-solo"));
    let controller = cluster.token_kubeconfig(CONTROLLER, Some("controller-0"));
    // Another node's WeftNode, for the probe that the policy is in force (the
    // controller deletes it later: it has no Node).
    cluster.create(
        &json!({"apiVersion": "weft.dev/v1alpha1", "kind": "WeftNode",
        "metadata": {"name": "other"}, "spec": {"nodeName": "other"}}),
    );
    let to_other = merge(
        "weftnode",
        "other",
        json!({"spec": {"underlayIPv4": "192.0.2.66"}}),
    );
    cluster.wait_policy(&weftd, &strs(&to_other), NOT_ITS_NODE);

    // weftd starts first, as on a new cluster: it may not create its WeftNode, so its
    // first writes are refused until the controller, started a moment later, creates
    // it; ready once it has its ranges and published its identity.
    let (node, running) = std::thread::scope(|scope| {
        let controller = scope.spawn(|| {
            std::thread::sleep(Duration::from_secs(3));
            cluster.start_controller(&controller)
        });
        let node = Node::start_in(
            node_beside(&cluster.ns, "cw"),
            NodeOptions {
                node_name: Some(name.into()),
                kubeconfig: Some(weftd),
                ipv6_prefix: None,
                ipv4_subnet: None,
                extra_args: vec!["--resync-seconds".into(), "2".into()],
                ..NodeOptions::default()
            },
        );
        (node, controller.join().unwrap())
    });
    let log = node.log();
    assert!(
        log.contains("waiting for the controller to create this node's WeftNode"),
        "{log}"
    );
    let field = |path: &str| {
        let jsonpath = format!("jsonpath={{{path}}}");
        cluster.admin(&["get", "weftnode", name, "-o", &jsonpath])
    };
    assert_eq!(field(".spec.underlayIPv6"), SOLO_NODE_V6, "{}", node.log());
    assert_eq!(field(".spec.ipv6Prefix"), "2001:db8:1000::/80");
    wait_until("weftd's Ready condition", Duration::from_secs(20), || {
        field(".status.conditions[?(@.type==\"Ready\")].status") == "True"
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node.log()));

    // Someone removes weftd's fields: its next resync puts them back, with its token.
    cluster.admin(&[
        "patch",
        "weftnode",
        name,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/underlayIPv6"}]"#,
    ]);
    wait_until("the identity restored", Duration::from_secs(15), || {
        field(".spec.underlayIPv6") == SOLO_NODE_V6
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node.log()));
    wait_until("the restore counted", Duration::from_secs(5), || {
        node.metric("weft_identity_restored_total") >= Some(1.0)
    })
    .unwrap();
    // Nothing else was ever refused: weftd's refusals are those of its create, before
    // its WeftNode existed; the controller had none.
    let log = node.log();
    let refusals = log.lines().filter(|l| l.contains("forbidden"));
    for line in refusals {
        assert!(
            line.contains("waiting for the controller") && line.contains("cannot create"),
            "{line}"
        );
    }
    let log = running.output();
    assert!(
        !log.contains("forbidden") && !log.contains("Forbidden"),
        "{log}"
    );
}
