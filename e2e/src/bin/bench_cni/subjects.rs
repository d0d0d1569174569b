//! The plugins under test: weft with its weftd, and the bridge + host-local anchors,
//! each in a node namespace of its own with its own pods.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use weft_e2e::bench::{median, ms};
use weft_e2e::{reference_plugins_dir, unique_name, Netns, Node, NodeOptions, Plugin, TempDir};

/// VERSION calls per plugin for the process floor.
const FLOOR_CALLS: usize = 50;

/// Where a plugin runs, and what must be owned (and dropped) with it.
#[derive(Debug)]
pub(crate) enum Site {
    /// weftd's node; dropping it kills weftd and deletes the namespace.
    Weft(Node),
    /// A plain node namespace (the bridge dies with it) and host-local's dataDir.
    Bridge { _node: Netns, _data_dir: TempDir },
}

/// One plugin with its node, its config, and its own pod namespaces (reused every
/// round: every set DELs all its pods, and weft's host veths are gone before the next).
#[derive(Debug)]
pub(crate) struct Subject {
    pub(crate) label: String,
    pub(crate) version: String,
    plugin: Plugin,
    config: Value,
    pub(crate) pods: Vec<Netns>,
    pub(crate) site: Site,
}

impl Subject {
    pub(crate) fn weft(label: &str, binary: PathBuf, pods: usize) -> Subject {
        let node = Node::start(NodeOptions {
            cooldown_seconds: 0,
            ..NodeOptions::default()
        });
        let config = node.plugin_config("1.1.0");
        let version = format!("weft {} ({})", env!("CARGO_PKG_VERSION"), binary.display());
        let cni_path = binary.parent().unwrap().display().to_string();
        let plugin = Plugin::with_binary(binary, &node.netns).with_cni_path(cni_path);
        Subject::new(label, version, plugin, config, Site::Weft(node), pods)
    }

    /// Like [`Subject::weft`], its node running the weftd at `weftd` (`WEFTD` names it
    /// while the node starts; nothing else runs yet).
    pub(crate) fn weft_with_weftd(
        label: &str,
        binary: PathBuf,
        weftd: &std::path::Path,
        pods: usize,
    ) -> Subject {
        let previous = std::env::var_os("WEFTD");
        std::env::set_var("WEFTD", weftd);
        let mut subject = Subject::weft(label, binary, pods);
        match previous {
            Some(previous) => std::env::set_var("WEFTD", previous),
            None => std::env::remove_var("WEFTD"),
        }
        subject.version = format!("{} with weftd {}", subject.version, weftd.display());
        subject
    }

    pub(crate) fn debian_bridge(pods: usize) -> Subject {
        let dir = PathBuf::from("/usr/lib/cni");
        let version = format!(
            "bridge + host-local, Debian containernetworking-plugins {} ({})",
            debian_package_version(),
            dir.display()
        );
        Subject::bridge("bridge", version, &dir, pods)
    }

    pub(crate) fn go_bridge(pods: usize) -> Option<Subject> {
        let dir = reference_plugins_dir();
        if !dir.join("bridge").exists() || !dir.join("host-local").exists() {
            return None;
        }
        let version = format!(
            "bridge + host-local, {} ({})",
            about(&dir.join("bridge")),
            dir.display()
        );
        Some(Subject::bridge("bridge-go", version, &dir, pods))
    }

    /// bridge + host-local, dual-stack, in a node namespace of its own.
    fn bridge(label: &str, version: String, dir: &Path, pods: usize) -> Subject {
        let node = Netns::new("bn");
        let data_dir = TempDir::new("hl");
        let config = json!({
            "cniVersion": "1.0.0",
            "name": format!("bench-{}", node.name()),
            "type": "bridge",
            "bridge": unique_name("br"),
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.254.0.0/16"}], [{"subnet": "2001:db8:2000::/64"}]],
                "dataDir": data_dir.path().display().to_string(),
            },
        });
        let plugin =
            Plugin::with_binary(dir.join("bridge"), &node).with_cni_path(dir.display().to_string());
        let site = Site::Bridge {
            _node: node,
            _data_dir: data_dir,
        };
        Subject::new(label, version, plugin, config, site, pods)
    }

    fn new(
        label: &str,
        version: String,
        plugin: Plugin,
        config: Value,
        site: Site,
        pods: usize,
    ) -> Subject {
        Subject {
            label: label.to_owned(),
            version,
            plugin,
            config,
            pods: (0..pods).map(|_| Netns::new("b")).collect(),
            site,
        }
    }

    /// One call as a runtime makes it (spawned inside the node's namespace); the
    /// wall-clock time from spawn to exit, and the result.
    pub(crate) fn call(
        &self,
        command: &str,
        container_id: &str,
        pod: &Netns,
    ) -> (Duration, String) {
        let out = self.plugin.call(
            command,
            container_id,
            Some(&pod.path()),
            "eth0",
            &self.config,
        );
        assert!(
            out.ok(),
            "{} {command} {container_id} failed ({:?}): {} {}",
            self.label,
            out.status,
            out.stdout,
            out.stderr
        );
        (out.elapsed, out.stdout)
    }

    /// What being a process costs this plugin: the median of VERSION calls, which start,
    /// parse the config, answer and exit, touching no network state.
    pub(crate) fn process_floor(&self) -> String {
        let times: Vec<Duration> = (0..FLOOR_CALLS)
            .map(|_| self.call("VERSION", "floor", &self.pods[0]).0)
            .collect();
        format!(
            "{} process floor (VERSION, median of {FLOOR_CALLS}): {}",
            self.label,
            ms(median(times).unwrap_or_default())
        )
    }

    /// Untimed ADD + DEL of a few pods: binaries in the page cache, the bridge and its
    /// gateway addresses created, weftd's first requests served. Also checks that every
    /// plugin really wires both families.
    pub(crate) fn warm_up(&self, pods: usize) {
        eprintln!("bench_cni: warming up {}", self.label);
        let pods = pods.min(self.pods.len());
        for (i, pod) in self.pods.iter().take(pods).enumerate() {
            let (_, result) = self.call("ADD", &format!("warm-{i}"), pod);
            assert_dual_stack(&self.label, &result);
        }
        for (i, pod) in self.pods.iter().take(pods).enumerate() {
            self.call("DEL", &format!("warm-{i}"), pod);
        }
        self.settle();
    }

    /// Waits until nothing of the last DELs is still being torn down; returns how long
    /// that took. weftd removes host veths in the background after DEL returns; the next
    /// set (of any plugin) must not compete with that work. bridge's DEL is synchronous.
    pub(crate) fn settle(&self) -> Duration {
        let started = Instant::now();
        let Site::Weft(node) = &self.site else {
            return Duration::ZERO;
        };
        let deadline = started + Duration::from_secs(60);
        loop {
            let left = node.weft_veths();
            if left.is_empty() {
                return started.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "weftd did not remove {} host veths within 60 s",
                left.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn assert_dual_stack(label: &str, result: &str) {
    let result: Value = serde_json::from_str(result).unwrap();
    let addresses: Vec<&str> = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .collect();
    assert!(
        addresses.iter().any(|a| a.contains(':')) && addresses.iter().any(|a| a.contains('.')),
        "{label} did not wire both families: {result}"
    );
}

/// `CNI bridge plugin v1.9.1`: what a reference plugin prints when run without a command.
fn about(plugin: &Path) -> String {
    let out = Command::new(plugin).env_clear().output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    text.lines()
        .next()
        .unwrap_or("version unknown")
        .trim()
        .to_owned()
}

fn debian_package_version() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "containernetworking-plugins"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|| "(version unknown)".into())
}
