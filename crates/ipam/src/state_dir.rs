//! The state directory itself: who may write it, and who owns it now.
//!
//! Two weftds on one directory would hand out the same addresses (each restores the
//! same records, then allocates from its own memory), so one exclusive `flock(2)` on a
//! lock file inside it is taken before anything else and held for the process's life.
//! The kernel drops the lock when the holder dies, even by kill -9: no stale lock to
//! clean up. The holder writes its pid into the file so a refused second weftd can name
//! it.
//!
//! Anyone who can write the directory could plant records (and so steal or duplicate
//! addresses) or swap the lock file: a directory group or others can write, or one owned
//! by another user, is refused.

use nix::fcntl::{Flock, FlockArg};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The lock file's name inside the state directory.
pub const LOCK_FILE: &str = "weftd.lock";

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    /// Group or others may write it.
    #[error("{} is writable by group or others (mode {mode:o}); use a directory only its owner can write, such as /run/weft/state", path.display())]
    Writable {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Another user owns it.
    #[error("{} is owned by uid {owner}, not by weftd's user (uid {user})", path.display())]
    ForeignOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// weftd's effective uid.
        user: u32,
    },
    /// Not a directory (a file, or a symlink, which could point anywhere).
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// Another process holds the lock.
    #[error("another weftd ({}) holds {}: one weftd per state directory", holder.map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}")), lock.display())]
    Held {
        /// The lock file.
        lock: PathBuf,
        /// The holder's pid, as it wrote it.
        holder: Option<u32>,
    },
    /// The file system refused.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StateDirError + 'a {
    move |source| StateDirError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` (mode 0700) when missing, then checks that it is a directory only its
/// owner, weftd's user, can write.
pub fn prepare(dir: &Path) -> Result<(), StateDirError> {
    if fs::symlink_metadata(dir).is_err() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("create", dir))?;
    }
    check(dir)
}

/// Refuses a state directory that is not a directory, or that others may write.
pub fn check(dir: &Path) -> Result<(), StateDirError> {
    let meta = fs::symlink_metadata(dir).map_err(io_err("inspect", dir))?;
    if !meta.is_dir() {
        return Err(StateDirError::NotADirectory {
            path: dir.to_owned(),
        });
    }
    let user = nix::unistd::geteuid().as_raw();
    if meta.uid() != user {
        return Err(StateDirError::ForeignOwner {
            path: dir.to_owned(),
            owner: meta.uid(),
            user,
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(StateDirError::Writable {
            path: dir.to_owned(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// The exclusive hold on a state directory; released when dropped or when the process
/// ends in any way.
#[derive(Debug)]
pub struct StateLock {
    _held: Flock<File>,
    path: PathBuf,
}

impl StateLock {
    /// Prepares `dir` ([`prepare`]) and takes its lock without waiting.
    pub fn acquire(dir: &Path) -> Result<StateLock, StateDirError> {
        prepare(dir)?;
        let path = dir.join(LOCK_FILE);
        // No O_TRUNC: the holder's pid must survive a refused opener. O_NOFOLLOW: a
        // planted symlink must not make weftd create or lock a file elsewhere.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let mut held = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => held,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(StateDirError::Held {
                    lock: path,
                    holder: text.trim().parse().ok(),
                });
            }
            Err((_, errno)) => return Err(io_err("lock", &path)(io::Error::from(errno))),
        };
        held.set_len(0).map_err(io_err("truncate", &path))?;
        held.rewind().map_err(io_err("rewind", &path))?;
        writeln!(held, "{}", std::process::id()).map_err(io_err("write", &path))?;
        Ok(StateLock { _held: held, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("weft-state-dir-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_naming_the_holder() {
        let dir = scratch("lock");
        let first = StateLock::acquire(&dir).unwrap();
        let e = StateLock::acquire(&dir).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id()))
                && text.contains(&dir.join(LOCK_FILE).display().to_string()),
            "{text}"
        );
        drop(first);
        StateLock::acquire(&dir).expect("the lock is free once its holder let go");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_others_can_write_is_refused_with_its_mode() {
        let dir = scratch("mode");
        prepare(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let e = StateLock::acquire(&dir).unwrap_err();
        assert!(
            matches!(e, StateDirError::Writable { mode: 0o777, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("mode 777"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_in_place_of_the_directory_or_the_lock_file_is_refused() {
        let dir = scratch("link");
        fs::create_dir_all(&dir).unwrap();
        let link = dir.with_extension("link");
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(matches!(
            StateLock::acquire(&link),
            Err(StateDirError::NotADirectory { .. })
        ));
        std::os::unix::fs::symlink("/nonexistent-weft-target", dir.join(LOCK_FILE)).unwrap();
        assert!(matches!(
            StateLock::acquire(&dir),
            Err(StateDirError::Io { action: "open", .. })
        ));
        fs::remove_file(&link).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
