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
//! (release time in Unix milliseconds), `corrupt/<name>` (records that did not parse,
//! quarantined: see [`Quarantined`]), `tmp/` (same file system, for the renames),
//! `boot_id`, `weftd.lock` ([`crate::StateLock`]).
//!
//! Nothing found in the directory is fatal: an entry weftd never writes (a directory,
//! a symlink, a name that is not UTF-8) is reported and left alone, never followed; a
//! record that does not parse keeps its addresses reserved.

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

/// A record that could not be read as a whole: its addresses stay reserved (as far as
/// they can be recovered from its bytes) until its attachment's DEL or a reboot,
/// because freeing them could hand a live pod's address to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The record's file name in `corrupt/` (normally `<containerID>@<ifname>`).
    pub record: String,
    /// Addresses found in it.
    pub addresses: Vec<IpAddr>,
}

/// What was on disk at start-up.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Live allocations.
    pub allocations: Vec<Allocation>,
    /// Released addresses and their release time (Unix ms).
    pub cooling: Vec<(IpAddr, u64)>,
    /// Records that could not be read, kept in `corrupt/` with their addresses reserved.
    pub quarantined: Vec<Quarantined>,
    /// Entries weftd never writes (names that are not UTF-8, directories, symlinks,
    /// devices), left where they are and not read: `<subdir>/<name>: <what>`.
    pub skipped: Vec<String>,
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

/// One directory entry, sorted into what weftd may read and what it must not.
enum Entry {
    /// A regular file with a UTF-8 name.
    Record(String, PathBuf),
    /// Anything else, described for the report.
    Odd(String),
}

/// Every entry of `dir`, without following symlinks. Only listing `dir` itself can
/// fail: an entry weftd cannot make sense of is reported, never fatal.
fn entries(dir: &Path, sub: &str) -> Result<Vec<Entry>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let raw = entry.file_name();
        let shown = format!("{sub}/{}", raw.to_string_lossy().escape_debug());
        let kind = entry.file_type();
        out.push(match (raw.into_string(), kind) {
            (Err(_), _) => Entry::Odd(format!("{shown}: name is not UTF-8")),
            (Ok(_), Err(e)) => Entry::Odd(format!("{shown}: {e}")),
            (Ok(name), Ok(kind)) if kind.is_file() => Entry::Record(name, entry.path()),
            (Ok(_), Ok(kind)) if kind.is_dir() => Entry::Odd(format!("{shown}: a directory")),
            (Ok(_), Ok(kind)) if kind.is_symlink() => Entry::Odd(format!("{shown}: a symlink")),
            (Ok(_), Ok(_)) => Entry::Odd(format!("{shown}: not a regular file")),
        });
    }
    Ok(out)
}

/// The most of one file read: a record is a few hundred bytes, so anything longer is
/// not weftd's and must not be loaded whole.
const MAX_RECORD_BYTES: u64 = 64 << 10;

/// Reads at most [`MAX_RECORD_BYTES`] of a regular file, without following a symlink
/// and without blocking on a FIFO put in its place since the directory was listed.
/// Empty when it cannot be read as one.
fn read_record(path: &Path) -> Vec<u8> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = Vec::new();
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path);
    if let Ok((file, true)) = file.and_then(|f| f.metadata().map(|m| (f, m.is_file()))) {
        let _ = file.take(MAX_RECORD_BYTES).read_to_end(&mut bytes);
    }
    bytes
}

/// Every address written out in `bytes`, for a record that does not parse: the
/// tokens made of hex digits, ':' and '.' that read as an IPv6 or IPv4 address.
fn recover_addresses(bytes: &[u8]) -> Vec<IpAddr> {
    let text = String::from_utf8_lossy(bytes);
    let mut found: Vec<IpAddr> = text
        .split(|c: char| !(c.is_ascii_hexdigit() || c == ':' || c == '.'))
        .filter_map(|token| token.parse().ok())
        .collect();
    found.sort();
    found.dedup();
    found
}

