//! The IPAM store: the only code that touches weftd's state directory.
//!
//! Choice: one small JSON record per allocation, written to a temp file and renamed into
//! place (the AWS VPC CNI checkpoint technique, per record instead of per node). rename(2)
//! is atomic, so after a kill -9 at any instant a record is either wholly there or not
//! there; the daemon answers ADD only after the rename, so an address the plugin saw is
//! always on disk. Per-record files keep every ADD O(1) in bytes written, where one
//! node-wide checkpoint would rewrite every allocation on every pod start.
//!
//! No fsync: pod allocations live exactly as long as the node's pods, and a power loss
//! ends both. Put the directory on tmpfs (/run) and an ADD costs no disk I/O at all.
//! If the directory survives a reboot anyway, the boot ID check below drops the records
//! of pods that died with the previous boot.
//!
//! Layout: `allocations/<containerID>@<ifname>` (an [`Allocation`]), `cooldown/<address>`
//! (release time in Unix milliseconds), `tmp/` (same file system, for the renames),
//! `boot_id`.

use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use weft_wire::{Allocation, Attachment};

/// A store failure, naming the path.
#[derive(Debug, thiserror::Error)]
#[error("state store: {action} {path}: {source}")]
pub struct StoreError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError {
        action,
        path: path.to_owned(),
        source,
    }
}

/// What was on disk at start-up.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Live allocations.
    pub allocations: Vec<Allocation>,
    /// Released addresses and their release time (Unix ms).
    pub cooling: Vec<(IpAddr, u64)>,
    /// Records that could not be read, moved aside to `corrupt/`.
    pub corrupt: Vec<String>,
    /// Records dropped because the node rebooted since they were written.
    pub dropped_after_reboot: usize,
}

/// The state directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    tmp_counter: AtomicU64,
}

const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

impl Store {
    /// Opens (creating if needed) the state directory and loads what it holds.
    pub fn open(dir: &Path) -> Result<(Store, Loaded), StoreError> {
        for sub in ["allocations", "cooldown", "tmp", "corrupt"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(io_err("create", &path))?;
        }
        let store = Store {
            dir: dir.to_owned(),
            tmp_counter: AtomicU64::new(0),
        };
        store.clear_dir("tmp")?;
        let mut loaded = Loaded::default();
        let boot_file = dir.join("boot_id");
        let boot_id = fs::read_to_string(BOOT_ID).unwrap_or_default();
        let recorded = fs::read_to_string(&boot_file).ok();
        if recorded.as_deref().is_some_and(|r| r != boot_id) {
            loaded.dropped_after_reboot = store.clear_dir("allocations")?;
            store.clear_dir("cooldown")?;
        }
        if recorded.as_deref() != Some(boot_id.as_str()) {
            store.write_atomic(&boot_file, boot_id.as_bytes())?;
        }
        store.load_allocations(&mut loaded)?;
        store.load_cooldowns(&mut loaded)?;
        Ok((store, loaded))
    }

    fn clear_dir(&self, sub: &str) -> Result<usize, StoreError> {
        let path = self.dir.join(sub);
        let mut removed = 0;
        for entry in fs::read_dir(&path).map_err(io_err("list", &path))? {
            let entry = entry.map_err(io_err("list", &path))?;
            fs::remove_file(entry.path()).map_err(io_err("remove", &entry.path()))?;
            removed += 1;
        }
        Ok(removed)
    }

    fn load_allocations(&self, loaded: &mut Loaded) -> Result<(), StoreError> {
        let dir = self.dir.join("allocations");
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let path = entry.map_err(io_err("list", &dir))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let record = fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Allocation>(&bytes).ok())
                .filter(|a| Attachment::from_key(&name).as_ref() == Some(&a.attachment));
            match record {
                Some(allocation) => loaded.allocations.push(allocation),
                None => {
                    let aside = self.dir.join("corrupt").join(&name);
                    fs::rename(&path, &aside).map_err(io_err("move aside", &path))?;
                    loaded.corrupt.push(name);
                }
            }
        }
        loaded
            .allocations
            .sort_by(|a, b| a.attachment.cmp(&b.attachment));
        Ok(())
    }

    fn load_cooldowns(&self, loaded: &mut Loaded) -> Result<(), StoreError> {
        let dir = self.dir.join("cooldown");
        for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
            let path = entry.map_err(io_err("list", &dir))?.path();
            let addr = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<IpAddr>().ok());
            let at = fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok());
            match (addr, at) {
                (Some(addr), Some(at)) => loaded.cooling.push((addr, at)),
                _ => fs::remove_file(&path).map_err(io_err("remove", &path))?,
            }
        }
        Ok(())
    }

    fn write_atomic(&self, target: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("{}.{n}", std::process::id()));
        let mut file = fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
        file.write_all(bytes).map_err(io_err("write", &tmp))?;
        drop(file);
        fs::rename(&tmp, target).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err("rename into", target)(e)
        })
    }

    /// Records an allocation. Returns once the record is in place.
    pub fn put(&self, allocation: &Allocation) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(allocation).map_err(|e| StoreError {
            action: "encode",
            path: self.record_path(&allocation.attachment),
            source: io::Error::other(e),
        })?;
        self.write_atomic(&self.record_path(&allocation.attachment), &bytes)
    }

    /// Removes a record, first writing the cooldown of its addresses so that a crash in
    /// between leaves the addresses in use (safe) rather than free too early.
    pub fn remove(
        &self,
        attachment: &Attachment,
        released: &[IpAddr],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        for addr in released {
            let path = self.dir.join("cooldown").join(addr.to_string());
            self.write_atomic(&path, now_ms.to_string().as_bytes())?;
        }
        let path = self.record_path(attachment);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", &path)(e)),
            _ => Ok(()),
        }
    }

    /// Deletes cooldown entries that have expired (housekeeping, not correctness).
    pub fn forget_cooldown(&self, addr: IpAddr) {
        let _ = fs::remove_file(self.dir.join("cooldown").join(addr.to_string()));
    }

    fn record_path(&self, attachment: &Attachment) -> PathBuf {
        self.dir.join("allocations").join(attachment.key())
    }
}
