//! weftd's unix socket: who may talk to it, how many at once and for how long, and the
//! line protocol loop.

use crate::error::{Error, Result};
use crate::service::Service;
use nix::sys::stat::{umask, Mode as Perm};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};
use weft_wire::{ErrorKind, Request, Response, MAX_MESSAGE_BYTES};

/// Connections served at once. Plugins beyond it wait in the listen backlog (they are
/// root processes of the runtime, to be slowed, not refused): a node starts pods by the
/// tens at once, so this is only reached by a client that opens and holds connections.
pub const MAX_PLUGIN_CONNECTIONS: usize = 128;
/// How long a connection may stay silent while weftd waits for its next request. A
/// plugin's ADD holds its connection across the pod's wiring (up to the 2 s wait for
/// the pod's IPv6 address) before its report; the plugin itself waits at most 10 s for
/// an answer, so nothing legitimate idles longer.
pub const PLUGIN_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket file this weftd bound, by identity: on exit it is removed only if it is
/// still that file, never one another weftd bound at the same path since.
#[derive(Debug)]
pub struct BoundSocket {
    path: PathBuf,
    identity: (u64, u64),
}

impl BoundSocket {
    /// Removes the socket if the path still holds the one this weftd bound.
    pub fn remove(&self) {
        let still_ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if still_ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Refuses a socket directory that others could write, creating it (0755) if missing.
/// Anyone who can write the directory could swap the socket for their own and receive
/// every pod's requests. Checked before anything else, bound later ([`bind`]).
pub fn check_directory(path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Socket(format!("'{}' has no directory", path.display())))?;
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Socket(format!("cannot create {}: {e}", dir.display())))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::Socket(format!("cannot set mode of {}: {e}", dir.display())))?;
    }
    let meta =
        std::fs::metadata(dir).map_err(|e| Error::Socket(format!("{}: {e}", dir.display())))?;
    if meta.mode() & 0o022 != 0 {
        return Err(Error::Socket(format!(
            "directory {} is writable by group or others (mode {:o}); use a directory only root can write, such as /run/weft",
            dir.display(),
            meta.mode() & 0o7777
        )));
    }
    if meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(Error::Socket(format!(
            "directory {} is owned by uid {}, not by weftd's user",
            dir.display(),
            meta.uid()
        )));
    }
    Ok(())
}

/// Binds the socket 0600 ([`check_directory`] again, the directory may have changed
/// since), refusing a path another process serves on.
pub fn bind(path: &Path) -> Result<(UnixListener, BoundSocket)> {
    check_directory(path)?;
    if let Ok(existing) = std::fs::symlink_metadata(path) {
        if !existing.file_type().is_socket() {
            return Err(Error::Socket(format!(
                "'{}' exists and is not a socket",
                path.display()
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::Socket(format!(
                "another process is serving on '{}'",
                path.display()
            )));
        }
        std::fs::remove_file(path)
            .map_err(|e| Error::Socket(format!("cannot remove stale '{}': {e}", path.display())))?;
    }
    // The socket is born 0600: no window in which others could connect.
    let previous = umask(Perm::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    umask(previous);
    let listener =
        listener.map_err(|e| Error::Socket(format!("cannot bind '{}': {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::Socket(format!("cannot set mode of '{}': {e}", path.display())))?;
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| Error::Socket(format!("cannot inspect '{}': {e}", path.display())))?;
    let bound = BoundSocket {
        path: path.to_owned(),
        identity: (meta.dev(), meta.ino()),
    };
    Ok((listener, bound))
}

/// Accepts connections forever, one task each, at most [`MAX_PLUGIN_CONNECTIONS`] at
/// once.
pub async fn serve(listener: UnixListener, service: Service) {
    let places = Arc::new(Semaphore::new(MAX_PLUGIN_CONNECTIONS));
    loop {
        // The semaphore is never closed, so this cannot fail.
        let Ok(place) = places.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let service = service.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, service).await {
                        debug!(error = %e, "plugin connection ended");
                    }
                    drop(place);
                });
            }
            Err(e) => {
                warn!(error = %e, "accept on the plugin socket failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(stream: UnixStream, service: Service) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_MESSAGE_BYTES as u64 + 1);
        let n = tokio::time::timeout(PLUGIN_IDLE_TIMEOUT, limited.read_until(b'\n', &mut line))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no request within {PLUGIN_IDLE_TIMEOUT:?}"),
                )
            })??;
        if n == 0 {
            return Ok(());
        }
        let response = if line.len() > MAX_MESSAGE_BYTES {
            Some(Response::Error {
                kind: ErrorKind::BadRequest,
                message: "request exceeds the size limit".into(),
                family: None,
            })
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(request) => service.handle(request).await,
                Err(e) => Some(Response::Error {
                    kind: ErrorKind::BadRequest,
                    message: format!("request does not parse: {e}"),
                    family: None,
                }),
            }
        };
        if let Some(response) = response {
            let mut bytes = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
            bytes.push(b'\n');
            write.write_all(&bytes).await?;
        }
        if line.len() > MAX_MESSAGE_BYTES || line.last() != Some(&b'\n') {
            return Ok(());
        }
    }
}
