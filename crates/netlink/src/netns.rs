//! Entering network namespaces. setns(2) acts on the calling thread only, so a guard
//! returns the thread to where it was, also on early returns.

use crate::NetlinkError;
use nix::sched::{setns, CloneFlags};
use std::cell::{Cell, RefCell};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// An open network namespace.
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

/// While alive, the thread is in another namespace; dropping it returns.
#[derive(Debug)]
#[must_use = "the thread returns to its namespace when the guard drops"]
pub struct NetnsGuard {
    previous: Rc<Netns>,
}

thread_local! {
    /// The namespace the thread lives in outside any guard, opened once: weft moves a
    /// thread only through guards, and the plugin enters the pod three times per ADD.
    static HOME: RefCell<Option<Rc<Netns>>> = const { RefCell::new(None) };
    /// How many guards are alive on this thread.
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// The namespace to return to: the cached home when no guard is alive, else the
/// current one (a nested enter).
fn return_point() -> Result<Rc<Netns>, NetlinkError> {
    if DEPTH.get() > 0 {
        return Netns::current().map(Rc::new);
    }
    HOME.with_borrow_mut(|home| match home {
        Some(ns) => Ok(ns.clone()),
        None => {
            let ns = Rc::new(Netns::current()?);
            *home = Some(ns.clone());
            Ok(ns)
        }
    })
}

impl Netns {
    /// Opens the namespace at `path` (e.g. `/var/run/netns/pod1` or `/proc/PID/ns/net`).
    pub fn open(path: &Path) -> Result<Netns, NetlinkError> {
        let file = File::open(path).map_err(|e| {
            NetlinkError::io(format!("open network namespace {}", path.display()), e)
        })?;
        Ok(Netns {
            file,
            path: path.to_owned(),
        })
    }

    /// The calling thread's current namespace.
    pub fn current() -> Result<Netns, NetlinkError> {
        Netns::open(Path::new("/proc/thread-self/ns/net"))
    }

    /// Where it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Moves the calling thread into this namespace until the guard drops.
    pub fn enter(&self) -> Result<NetnsGuard, NetlinkError> {
        let previous = return_point()?;
        setns(&self.file, CloneFlags::CLONE_NEWNET).map_err(|e| {
            NetlinkError::io(
                format!("enter network namespace {}", self.path.display()),
                e.into(),
            )
        })?;
        DEPTH.set(DEPTH.get() + 1);
        Ok(NetnsGuard { previous })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        DEPTH.set(DEPTH.get().saturating_sub(1));
        // Failing to return would leave later work in the wrong namespace; there is no
        // way to carry on safely, so stop here rather than wire the wrong network.
        if let Err(e) = setns(&self.previous.file, CloneFlags::CLONE_NEWNET) {
            eprintln!(
                "weft: cannot return to network namespace {}: {e}",
                self.previous.path.display()
            );
            std::process::abort();
        }
    }
}
