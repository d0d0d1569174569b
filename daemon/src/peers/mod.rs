//! Where the node's peers come from, behind one interface: main starts a
//! [`PeerSource`] the same way whatever it is, and the source hands complete peer lists
//! to the datapath ([`Datapath::set_peers`]).
//!
//! | source | file | when |
//! |---|---|---|
//! | [`PeerSource::File`] | [`file`] | `--peers FILE`: polled for changes, re-read on SIGHUP |
//! | [`PeerSource::Kubernetes`] | [`kube`] | `--kubeconfig` or `--in-cluster`: a watch of every `WeftNode` |
//! | [`PeerSource::None`] | | standalone without `--peers`: no peers, said once |
//!
//! A new source is one more file and one more variant.

mod file;
mod kube;

use crate::datapath::Datapath;
use crate::error::Result;
use crate::kube::Cluster;
use crate::metrics::Metrics;
use crate::task::{self, Task};
use futures::FutureExt;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use tracing::info;

/// A source of peer lists.
#[derive(Debug)]
pub enum PeerSource {
    /// No peers at all.
    None,
    /// The `--peers` file.
    File(PathBuf),
    /// The apiserver's `WeftNode`s.
    Kubernetes(Box<Cluster>),
}

/// Talks to a running source.
#[derive(Debug)]
pub struct PeerHandle {
    reload: Option<Sender<()>>,
}

impl PeerHandle {
    /// Asks the source to read its peers again now (SIGHUP). Sources that are told of
    /// every change (the watch) or have nothing to read ignore it.
    pub fn reload(&self) {
        match &self.reload {
            Some(reload) => {
                info!("re-reading the peers");
                let _ = reload.send(());
            }
            None => info!("this peer source has nothing to re-read"),
        }
    }
}

impl PeerSource {
    /// Starts feeding `datapath`; failures the source survives are counted in
    /// `metrics`. The task ends only if the source dies.
    pub fn start(self, datapath: Datapath, metrics: Metrics) -> Result<(PeerHandle, Task)> {
        match self {
            PeerSource::None => {
                datapath.set_peers(Vec::new());
                // A fixed empty list never changes: nothing runs, nothing can die.
                let task = futures::future::pending().boxed();
                Ok((PeerHandle { reload: None }, task))
            }
            PeerSource::File(path) => {
                let (reload, reloads) = std::sync::mpsc::channel();
                let task = task::thread("peers-file", move || {
                    file::watch(path, reloads, |peers| datapath.set_peers(peers))
                })?;
                let handle = PeerHandle {
                    reload: Some(reload),
                };
                Ok((handle, task))
            }
            PeerSource::Kubernetes(cluster) => {
                let task = task::spawn("peer watch", kube::feed(*cluster, datapath, metrics));
                Ok((PeerHandle { reload: None }, task))
            }
        }
    }
}
