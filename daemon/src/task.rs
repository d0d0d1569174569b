//! Long-running work as supervised tasks: each is a future that resolves only when the
//! work stops, so main's supervisor sees every death, whether the work runs on the
//! runtime or on a thread of its own (netlink and `nft` are synchronous).
//!
//! Constructors return `(handle, Task)`, as in linkerd2-proxy: the handle is how the
//! rest of weftd talks to the work, the task is what the supervisor watches.

use crate::error::{Error, Result};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::future::Future;

/// A unit of work that should run as long as weftd: `Ok` when it stopped by itself,
/// `Err` when it failed.
pub type Task = BoxFuture<'static, Result<()>>;

/// Runs `work` on a thread named `name`. The task resolves when the thread returns,
/// and with [`Error::TaskPanicked`] when it panics.
pub fn thread(name: &'static str, work: impl FnOnce() + Send + 'static) -> Result<Task> {
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            work();
            // A panic drops `done` unsent, which the task reports.
            let _ = done.send(());
        })
        .map_err(Error::start(name))?;
    Ok(finished
        .map(move |outcome| outcome.map_err(|_| Error::TaskPanicked { task: name }))
        .boxed())
}

/// Runs `work` on the runtime. A panic becomes [`Error::TaskPanicked`].
pub fn spawn(name: &'static str, work: impl Future<Output = Result<()>> + Send + 'static) -> Task {
    let handle = tokio::spawn(work);
    async move {
        match handle.await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::TaskPanicked { task: name }),
        }
    }
    .boxed()
}
