//! Where a controller runs: a control plane in a namespace of its own, the controller
//! process, and what a panic must remove (release builds abort, so no Drop runs).

use crate::{Subject, IPV4_NETWORK, IPV4_SUBNET_LENGTH, IPV6_PREFIX_LENGTH, IPV6_RANGE, SERVER};
use serde_json::json;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;
use weft_e2e::bench::proc_stat;
use weft_e2e::{
    binary, log_tail, serving_namespace, spawn_logged, stop_requested, ControlPlane, KubeBinaries,
    Netns,
};

/// Ctrl-C, SIGTERM and SIGHUP (`watch_stop_signals`) end the waits with an error, and
/// the guards remove everything.
pub(crate) fn stopped() -> Result<(), String> {
    if stop_requested() {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

/// What this process created, for the panic hook: release builds abort on panic, so no
/// Drop runs. Every guard registers here when it is created; clean-up is idempotent.
#[derive(Debug, Default)]
struct Leftovers {
    /// (pid, start time in ticks): killed only while the same process runs.
    processes: Vec<(u32, u64)>,
    namespaces: Vec<String>,
}

static LEFTOVERS: Mutex<Leftovers> = Mutex::new(Leftovers {
    processes: Vec::new(),
    namespaces: Vec::new(),
});

pub(crate) fn register_process(pid: u32) {
    if let Some(start) = proc_stat(pid).map(|s| s.start_time) {
        LEFTOVERS.lock().unwrap().processes.push((pid, start));
    }
}

pub(crate) fn install_panic_cleanup() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        eprintln!("bench_controller: panicked; removing what it created");
        let left = match LEFTOVERS.lock() {
            Ok(mut l) => std::mem::take(&mut *l),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for (pid, start) in left.processes.into_iter().rev() {
            if proc_stat(pid).is_some_and(|s| s.start_time == start) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        // Control planes (etcd, kube-apiserver) and their directories: what ControlPlane's
        // own sweep does for dead owners, for this process.
        let prefix = format!("weft-cp-{}-", std::process::id());
        for entry in std::fs::read_dir("/dev/shm")
            .into_iter()
            .flatten()
            .flatten()
        {
            if !entry.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let dir = entry.path();
            let pids = std::fs::read_to_string(dir.join("pids")).unwrap_or_default();
            for pid in pids.lines() {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()) {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            std::thread::sleep(Duration::from_millis(200));
            let _ = std::fs::remove_dir_all(&dir);
        }
        for ns in left.namespaces {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }));
}

/// A control plane in a namespace of its own. Field order is drop order.
pub(crate) struct Site {
    pub(crate) cp: ControlPlane,
    pub(crate) ns: Netns,
}

impl Site {
    pub(crate) fn start() -> Site {
        let ns = serving_namespace("bc", &[&format!("{SERVER}/64")]);
        LEFTOVERS
            .lock()
            .unwrap()
            .namespaces
            .push(ns.name().to_owned());
        let cp = ControlPlane::start(&ns, SERVER.parse::<IpAddr>().unwrap());
        Site { cp, ns }
    }

    /// (etcd, kube-apiserver) PIDs, from the control plane's own record.
    pub(crate) fn server_pids(&self) -> (u32, u32) {
        let text = std::fs::read_to_string(self.cp.dir().join("pids")).unwrap();
        let pids: Vec<u32> = text.lines().filter_map(|l| l.parse().ok()).collect();
        (pids[0], pids[1])
    }

    pub(crate) fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        let out = self.cp.kubectl(args);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    pub(crate) fn kubectl_input(&self, args: &[&str], input: &str) -> Result<(), String> {
        let out = self.cp.kubectl_input(args, input);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "kubectl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// weft's CRDs and a WeftNetwork holding the plan.
    pub(crate) fn install_weft(&self) -> Result<(), String> {
        self.cp.install_weft_crds();
        let network = json!({
            "apiVersion": "weft.dev/v1alpha1", "kind": "WeftNetwork",
            "metadata": {"name": "default"},
            "spec": {
                "ipv6Ranges": [{"range": IPV6_RANGE, "prefixLength": IPV6_PREFIX_LENGTH}],
                "ipv4Network": IPV4_NETWORK,
                "ipv4SubnetLength": IPV4_SUBNET_LENGTH,
            },
        });
        self.kubectl_input(&["apply", "-f", "-"], &network.to_string())
    }

    /// Starts the controller under test inside the namespace, logging to the control
    /// plane's directory.
    pub(crate) fn start_controller(&self, subject: Subject, bins: &KubeBinaries) -> Proc {
        let kubeconfig = format!("--kubeconfig={}", self.cp.kubeconfig().display());
        let (program, args): (PathBuf, Vec<String>) = match subject {
            Subject::Weft => (
                binary("weft-controller"),
                vec![
                    kubeconfig,
                    "--network=default".into(),
                    "--metrics-addr=[::1]:9642".into(),
                    "--identity=bench".into(),
                    "--log-level=info".into(),
                ],
            ),
            Subject::Kcm(qps) => {
                let mut args = vec![
                    kubeconfig,
                    "--controllers=node-ipam-controller".into(),
                    "--allocate-node-cidrs=true".into(),
                    format!("--cluster-cidr={IPV4_NETWORK},{IPV6_RANGE}"),
                    format!("--node-cidr-mask-size-ipv4={IPV4_SUBNET_LENGTH}"),
                    format!("--node-cidr-mask-size-ipv6={IPV6_PREFIX_LENGTH}"),
                    "--leader-elect=true".into(),
                    "--use-service-account-credentials=false".into(),
                    "--v=1".into(),
                ];
                if let Some(q) = qps {
                    args.push(format!("--kube-api-qps={q}"));
                    args.push(format!("--kube-api-burst={q}"));
                }
                (bins.kube_controller_manager.clone().unwrap(), args)
            }
        };
        let log = self.cp.dir().join("controller.log");
        Proc::spawn(&self.ns, &program, &args, &log)
    }
}

/// A process started with `ip netns exec` (which execs it: the PID is the program's),
/// killed on drop.
pub(crate) struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    pub(crate) fn spawn(ns: &Netns, program: &Path, args: &[String], log: &Path) -> Proc {
        let child = spawn_logged(ns.name(), program, args, log);
        register_process(child.id());
        Proc {
            child,
            log: log.to_owned(),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn exited(&mut self) -> Option<String> {
        self.child
            .try_wait()
            .ok()
            .flatten()
            .map(|status| format!("the controller exited ({status})\n{}", self.log_tail(30)))
    }

    /// Warning and error lines of the log: counts and the first of each. weft logs
    /// ` WARN `/` ERROR `, klog starts its lines with `W`/`E` and the date.
    pub(crate) fn log_summary(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let klog = |l: &str, c: char| {
            l.starts_with(c) && l.as_bytes().get(1).is_some_and(u8::is_ascii_digit)
        };
        [("warning", " WARN ", 'W'), ("error", " ERROR ", 'E')]
            .into_iter()
            .map(|(what, tag, letter)| {
                let lines: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains(tag) || klog(l, letter))
                    .collect();
                match lines.first() {
                    None => format!("0 {what} lines in the log"),
                    Some(first) => format!(
                        "{} {what} lines in the log, the first: `{}`",
                        lines.len(),
                        first.chars().take(240).collect::<String>()
                    ),
                }
            })
            .collect()
    }

    pub(crate) fn log_tail(&self, lines: usize) -> String {
        format!(
            "--- {} (tail) ---\n{}",
            self.log.display(),
            log_tail(&self.log, lines)
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
