//! Scratch space and clean-up shared by the tests, the demo and the benchmarks.

use crate::unique_name;
use nix::sys::signal::{SigSet, Signal};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

/// Ctrl-C, SIGTERM and SIGHUP set a flag ([`stop_requested`]) instead of killing the
/// program, so it can remove what it built. Call it before any other thread exists:
/// the signals are blocked, every thread inherits the mask, and one thread takes them
/// with sigwait; children get std's fresh mask.
pub fn watch_stop_signals(program: &str) {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    if let Err(e) = set.thread_block() {
        eprintln!("{program}: cannot block the stop signals: {e}");
        return;
    }
    let program = program.to_owned();
    std::thread::spawn(move || {
        if let Ok(signal) = set.wait() {
            eprintln!("\n{program}: {signal}: stopping and cleaning up");
            STOP.store(true, Ordering::SeqCst);
        }
    });
}

/// Whether a stop signal arrived (see [`watch_stop_signals`]).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// A private (0700) directory under TMPDIR named `weft-tmp-<unique name>`, removed on
/// drop. Private because weftd refuses a socket directory that others can write.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates it; `tag` ends the name, for telling directories apart.
    pub fn new(tag: &str) -> TempDir {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("weft-tmp-{}", unique_name(tag)));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file's content, trimmed, or `unknown` (for the machine facts of a report).
pub fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The last `lines` lines of a log file (empty if it cannot be read), for failure
/// messages.
pub fn log_tail(path: impl AsRef<std::path::Path>, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Every namespace whose name carries this process's prefix (see [`unique_name`]): kills
/// the processes inside (by pid), then deletes it.
pub fn remove_own_namespaces() {
    let prefix = format!("w{}x", std::process::id() % 100_000);
    let Ok(list) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if !name.starts_with(&prefix) {
            continue;
        }
        if let Ok(pids) = Command::new("ip").args(["netns", "pids", name]).output() {
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", name]).status();
    }
}

/// Release builds abort on panic, so no guard's Drop runs: this hook removes the
/// process's namespaces (and what runs in them) before the abort.
pub fn install_namespace_cleanup_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        remove_own_namespaces();
    }));
}
