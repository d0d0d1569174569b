//! weft-controller's policy relay against a real kube-apiserver: a replica started with
//! `--relay-addr` serves `WeftAddressGroup` (and `WeftPolicy`) lists and watches by span
//! label over HTTPS, from what it follows on the apiserver, to clients the apiserver
//! would let watch them. Checked with curl, as any client speaking the Kubernetes API
//! (weftd's own watches through the relay are the NetworkPolicy tests'). Needs root.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use weft_e2e::{serving_namespace, wait_until, ControlPlane, Metrics, Netns};

#[path = "support/controller.rs"]
mod support;
use support::{rbac, Controller};

const SERVER_V6: &str = "2001:db8:ffff::2";
const RELAY_PORT: u16 = 9643;
const NODE_A: &str = "span.weft.dev/n-aaaaaaaaaaaaaaaa";
const NODE_B: &str = "span.weft.dev/n-bbbbbbbbbbbbbbbb";
const GROUPS: &str = "/apis/weft.dev/v1alpha1/weftaddressgroups";

/// A control plane and one relaying controller; field order is drop order.
struct Site {
    controller: Controller,
    cp: ControlPlane,
    ns: Netns,
    /// A token allowed to watch weft's policy objects, and one allowed nothing.
    reader: String,
    stranger: String,
}

impl Site {
    fn start() -> Site {
        let ns = serving_namespace("relay", &[&format!("{SERVER_V6}/64")]);
        let cp = ControlPlane::start(&ns, SERVER_V6.parse().unwrap());
        cp.install_weft_crds();
        let kubeconfig = cp.dir().join("weft-controller.kubeconfig");
        cp.write_kubeconfig(&kubeconfig, "weft-controller", &[]);
        cp.kubectl_input_ok(&["create", "-f", "-"], &rbac("weft-controller").to_string());
        // Another replica leads, so this one only relays (every replica does, leader or
        // not) and writes none of the policy objects the test makes by hand.
        hold_lease(&cp);
        let (cert, key) = cp.write_serving_cert("weft-policy-relay", &format!("IP:{SERVER_V6}"));
        let relay = format!("--relay-addr=[::]:{RELAY_PORT}");
        let (cert, key) = (
            format!("--relay-cert={}", cert.display()),
            format!("--relay-key={}", key.display()),
        );
        let controller =
            Controller::start(&ns, cp.dir(), "relay", &kubeconfig, &[&relay, &cert, &key]);
        let reader = token(&cp, "reader", Some("weft-reader"));
        let stranger = token(&cp, "stranger", None);
        Site {
            controller,
            cp,
            ns,
            reader,
            stranger,
        }
    }

    /// A GET of `path?query` on the relay as `token`: its status and body.
    fn get(&self, path: &str, query: &str, token: Option<&str>) -> (u16, String) {
        let output = self
            .curl(path, query, token, &["--max-time", "5"])
            .output()
            .unwrap();
        parse_status(&String::from_utf8_lossy(&output.stdout))
    }

    fn curl(&self, path: &str, query: &str, token: Option<&str>, more: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.ns.name(), "curl", "-sS", "-N"])
            .args(["--cacert", &self.cp.ca_cert().display().to_string()])
            .args(["-w", "\n%{http_code}"])
            .args(more);
        if let Some(token) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        cmd.arg(format!("https://[{SERVER_V6}]:{RELAY_PORT}{path}?{query}"));
        cmd
    }

    /// A watch held for `seconds`, its events read when it ends.
    fn watch(&self, query: &str, seconds: u32) -> Child {
        self.curl(
            GROUPS,
            &format!("watch=true&{query}"),
            Some(&self.reader),
            &["--max-time", &seconds.to_string()],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
    }

    fn apply(&self, object: &Value) -> Value {
        let out = self
            .cp
            .kubectl_input_ok(&["apply", "-f", "-", "-o", "json"], &object.to_string());
        serde_json::from_str(&out).unwrap()
    }

    fn metrics(&self) -> Metrics {
        Metrics(self.ns.http_get(&self.controller.metrics, "/metrics").1)
    }
}

