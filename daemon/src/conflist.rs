//! The CNI conflist weftd writes for the container runtime (`--cni-conflist`).
//!
//! A runtime reports its node's network ready as soon as a valid conflist sits in its
//! conf dir, so weftd writes it only once it serves pods (`/readyz` waits for it), and
//! never removes it: not on SIGTERM, not on exit. Without a conflist the runtime cannot
//! even run DEL, and pods stay undeletable (cilium#24009); a weftd restarting keeps its
//! socket's pods served a few seconds later anyway.
//!
//! Each write goes to a temporary file in the same directory (mode 0644, a name the
//! runtimes do not load), is fsynced, then renamed over the conflist, and the directory
//! is fsynced: the runtime sees the old content or the new, never a partial file, and
//! after a power loss the name never points at data that did not reach the disk
//! (delayed allocation can leave a renamed, unsynced file empty). Writes are rare (at
//! start and on repair), so the syncs cost nothing that matters. Identical content is
//! not rewritten. The file is checked again every `--resync-seconds`: a deleted or
//! changed conflist is restored.

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::task::{self, Task};
use serde_json::{json, Value};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::{info, warn};

/// The name of the conflist weftd writes without `--cni-conflist-template`.
pub const DEFAULT_NETWORK_NAME: &str = "weft";
/// Its `cniVersion`: the newest the plugin speaks.
pub const DEFAULT_CNI_VERSION: &str = "1.1.0";
/// The socket the plugin uses when its entry names none (the plugin's own default).
const PLUGIN_DEFAULT_SOCKET: &str = "/run/weft/weftd.sock";
/// The conflist's mode: runtimes and operators read it, only root writes it.
const MODE: u32 = 0o644;
/// How soon a failed write is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The conflist: where it goes and its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflist {
    pub path: PathBuf,
    pub content: Vec<u8>,
}

/// What [`Conflist::install`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    /// The file already held the content.
    Unchanged,
    /// The file was missing or different, and was replaced.
    Written,
}

impl Conflist {
    /// The conflist the flags describe: `--cni-conflist PATH` with the bytes of
    /// `--cni-conflist-template FILE`, or a conflist of weft alone on `socket`.
    /// Errors name the flag, the path and the problem.
    pub fn from_flags(path: PathBuf, template: Option<&Path>, socket: &Path) -> Result<Conflist> {
        check_path(&path).map_err(|problem| {
            Error::Flag(format!("--cni-conflist: '{}' {problem}", path.display()))
        })?;
        let content = match template {
            None => default_content(socket),
            Some(file) => {
                let refuse = |problem: String| {
                    Error::Flag(format!(
                        "--cni-conflist-template: '{}': {problem}",
                        file.display()
                    ))
                };
                let content = fs::read(file).map_err(|e| refuse(e.to_string()))?;
                check_template(&content, socket).map_err(refuse)?;
                if !asks_for_pod_annotations(&content) {
                    warn!(
                        template = %file.display(),
                        "the template's weft entry lacks the capability {POD_ANNOTATIONS_CAPABILITY}: pods annotated weft.dev/ip-families start with every family (turned off only once the controller sees them)"
                    );
                }
                content
            }
        };
        Ok(Conflist { path, content })
    }

    /// Puts the content at the path unless it is there already.
    pub fn install(&self) -> Result<Install> {
        if fs::read(&self.path).is_ok_and(|current| current == self.content) {
            return Ok(Install::Unchanged);
        }
        self.replace().map_err(|problem| Error::Conflist {
            path: self.path.clone(),
            problem,
        })?;
        Ok(Install::Written)
    }

    /// Temporary file, fsync, rename, fsync of the directory.
    fn replace(&self) -> std::result::Result<(), String> {
        let (dir, name) = match (self.path.parent(), self.path.file_name()) {
            (Some(dir), Some(name)) => (dir, name.to_string_lossy()),
            _ => return Err("not a file path".into()),
        };
        fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        // Dot-prefixed and not ending in .conf, .conflist or .json: no runtime loads it.
        let temporary = dir.join(format!(".{name}.weftd-tmp"));
        let written = write_synced(&temporary, &self.content)
            .map_err(|e| format!("writing {}: {e}", temporary.display()))
            .and_then(|()| {
                fs::rename(&temporary, &self.path)
                    .map_err(|e| format!("renaming {} over it: {e}", temporary.display()))
            });
        if written.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        written?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("syncing {}: {e}", dir.display()))
    }

    /// Installs the conflist now and then every `resync` (a second after a failure),
    /// on a thread of its own. The [`FirstWrite`] resolves after the first successful install;
    /// failures are logged and counted, and the file is never removed.
    pub fn keep(self, resync: Duration, metrics: Metrics) -> Result<(FirstWrite, Task)> {
        let (tell, written) = oneshot::channel();
        let mut first = Some(tell);
        let task = task::thread("cni conflist", move || loop {
            let ok = self.pass(&metrics);
            if ok {
                if let Some(tell) = first.take() {
                    let _ = tell.send(());
                }
            }
            std::thread::sleep(if ok { resync } else { RETRY_AFTER });
        })?;
        Ok((written, task))
    }

    /// One install, logged and counted; false when it failed.
    fn pass(&self, metrics: &Metrics) -> bool {
        match self.install() {
            Ok(Install::Unchanged) => true,
            Ok(Install::Written) => {
                info!(path = %self.path.display(), "CNI conflist written");
                true
            }
            Err(e) => {
                warn!(error = %e, "the CNI conflist is not in place (the runtime sees no network)");
                metrics.error(&e);
                false
            }
        }
    }
}

