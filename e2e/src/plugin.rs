//! Invoking a CNI plugin exactly as a runtime does: a fresh process with only the CNI
//! environment, config on stdin, result or error on stdout. The process is started
//! from inside the node's namespace (the thread enters it around the spawn, so the
//! child inherits it without `ip netns exec`'s own cost, which benchmarks would pay),
//! and timed from the spawn until the process has exited.

use crate::binary;
use crate::Netns;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A plugin binary bound to a node namespace.
#[derive(Debug, Clone)]
pub struct Plugin {
    binary: PathBuf,
    node_netns: PathBuf,
    cni_path: String,
}

/// What the plugin did.
#[derive(Debug, Clone)]
pub struct PluginOutput {
    /// Exit status code.
    pub status: Option<i32>,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
    /// Wall-clock time from spawning the process until it had exited.
    pub elapsed: Duration,
}

impl PluginOutput {
    /// Exit 0.
    pub fn ok(&self) -> bool {
        self.status == Some(0)
    }

    /// stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// The CNI error code, when the plugin failed with an error object.
    pub fn error_code(&self) -> Option<u64> {
        serde_json::from_str::<Value>(&self.stdout)
            .ok()?
            .get("code")?
            .as_u64()
    }

    /// The result JSON; panics with everything the plugin said otherwise.
    pub fn expect_ok(&self) -> Value {
        assert!(self.ok(), "plugin failed: {self:?}");
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }
}

impl Plugin {
    /// weft, run in `node`.
    pub fn new(node: &Netns) -> Plugin {
        Plugin::with_binary(binary("weft"), node)
    }

    /// Any plugin binary, run in `node`.
    pub fn with_binary(binary: PathBuf, node: &Netns) -> Plugin {
        Plugin {
            binary,
            node_netns: PathBuf::from(node.path()),
            cni_path: "/opt/cni/bin".into(),
        }
    }

    /// The same plugin with another `CNI_PATH` (where a chained or delegated plugin,
    /// such as bridge's host-local, is found).
    pub fn with_cni_path(mut self, cni_path: impl Into<String>) -> Plugin {
        self.cni_path = cni_path.into();
        self
    }

    /// Runs the binary with exactly `env` and `stdin`.
    pub fn raw(&self, env: &[(&str, &str)], stdin: &[u8]) -> PluginOutput {
        run_in(
            &self.node_netns,
            Command::new(&self.binary)
                .env_clear()
                .envs(env.iter().copied()),
            stdin,
        )
    }

    /// A call with the usual variables.
    pub fn call(
        &self,
        command: &str,
        container_id: &str,
        netns: Option<&str>,
        ifname: &str,
        config: &Value,
    ) -> PluginOutput {
        self.call_with_env(command, container_id, netns, ifname, config, &[])
    }

    /// [`Plugin::call`] with more variables after the usual ones (`CNI_ARGS`, say).
    pub fn call_with_env(
        &self,
        command: &str,
        container_id: &str,
        netns: Option<&str>,
        ifname: &str,
        config: &Value,
        more: &[(&str, &str)],
    ) -> PluginOutput {
        let mut env = vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", container_id),
            ("CNI_IFNAME", ifname),
            ("CNI_PATH", &self.cni_path),
        ];
        if let Some(ns) = netns {
            env.push(("CNI_NETNS", ns));
        }
        env.extend_from_slice(more);
        self.raw(&env, config.to_string().as_bytes())
    }
}

/// Input up to this size fits a pipe's buffer (POSIX guarantees PIPE_BUF, 4096 on Linux,
/// and a pipe holds 64 KiB by default): written at once, it never blocks.
const FITS_A_PIPE: usize = 4096;

/// The pod's address of one family (IPv6 when `v6`) from an ADD result, without its
/// prefix length; panics when the result has none.
pub fn pod_address(result: &Value, v6: bool) -> String {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .find(|a| a.contains(':') == v6)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| {
            panic!(
                "no {} address in {result}",
                if v6 { "IPv6" } else { "IPv4" }
            )
        })
        .to_owned()
}

/// Spawns `command` from inside the namespace at `netns`, feeds `stdin`, collects output
/// and the time from spawn to exit.
pub fn run_in(netns: &Path, command: &mut Command, stdin: &[u8]) -> PluginOutput {
    let ns = weft_netlink::Netns::open(netns).unwrap();
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (started, mut child) = {
        let _inside = ns.enter().unwrap();
        (Instant::now(), command.spawn().unwrap())
    };
    let mut input = child.stdin.take().unwrap();
    // A config is far smaller than a pipe's buffer: written here, no thread is started
    // inside the timed span; a larger input (the tests' huge ones) needs a writer that
    // may block while the plugin reads. Dropping the handle closes stdin.
    let writer = if stdin.len() <= FITS_A_PIPE {
        let _ = input.write_all(stdin);
        drop(input);
        None
    } else {
        let stdin = stdin.to_vec();
        Some(std::thread::spawn(move || {
            let _ = input.write_all(&stdin);
        }))
    };
    let out = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    PluginOutput {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed,
    }
}