/// The controllers' Lease, held by another replica for an hour.
fn hold_lease(cp: &ControlPlane) {
    let now = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.000000Z"])
        .output()
        .unwrap();
    let now = String::from_utf8_lossy(&now.stdout).trim().to_owned();
    cp.kubectl_input_ok(
        &["create", "-f", "-"],
        &json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "weft-controller", "namespace": "kube-system"},
        "spec": {"holderIdentity": "elsewhere", "leaseDurationSeconds": 3600,
                 "acquireTime": now, "renewTime": now}})
        .to_string(),
    );
}

/// A ServiceAccount's token, bound to `role` when given.
fn token(cp: &ControlPlane, account: &str, role: Option<&str>) -> String {
    cp.kubectl_ok(&["create", "serviceaccount", account, "-n", "kube-system"]);
    if let Some(role) = role {
        let rule = json!({"apiGroups": ["weft.dev"], "resources": ["weftpolicies", "weftaddressgroups"], "verbs": ["get", "list", "watch"]});
        cp.kubectl_input_ok(&["apply", "-f", "-"], &json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": role}, "rules": [rule]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": role},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
             "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": "kube-system"}]}]}).to_string());
    }
    cp.kubectl_ok(&["create", "token", account, "-n", "kube-system"])
        .trim()
        .to_owned()
}

/// curl's `-w "\n%{http_code}"` output: the status and the body before it.
fn parse_status(out: &str) -> (u16, String) {
    let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn group(name: &str, labels: &[&str], ip: &str) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|l| ((*l).to_owned(), json!("")))
        .collect();
    json!({"apiVersion": "weft.dev/v1alpha1", "kind": "WeftAddressGroup",
        "metadata": {"name": name, "labels": labels},
        "spec": {"group": "g-000000000001", "selector": "test", "members": [{"uid": name, "ips": [ip]}]}})
}

/// The watch's events as (type, name).
fn events(watch: Child) -> Vec<(String, String)> {
    let out = watch.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (_, body) = parse_status(&text);
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let name = event["object"]["metadata"]["name"].as_str().unwrap_or("");
            (event["type"].as_str().unwrap().to_owned(), name.to_owned())
        })
        .filter(|(kind, _)| kind != "BOOKMARK")
        .collect()
}