impl Store {
    /// Opens the state directory and loads what it holds. The directory must exist and
    /// be one only weftd's user can write ([`crate::prepare_state_dir`]).
    pub fn open(dir: &Path) -> Result<(Store, Loaded), StoreError> {
        for sub in ["allocations", "cooldown", "tmp", "corrupt"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(io_err("create", &path))?;
        }
        let store = Store {
            dir: dir.to_owned(),
            tmp_counter: AtomicU64::new(0),
        };
        let mut loaded = Loaded::default();
        store.clear_dir("tmp", &mut loaded.skipped)?;
        let boot_file = dir.join("boot_id");
        let boot_id = fs::read_to_string(BOOT_ID).unwrap_or_default();
        let recorded = fs::read_to_string(&boot_file).ok();
        if recorded.as_deref().is_some_and(|r| r != boot_id) {
            loaded.dropped_after_reboot = store.clear_dir("allocations", &mut loaded.skipped)?;
            store.clear_dir("cooldown", &mut loaded.skipped)?;
            store.clear_dir("corrupt", &mut loaded.skipped)?;
        }
        if recorded.as_deref() != Some(boot_id.as_str()) {
            store.write_atomic(&boot_file, boot_id.as_bytes())?;
        }
        store.load_quarantined(&mut loaded)?;
        store.load_allocations(&mut loaded)?;
        store.load_cooldowns(&mut loaded)?;
        Ok((store, loaded))
    }

    /// The records of `sub` (regular files with UTF-8 names), reporting anything else
    /// in `skipped` and leaving it where it is.
    fn records(
        &self,
        sub: &str,
        skipped: &mut Vec<String>,
    ) -> Result<Vec<(String, PathBuf)>, StoreError> {
        let mut records = Vec::new();
        for entry in entries(&self.dir.join(sub), sub)? {
            match entry {
                Entry::Record(name, path) => records.push((name, path)),
                Entry::Odd(what) => skipped.push(what),
            }
        }
        Ok(records)
    }

    /// Removes the records of `sub`, reporting (and leaving) anything else.
    fn clear_dir(&self, sub: &str, skipped: &mut Vec<String>) -> Result<usize, StoreError> {
        let records = self.records(sub, skipped)?;
        for (_, path) in &records {
            fs::remove_file(path).map_err(io_err("remove", path))?;
        }
        Ok(records.len())
    }

    fn load_quarantined(&self, loaded: &mut Loaded) -> Result<(), StoreError> {
        for (record, path) in self.records("corrupt", &mut loaded.skipped)? {
            loaded.quarantined.push(Quarantined {
                addresses: recover_addresses(&read_record(&path)),
                record,
            });
        }
        Ok(())
    }

    fn load_allocations(&self, loaded: &mut Loaded) -> Result<(), StoreError> {
        for (name, path) in self.records("allocations", &mut loaded.skipped)? {
            let bytes = read_record(&path);
            let record = serde_json::from_slice::<Allocation>(&bytes)
                .ok()
                .filter(|a| Attachment::from_key(&name).as_ref() == Some(&a.attachment));
            match record {
                Some(allocation) => loaded.allocations.push(allocation),
                None => {
                    // Moved aside so that the next start does not trip on it again; if
                    // even that fails, it stays quarantined where it is.
                    let _ = fs::rename(&path, self.dir.join("corrupt").join(&name));
                    loaded.quarantined.push(Quarantined {
                        record: name,
                        addresses: recover_addresses(&bytes),
                    });
                }
            }
        }
        loaded
            .allocations
            .sort_by(|a, b| a.attachment.cmp(&b.attachment));
        Ok(())
    }

    fn load_cooldowns(&self, loaded: &mut Loaded) -> Result<(), StoreError> {
        for (name, path) in self.records("cooldown", &mut loaded.skipped)? {
            let at = String::from_utf8(read_record(&path))
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok());
            match (name.parse::<IpAddr>(), at) {
                (Ok(addr), Some(at)) => loaded.cooling.push((addr, at)),
                // Housekeeping: an unreadable cooldown only shortens a rest.
                _ => {
                    let _ = fs::remove_file(&path);
                }
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
        let written = fs::File::create(&tmp)
            .map_err(io_err("create", &tmp))
            .and_then(|mut file| file.write_all(bytes).map_err(io_err("write", &tmp)))
            .and_then(|()| fs::rename(&tmp, target).map_err(io_err("rename into", target)));
        if written.is_err() {
            // A full file system (ENOSPC) must not fill up further with temp files.
            let _ = fs::remove_file(&tmp);
        }
        written
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
        self.cool_then_remove(released, &self.record_path(attachment), now_ms)
    }

    /// Ends a quarantine the same way: its addresses cool down, then its record goes.
    pub fn release_quarantined(
        &self,
        quarantined: &Quarantined,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let path = self.dir.join("corrupt").join(&quarantined.record);
        self.cool_then_remove(&quarantined.addresses, &path, now_ms)
    }

    fn cool_then_remove(
        &self,
        released: &[IpAddr],
        record: &Path,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        for addr in released {
            let path = self.dir.join("cooldown").join(addr.to_string());
            self.write_atomic(&path, now_ms.to_string().as_bytes())?;
        }
        match fs::remove_file(record) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", record)(e)),
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