/// Resolves once the conflist has been written (or found in place) the first time.
pub type FirstWrite = oneshot::Receiver<()>;

/// A conflist path a runtime will read as a conflist, and weftd can replace.
fn check_path(path: &Path) -> std::result::Result<(), String> {
    if !path.is_absolute() {
        return Err("is not an absolute path".into());
    }
    // Runtimes (libcni, containerd's go-cni, CRI-O) parse only `*.conflist` as a list;
    // a `.conf` or `.json` file is read as a single plugin's config and refused.
    if path.extension().is_none_or(|e| e != "conflist") {
        return Err(
            "does not end in .conflist (runtimes read other names as a single plugin's config)"
                .into(),
        );
    }
    if path.is_dir() {
        return Err("is a directory".into());
    }
    Ok(())
}

/// The capability under which containerd and CRI-O pass the plugin the pod's
/// annotations (`runtimeConfig`), where it reads `weft.dev/ip-families`.
const POD_ANNOTATIONS_CAPABILITY: &str = "io.kubernetes.cri.pod-annotations";

/// The conflist of weft alone, talking to `socket`, asking for the pod's annotations.
fn default_content(socket: &Path) -> Vec<u8> {
    let conflist = json!({
        "cniVersion": DEFAULT_CNI_VERSION,
        "name": DEFAULT_NETWORK_NAME,
        "plugins": [{
            "type": "weft",
            "socket": socket.display().to_string(),
            "capabilities": {POD_ANNOTATIONS_CAPABILITY: true},
        }],
    });
    let mut bytes = serde_json::to_vec_pretty(&conflist).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// A template weftd will write: JSON with `cniVersion`, `name` and `plugins`, the first
/// plugin `weft`, talking to weftd's `socket` (the plugin's default when it names none).
fn check_template(content: &[u8], socket: &Path) -> std::result::Result<(), String> {
    let conflist: Value = serde_json::from_slice(content).map_err(|e| format!("not JSON: {e}"))?;
    for key in ["cniVersion", "name"] {
        match conflist.get(key) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(_) => return Err(format!("'{key}' is not a non-empty string")),
            None => return Err(format!("no '{key}'")),
        }
    }
    let first = match conflist.get("plugins") {
        Some(Value::Array(plugins)) => plugins
            .first()
            .ok_or("'plugins' is empty: the first plugin must be weft")?,
        Some(_) => return Err("'plugins' is not an array".into()),
        None => return Err("no 'plugins'".into()),
    };
    match first.get("type") {
        Some(Value::String(t)) if t == "weft" => {}
        other => {
            return Err(format!(
                "plugins[0].type is {}, not \"weft\" (weft must be first: it gives the pod its interface and addresses)",
                other.map_or("missing".into(), Value::to_string)
            ))
        }
    }
    let named = match first.get("socket") {
        None => PLUGIN_DEFAULT_SOCKET,
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(format!("plugins[0].socket is {other}, not a path")),
    };
    if Path::new(named) != socket {
        return Err(format!(
            "plugins[0].socket is '{named}' but --socket is '{}': the plugin would not reach this weftd",
            socket.display()
        ));
    }
    Ok(())
}

/// Whether the template's weft entry (checked first by [`check_template`]) declares
/// the pod annotations capability.
fn asks_for_pod_annotations(content: &[u8]) -> bool {
    serde_json::from_slice::<Value>(content).is_ok_and(|conflist| {
        conflist["plugins"][0]["capabilities"][POD_ANNOTATIONS_CAPABILITY] == Value::Bool(true)
    })
}

/// Creates `path` (or truncates a stale one) with [`MODE`] whatever the umask, writes
/// `content` and syncs it to disk.
fn write_synced(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(MODE)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(MODE))?;
    file.write_all(content)?;
    file.sync_all()
}

#[cfg(test)]
#[path = "tests/conflist.rs"]
mod tests;
