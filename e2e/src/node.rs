//! A namespace node running weftd standalone. `Node::start` gives it a stub uplink veth
//! that only sets the MTU and the underlay family; `Node::start_in` takes a namespace
//! whose uplink someone else (the multi-node topology) has already wired to a network.

use crate::netns::spawn_logged;
use crate::plugin::{Plugin, PluginOutput};
use crate::{binary, log_tail, Metrics, Netns};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The node's own IPv4 address (on its uplink), what pods ping as "the host".
pub const HOST_V4: &str = "198.51.100.1";
/// The node's own IPv6 address (on its uplink).
pub const HOST_V6: &str = "2001:db8:ffff::1";

/// How a test node is set up.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// `--mode`.
    pub mode: &'static str,
    /// `--ipv6-prefix`, in whatever text form the test wants to exercise.
    pub ipv6_prefix: Option<String>,
    /// `--ipv4-subnet`.
    pub ipv4_subnet: Option<String>,
    /// `--cooldown-seconds`.
    pub cooldown_seconds: u64,
    /// MTU of the uplink.
    pub uplink_mtu: u32,
    /// Give the uplink only an IPv6 address (an IPv6 underlay).
    pub ipv6_underlay: bool,
    /// `--node-name`; `None` uses the namespace's name.
    pub node_name: Option<String>,
    /// `--kubeconfig`: Kubernetes mode, where the WeftNetwork sets the mode and the
    /// apiserver the ranges (weftd refuses `--mode`, `--ipv6-prefix`, `--ipv4-subnet`).
    pub kubeconfig: Option<PathBuf>,
    /// More weftd arguments, after the standard ones (`--peers FILE`, ...).
    pub extra_args: Vec<String>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            mode: "dual",
            ipv6_prefix: Some("2001:db8:1000:1::/80".into()),
            ipv4_subnet: Some("10.255.1.0/24".into()),
            cooldown_seconds: 30,
            uplink_mtu: 1500,
            ipv6_underlay: false,
            node_name: None,
            kubeconfig: None,
            extra_args: Vec::new(),
        }
    }
}

/// A running node. Dropping it kills weftd, removes its files and the namespace (and so
/// every veth in it, and their pod ends).
#[derive(Debug)]
pub struct Node {
    child: Option<Child>,
    dir: PathBuf,
    network_name: String,
    // Boxed: a Node sits beside small variants in callers' enums (the CNI benchmark's).
    options: Box<NodeOptions>,
    plugin: Plugin,
    /// The node's namespace.
    pub netns: Netns,
}

impl Node {
    /// Builds the namespace with a stub uplink (`uplink_mtu`, `ipv6_underlay`) and starts
    /// weftd; panics with weftd's log if it does not come up.
    pub fn start(options: NodeOptions) -> Node {
        let netns = Netns::new("n");
        let mut cidrs = vec![format!("{HOST_V6}/64")];
        if !options.ipv6_underlay {
            cidrs.insert(0, format!("{HOST_V4}/24"));
        }
        netns.add_stub_uplink(options.uplink_mtu, &cidrs);
        Node::start_in(netns, options)
    }

    /// Starts weftd in `netns`, whose interface `uplink` is already wired and addressed
    /// (`uplink_mtu` and `ipv6_underlay` are not used); panics with weftd's log if it
    /// does not come up.
    pub fn start_in(netns: Netns, options: NodeOptions) -> Node {
        let mut node = Node::spawn_in(netns, options);
        node.wait_ready();
        node
    }

