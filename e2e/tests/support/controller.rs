//! weft-controller in the e2e tests: a replica as a process ([`Controller`]), and the
//! RBAC it runs with ([`rbac`]: exactly the chart's rules, charts/weft/templates/rbac.yaml,
//! whose side e2e/tests/chart.rs checks).

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU16, Ordering};
use weft_e2e::{binary, log_tail, spawn_logged, Netns};

/// A weft-controller process, killed on drop.
pub struct Controller {
    pub child: Option<Child>,
    pub log: PathBuf,
    /// Its /metrics address, in its namespace.
    pub metrics: String,
}

impl Controller {
    /// Starts a replica in `netns` with `kubeconfig` and `args`, logging into `dir`.
    pub fn start(
        netns: &Netns,
        dir: &Path,
        identity: &str,
        kubeconfig: &Path,
        args: &[&str],
    ) -> Controller {
        // Each control plane has a namespace of its own; distinct ports keep the logs apart.
        static PORT: AtomicU16 = AtomicU16::new(19642);
        let port = PORT.fetch_add(1, Ordering::Relaxed);
        let metrics = format!("[::1]:{port}");
        let log = dir.join(format!("controller-{identity}-{port}.log"));
        let flags = [
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--metrics-addr={metrics}"),
            format!("--identity={identity}"),
        ];
        let all = flags.iter().map(String::as_str).chain(args.iter().copied());
        let child = spawn_logged(netns.name(), &binary("weft-controller"), all, &log);
        Controller {
            child: Some(child),
            log,
            metrics,
        }
    }

    /// SIGKILL: no chance to hand the Lease back.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        format!("{}:\n{}", self.log.display(), log_tail(&self.log, lines))
    }

    /// The whole log.
    #[allow(dead_code)] // not every test file reads it
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The controller's ClusterRole and Lease Role, bound to `user`.
pub fn rbac(user: &str) -> Value {
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| json!({"apiGroups": groups, "resources": resources, "verbs": verbs});
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "weft-controller"},
         "rules": [
            rule(&[""], &["nodes"], &["get", "list", "watch", "patch"]),
            rule(&["weft.dev"], &["weftnetworks"], &["get", "list", "watch"]),
            rule(&["weft.dev"], &["weftnetworks/status"], &["patch"]),
            rule(&["weft.dev"], &["weftnodes"], &["get", "list", "watch", "create", "patch", "delete"]),
            rule(&["weft.dev"], &["weftnodes/status"], &["patch"]),
            rule(&["weft.dev"], &["weftclaimblocks"], &["get", "list", "watch", "create", "update", "delete"]),
            rule(&[""], &["pods", "namespaces"], &["get", "list", "watch"]),
            rule(&["networking.k8s.io"], &["networkpolicies"], &["get", "list", "watch"]),
            rule(&["weft.dev"], &["weftpolicies", "weftaddressgroups", "weftnodepolicies", "weftpolicyindexes"], &["get", "list", "watch", "create", "patch", "delete"]),
            rule(&["weft.dev"], &["weftpolicies/status"], &["patch"]),
            rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
            rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
            rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "weft-controller"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "weft-controller"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "weft-controller-lease", "namespace": "kube-system"},
         "rules": [rule(&["coordination.k8s.io"], &["leases"], &["get", "create", "update"])]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "weft-controller-lease", "namespace": "kube-system"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "weft-controller-lease"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]},
    ]})
}