fn names(list: &str) -> Vec<String> {
    let list: Value = serde_json::from_str(list).unwrap_or_else(|e| panic!("{e}: {list}"));
    let mut names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn event(kind: &str, name: &str) -> (String, String) {
    (kind.to_owned(), name.to_owned())
}

#[test]
fn the_relay_serves_span_lists_and_watches_to_whom_the_apiserver_would() {
    let site = Site::start();
    site.apply(&group("g-1-0", &[NODE_A], "192.0.2.10"));
    site.apply(&group("g-2-0", &[NODE_A, NODE_B], "192.0.2.11"));
    site.apply(&group("g-3-0", &[NODE_B], "192.0.2.12"));

    // The legitimate path first: a reader lists node A's span.
    let selector = format!("labelSelector={NODE_A}");
    let mut listed = (0, String::new());
    wait_until("the relay to list", Duration::from_secs(30), || {
        listed = site.get(GROUPS, &selector, Some(&site.reader));
        listed.0 == 200 && names(&listed.1).len() == 2
    })
    .unwrap_or_else(|e| panic!("{e}: {listed:?}\n{}", site.controller.log_tail(30)));
    assert_eq!(names(&listed.1), ["g-1-0", "g-2-0"]);
    let list: Value = serde_json::from_str(&listed.1).unwrap();
    assert_eq!(list["kind"], "WeftAddressGroupList");
    let version = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();

    // A watch from the list's version sees an object enter, change and leave the span,
    // and nothing of objects outside it.
    let watch = site.watch(&format!("{selector}&resourceVersion={version}"), 8);
    std::thread::sleep(Duration::from_secs(1));
    site.apply(&group("g-3-0", &[NODE_A, NODE_B], "192.0.2.12"));
    site.apply(&group("g-3-0", &[NODE_A, NODE_B], "192.0.2.13"));
    site.apply(&group("g-4-0", &[NODE_B], "192.0.2.14"));
    site.apply(&group("g-1-0", &[NODE_B], "192.0.2.10"));
    site.cp.kubectl_ok(&["delete", "weftaddressgroup", "g-2-0"]);
    assert_eq!(
        events(watch),
        [
            event("ADDED", "g-3-0"),
            event("MODIFIED", "g-3-0"),
            event("DELETED", "g-1-0"),
            event("DELETED", "g-2-0"),
        ]
    );

    // Resumed from the first list's version, a watch gets all of that again at once.
    let resumed = site.watch(&format!("{selector}&resourceVersion={version}"), 2);
    assert_eq!(events(resumed).len(), 4);
    // Without a version: what the span holds now, as ADDED.
    assert_eq!(events(site.watch(&selector, 2)), [event("ADDED", "g-3-0")]);
    // A version from before the relay's listing: 410, list again (as the apiserver).
    let (code, body) = site.get(
        GROUPS,
        &format!("watch=true&{selector}&resourceVersion=1"),
        Some(&site.reader),
    );
    assert_eq!(code, 200, "{body}");
    let gone: Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(
        (gone["type"].as_str(), gone["object"]["code"].as_u64()),
        (Some("ERROR"), Some(410))
    );

    // Refused: no token, a forged one, an identity without the right, a selector the
    // relay does not serve, a path it does not serve.
    let (code, body) = site.get(GROUPS, &selector, None);
    assert_eq!(code, 401, "{body}");
    let (code, body) = site.get(GROUPS, &selector, Some("forged"));
    assert_eq!(code, 401, "{body}");
    let (code, body) = site.get(GROUPS, &selector, Some(&site.stranger));
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(
            "system:serviceaccount:kube-system:stranger may not list weftaddressgroups.weft.dev"
        ),
        "{body}"
    );
    let (code, body) = site.get(GROUPS, "labelSelector=a%3Db", Some(&site.reader));
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("labelSelector: 'a=b' is not one label name"),
        "{body}"
    );
    let (code, _) = site.get("/api/v1/pods", &selector, Some(&site.reader));
    assert_eq!(code, 404);

    let metrics = site.metrics();
    for (verb, code) in [
        ("list", "200"),
        ("list", "401"),
        ("list", "403"),
        ("watch", "200"),
    ] {
        let series = format!(
            "weft_relay_requests_total{{code=\"{code}\",resource=\"weftaddressgroups\",verb=\"{verb}\"}}"
        );
        assert!(
            metrics.get(&series).unwrap_or(0.0) >= 1.0,
            "{series}:\n{}",
            metrics.0
        );
    }

    // Requests arriving together with a token the relay has not seen (a weftd opening
    // its watches, every weftd after a replica goes away) cost one review of each kind,
    // and a watch after them one more access review only.
    let burst = token(&site.cp, "burst", Some("weft-burst-reader"));
    let reviews = |site: &Site| {
        let metrics = site.metrics();
        ["TokenReview", "SubjectAccessReview"].map(|review| {
            metrics
                .get(&format!("weft_relay_reviews_total{{review=\"{review}\"}}"))
                .unwrap_or(0.0)
        })
    };
    let before = reviews(&site);
    let lists: Vec<Child> = (0..8)
        .map(|_| {
            site.curl(GROUPS, &selector, Some(&burst), &["--max-time", "10"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for list in lists {
        let output = list.wait_with_output().unwrap();
        let (code, body) = parse_status(&String::from_utf8_lossy(&output.stdout));
        assert_eq!(code, 200, "{body}");
    }
    let after_lists = reviews(&site);
    assert_eq!(
        [after_lists[0] - before[0], after_lists[1] - before[1]],
        [1.0, 1.0],
        "reviews for 8 lists at once with one new token (TokenReview, SubjectAccessReview)"
    );
    let (code, body) = site.get(
        GROUPS,
        &format!("watch=true&{selector}&timeoutSeconds=1"),
        Some(&burst),
    );
    assert_eq!(code, 200, "{body}");
    let after_watch = reviews(&site);
    assert_eq!(
        [
            after_watch[0] - after_lists[0],
            after_watch[1] - after_lists[1]
        ],
        [0.0, 1.0],
        "reviews for a watch after the lists"
    );
}