    /// Like [`Node::start_in`], but returns as soon as weftd is spawned: for timing its
    /// start-up, and for a weftd that may fail to come up ([`Node::wait_metrics`] reports
    /// that instead of panicking).
    pub fn spawn_in(netns: Netns, options: NodeOptions) -> Node {
        let dir = state_base().join(format!("weft-e2e-{}", netns.name()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("conf")).unwrap();
        set_mode(&dir, 0o700);
        let network_name = format!("weft-{}", netns.name());
        let plugin = Plugin::new(&netns);
        let mut node = Node {
            child: None,
            dir,
            network_name,
            options: Box::new(options),
            plugin,
            netns,
        };
        node.write_conflist("1.1.0", &[]);
        node.spawn_weftd();
        node
    }

    fn launch(&mut self) {
        self.spawn_weftd();
        self.wait_ready();
    }

    fn spawn_weftd(&mut self) {
        let mut args: Vec<String> = vec![
            "--node-name".into(),
            self.name().into(),
            "--state-dir".into(),
            self.dir.join("state").display().to_string(),
            "--socket".into(),
            self.socket().display().to_string(),
            "--metrics-addr".into(),
            "[::]:9641".into(),
            "--underlay-interface".into(),
            "uplink".into(),
            "--cooldown-seconds".into(),
            self.options.cooldown_seconds.to_string(),
        ];
        match &self.options.kubeconfig {
            Some(kubeconfig) => {
                args.extend(["--kubeconfig".into(), kubeconfig.display().to_string()])
            }
            None => args.extend(["--mode".into(), self.options.mode.into()]),
        }
        if let Some(p) = &self.options.ipv6_prefix {
            args.extend(["--ipv6-prefix".into(), p.clone()]);
        }
        if let Some(s) = &self.options.ipv4_subnet {
            args.extend(["--ipv4-subnet".into(), s.clone()]);
        }
        args.extend(self.options.extra_args.iter().cloned());
        self.child = Some(spawn_logged(
            self.netns.name(),
            &binary("weftd"),
            &args,
            &self.log_path(),
        ));
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.socket().exists() && self.http_get("/readyz").0 == 200 {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("weftd exited with {status}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("weftd did not become ready:\n{}", self.log());
    }

    /// The node name weftd runs with.
    pub fn name(&self) -> &str {
        self.options
            .node_name
            .as_deref()
            .unwrap_or(self.netns.name())
    }

    /// How this node was started.
    pub fn options(&self) -> &NodeOptions {
        &self.options
    }

    /// The options the next [`Node::restart`] uses (same namespace, same state).
    pub fn options_mut(&mut self) -> &mut NodeOptions {
        &mut self.options
    }

    /// weftd's combined output so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("weftd.log")
    }

    /// weftd's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("weftd.sock")
    }

    /// weftd's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The network name in this node's conflist (unique per node).
    pub fn network_name(&self) -> &str {
        &self.network_name
    }

    /// The directory holding this node's conflist, for `NETCONFPATH`.
    pub fn conf_dir(&self) -> PathBuf {
        self.dir.join("conf")
    }

    /// The plugin config (one entry of a conflist, flattened as runtimes do).
    pub fn plugin_config(&self, cni_version: &str) -> Value {
        serde_json::json!({"cniVersion": cni_version, "name": self.network_name, "type": "weft",
            "socket": self.socket().display().to_string()})
    }

    /// Writes `<conf_dir>/weft.conflist`: weft first, then `chained` plugin entries.
    pub fn write_conflist(&self, cni_version: &str, chained: &[Value]) {
        let mut plugins = vec![
            serde_json::json!({"type": "weft", "socket": self.socket().display().to_string()}),
        ];
        plugins.extend_from_slice(chained);
        let list = serde_json::json!({"cniVersion": cni_version, "name": self.network_name, "plugins": plugins});
        fs::write(
            self.conf_dir().join("weft.conflist"),
            serde_json::to_vec_pretty(&list).unwrap(),
        )
        .unwrap();
    }

    /// Kills weftd with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// weftd's process ID, for killing it from another thread while plugins run.
    pub fn weftd_pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Stops weftd with SIGTERM and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts weftd again on the same state.
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// The plugin, run inside this node as a runtime would.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// ADD `container_id` into `pod` as `eth0` with the 1.1.0 config; the result.
    pub fn add(&self, container_id: &str, pod: &Netns) -> PluginOutput {
        self.add_with_env(container_id, pod, &[])
    }

    /// ADD as [`Node::add`] with `CNI_ARGS` set to `cni_args` (as kubelet's runtime passes
    /// `K8S_POD_NAMESPACE=..;K8S_POD_NAME=..;K8S_POD_UID=..`).
    pub fn add_with_args(&self, container_id: &str, pod: &Netns, cni_args: &str) -> PluginOutput {
        self.add_with_env(container_id, pod, &[("CNI_ARGS", cni_args)])
    }

    fn add_with_env(&self, container_id: &str, pod: &Netns, more: &[(&str, &str)]) -> PluginOutput {
        self.plugin.call_with_env(
            "ADD",
            container_id,
            Some(&pod.path()),
            "eth0",
            &self.plugin_config("1.1.0"),
            more,
        )
    }

    /// DEL.
    pub fn del(&self, container_id: &str, pod: Option<&Netns>) -> PluginOutput {
        self.plugin.call(
            "DEL",
            container_id,
            pod.map(|p| p.path()).as_deref(),
            "eth0",
            &self.plugin_config("1.1.0"),
        )
    }

    /// CHECK with `prev_result`.
    pub fn check(&self, container_id: &str, pod: &Netns, prev_result: &Value) -> PluginOutput {
        let mut config = self.plugin_config("1.1.0");
        config["prevResult"] = prev_result.clone();
        self.plugin
            .call("CHECK", container_id, Some(&pod.path()), "eth0", &config)
    }

    /// An HTTP GET on weftd's metrics listener, from inside the node: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        self.netns.http_get("[::1]:9641", path)
    }

