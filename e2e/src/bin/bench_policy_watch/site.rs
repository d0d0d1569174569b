//! The control plane the benchmark measures: etcd and kube-apiserver in a namespace of
//! their own, the CRD it writes, a kube-rs client inside that namespace, and what the
//! apiserver's process and /metrics say.

use crate::objects::Resource;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::Path;
use weft_e2e::bench::{proc_stat, proc_status_kib};
use weft_e2e::{serving_namespace, ControlPlane, Netns};

/// The apiserver's address inside the benchmark's namespace (a documentation address).
pub(crate) const SERVER: &str = "2001:db8:ffff::2";
/// The design's CRD, when the tree has it (crates/api/crds/).
const WEFT_ADDRESS_GROUPS: &str = "weftaddressgroups.weft.dev.json";

/// A control plane in a namespace of its own. Field order is drop order.
pub(crate) struct Site {
    pub(crate) cp: ControlPlane,
    pub(crate) ns: Netns,
}

impl Site {
    /// With `sources` (addresses) beside the apiserver's.
    pub(crate) fn start(sources: &[String]) -> Site {
        let addrs: Vec<String> = std::iter::once(format!("{SERVER}/64"))
            .chain(sources.iter().map(|a| format!("{a}/128")))
            .collect();
        let ns = serving_namespace("pw", &addrs.iter().map(String::as_str).collect::<Vec<_>>());
        let cp = ControlPlane::start(&ns, SERVER.parse::<IpAddr>().unwrap());
        Site { cp, ns }
    }

    /// kube-apiserver's PID, from the control plane's own record (etcd's, then the
    /// apiserver's).
    pub(crate) fn apiserver_pid(&self) -> u32 {
        self.server_pids()[1]
    }

    pub(crate) fn etcd_pid(&self) -> u32 {
        self.server_pids()[0]
    }

    fn server_pids(&self) -> Vec<u32> {
        let text = std::fs::read_to_string(self.cp.dir().join("pids")).unwrap();
        text.lines().filter_map(|l| l.parse().ok()).collect()
    }

    /// Installs the resource the benchmark writes and waits until it is served: the
    /// design's `WeftAddressGroup` CRD when crates/api/crds/ holds it (with weft's other
    /// CRDs), else [`bench_crd`], an equivalent test CRD. Returns it and which it is.
    pub(crate) fn install_crd(&self) -> (Resource, String) {
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/api/crds");
        let weft = crds.join(WEFT_ADDRESS_GROUPS);
        let (crd, source) = if weft.is_file() {
            self.cp.install_weft_crds();
            let text = std::fs::read_to_string(&weft).unwrap();
            (
                serde_json::from_str::<Value>(&text).unwrap(),
                format!("crates/api/crds/{WEFT_ADDRESS_GROUPS} (the design's CRD)"),
            )
        } else {
            let crd = bench_crd();
            self.cp
                .kubectl_input_ok(&["apply", "-f", "-"], &crd.to_string());
            (
                crd,
                "benchgroups.bench.weft.dev (a test CRD shaped like the design's WeftAddressGroup; \
                 crates/api/crds/ had none)"
                    .to_owned(),
            )
        };
        let name = crd["metadata"]["name"].as_str().unwrap().to_owned();
        self.cp.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &format!("crd/{name}"),
        ]);
        (resource_of(&crd), source)
    }
}

/// The served version, kind and plural of a CRD.
fn resource_of(crd: &Value) -> Resource {
    let spec = &crd["spec"];
    let version = spec["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["served"] == true))
        .and_then(|v| v["name"].as_str())
        .expect("a served version");
    let text = |v: &Value| v.as_str().unwrap().to_owned();
    Resource {
        group: text(&spec["group"]),
        version: version.to_owned(),
        kind: text(&spec["names"]["kind"]),
        plural: text(&spec["names"]["plural"]),
    }
}

/// A cluster-scoped CRD with the design's `WeftAddressGroup` schema (§1.2): structural,
/// so the apiserver prunes and validates every write as it would the real one.
fn bench_crd() -> Value {
    let string = json!({"type": "string"});
    let port = json!({"type": "object", "properties": {
        "name": string, "protocol": string, "port": {"type": "integer"}}});
    let member = json!({"type": "object", "properties": {
        "ips": {"type": "array", "items": string},
        "ports": {"type": "array", "items": port}}});
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "benchgroups.bench.weft.dev"},
        "spec": {
            "group": "bench.weft.dev",
            "scope": "Cluster",
            "names": {"kind": "BenchGroup", "plural": "benchgroups",
                      "singular": "benchgroup", "listKind": "BenchGroupList"},
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "group": string, "selector": string,
                        "members": {"type": "array", "items": member}}}}}},
            }],
        },
    })
}

/// CPU seconds and resident memory of one process.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcSample {
    pub(crate) cpu: f64,
    pub(crate) rss_kib: u64,
}

/// One server's share of a row: CPU seconds over the window and per second idle (with
/// the watches open, no writes), and its RSS idle and after the window.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cost {
    pub(crate) cpu: f64,
    pub(crate) idle_cpu_rate: f64,
    pub(crate) rss_idle_kib: u64,
    pub(crate) rss_kib: u64,
}

pub(crate) fn sample(pid: u32) -> ProcSample {
    ProcSample {
        cpu: proc_stat(pid).map_or(0.0, |s| s.cpu_seconds()),
        rss_kib: proc_status_kib(pid, "VmRSS"),
    }
}

/// Moves the calling thread into `ns`'s network namespace: threads it creates later
/// (the async runtime's workers) are born there and reach the apiserver directly.
pub(crate) fn enter(ns: &Netns) {
    let file = std::fs::File::open(ns.path()).expect("open the namespace");
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// Raises this process's open-file limit (soft and hard) to at least `files`, before the
/// control plane starts: its processes inherit it, and every watch holds a socket on
/// both sides.
pub(crate) fn raise_open_files(files: u64) -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource as Limit};
    let (soft, hard) = getrlimit(Limit::RLIMIT_NOFILE).expect("getrlimit");
    let want = files.max(soft);
    if want > soft {
        setrlimit(Limit::RLIMIT_NOFILE, want, want.max(hard)).expect("setrlimit RLIMIT_NOFILE");
    }
    want
}
