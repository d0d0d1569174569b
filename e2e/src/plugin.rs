//! Invoking a CNI plugin exactly as a runtime does: a fresh process with only the CNI
//! environment, config on stdin, result or error on stdout. The process is started
//! from inside the node's namespace (the thread enters it around the spawn, so the
//! child inherits it without `ip netns exec`'s own cost, which benchmarks would pay).

use crate::binary;
use crate::Netns;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A plugin binary bound to a node namespace.
#[derive(Debug, Clone)]
pub struct Plugin {
    binary: PathBuf,
    node_netns: PathBuf,
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
        }
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
        let mut env = vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", container_id),
            ("CNI_IFNAME", ifname),
            ("CNI_PATH", "/opt/cni/bin"),
        ];
        if let Some(ns) = netns {
            env.push(("CNI_NETNS", ns));
        }
        self.raw(&env, config.to_string().as_bytes())
    }
}

/// Spawns `command` from inside the namespace at `netns`, feeds `stdin`, collects output.
pub fn run_in(netns: &Path, command: &mut Command, stdin: &[u8]) -> PluginOutput {
    let ns = weft_netlink::Netns::open(netns).unwrap();
    let mut child = {
        let _inside = ns.enter().unwrap();
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    PluginOutput {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