    /// The value of one metric sample (exact name with labels), if exported.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        self.metrics().and_then(|m| m.get(sample))
    }

    /// One scrape of weftd's /metrics; `None` while it does not answer.
    pub fn metrics(&self) -> Option<Metrics> {
        match self.http_get("/metrics") {
            (200, body) => Some(Metrics(body)),
            _ => None,
        }
    }

    /// Scrapes /metrics every `poll` until `done` holds (the instant that scrape returned,
    /// and the scrape); an error with the last scrape's `shown` samples and weftd's log
    /// tail when weftd exits or `deadline` passes first.
    pub fn wait_metrics(
        &mut self,
        deadline: Instant,
        poll: Duration,
        shown: &[&str],
        done: impl Fn(&Metrics) -> bool,
    ) -> Result<(Instant, Metrics), String> {
        let mut last = Metrics::default();
        loop {
            let scraped = self.metrics();
            let now = Instant::now();
            if let Some(m) = scraped {
                if done(&m) {
                    return Ok((now, m));
                }
                last = m;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("weftd exited ({status}):\n{}", self.log_tail()));
            }
            if now > deadline {
                let samples: Vec<String> = shown
                    .iter()
                    .map(|s| format!("{s} {:?}", last.get(s)))
                    .collect();
                return Err(format!(
                    "timed out; last {}; weftd's log ends:\n{}",
                    samples.join(", "),
                    self.log_tail()
                ));
            }
            std::thread::sleep(poll);
        }
    }

    /// The last lines of weftd's log.
    fn log_tail(&self) -> String {
        log_tail(self.log_path(), 20)
    }

    /// Lines of weftd's log at WARN or ERROR.
    pub fn complaints(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .map(str::to_owned)
            .collect()
    }

    /// Host veths of weft in the node.
    pub fn weft_veths(&self) -> Vec<String> {
        self.netns
            .ip(&["-o", "link", "show", "type", "veth"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned())
            .filter(|n| n.starts_with("weft"))
            .collect()
    }

    /// Files in the state directory's `allocations/`.
    pub fn allocation_records(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.state_dir().join("allocations"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// Where nodes keep weftd's socket and state: tmpfs, as on a real node (/run), so tests
/// and benchmarks pay what production pays. /run is not tmpfs on every test machine;
/// /dev/shm is; `TMPDIR` overrides.
fn state_base() -> PathBuf {
    if std::env::var_os("TMPDIR").is_none() && Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        let _ = fs::remove_dir_all(&self.dir);
        // libcni (cnitool) caches results under the network name.
        if let Ok(entries) = fs::read_dir("/var/lib/cni/results") {
            for e in entries.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{}-", self.network_name))
                {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
}
