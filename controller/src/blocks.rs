//! The one writer of `WeftClaimBlock`s. Reconciles and the releaser hand it changes
//! ([`Change`]) and wait for the answer; it takes everything queued at once, groups it
//! by block, and writes each block once: a burst of joining nodes costs the apiserver a
//! write per block touched, not one per range.
//!
//! Every write carries the `resourceVersion` the block was read at (creates: the name),
//! so the apiserver, not this process's cache, decides: on a conflict the block is read
//! again and the changes are applied to what it says now; a range found held by another
//! node is answered [`Answer::Taken`] and the reconcile tries its next candidate.
//!
//! [`BlockWriter::new`] returns the handle (cheap to clone, kept by whoever submits) and
//! the writing task, which the caller runs and supervises: it ends only when every
//! handle is gone.

use crate::ledger::{Held, Ledger};
use crate::shared::{lock, parse_cidr, MANAGER};
use futures::channel::{mpsc, oneshot};
use futures::{Future, StreamExt};
use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, ResourceExt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::{debug, info};
use weft_api::{block_of, BlockClaim, WeftClaimBlock, WeftClaimBlockSpec};

/// Requests taken into one round at most.
const MAX_BATCH: usize = 512;
/// Conflicts in a row before a round gives up (the callers retry).
const MAX_ATTEMPTS: usize = 8;

/// A change to one range's claim.
#[derive(Debug, Clone)]
pub enum Change {
    /// Claim `net` for the node (the caller has reserved it in the ledger).
    Claim {
        net: IpNet,
        from: String,
        node_name: String,
        node_uid: String,
    },
    /// The node's claim of `net` is released now; it is forgotten a cooldown later.
    Release { net: IpNet, node_uid: String },
    /// Drop the claim of `net` released at `released_at` (its cooldown is over).
    Forget { net: IpNet, released_at: Timestamp },
}

impl Change {
    fn net(&self) -> IpNet {
        match self {
            Change::Claim { net, .. }
            | Change::Release { net, .. }
            | Change::Forget { net, .. } => *net,
        }
    }
}

/// What became of a change.
#[derive(Debug, Clone)]
pub enum Answer {
    /// The claim is the node's: just written, or an earlier write adopted.
    Mine(Held),
    /// Another node (or another incarnation) holds the range.
    Taken,
    /// A release or forget is done (or had nothing left to do).
    Done,
}

pub type Reply = Result<Answer, Arc<kube::Error>>;

struct Request {
    change: Change,
    reply: oneshot::Sender<Reply>,
}

/// The handle to the writer: its inbox, and the claims handed in and not answered yet
/// (node and range). Cheap to clone.
#[derive(Debug, Clone)]
pub struct BlockWriter {
    inbox: mpsc::UnboundedSender<Request>,
    claiming: Arc<Mutex<HashSet<(String, IpNet)>>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.change.fmt(f)
    }
}

impl BlockWriter {
    /// The handle, and the task that writes the blocks through `api` and records every
    /// block it wrote in `ledger`.
    pub fn new(
        api: Api<WeftClaimBlock>,
        ledger: Arc<Ledger>,
    ) -> (BlockWriter, impl Future<Output = ()>) {
        let (inbox, requests) = mpsc::unbounded();
        let handle = BlockWriter {
            inbox,
            claiming: Arc::default(),
        };
        (handle, Writer { api, ledger }.run(requests))
    }

    /// Hands `change` to the writer and waits for its answer.
    pub async fn submit(&self, change: Change) -> Reply {
        let claim = match &change {
            Change::Claim { net, node_name, .. } => Some((node_name.clone(), *net)),
            _ => None,
        };
        if let Some(c) = &claim {
            self.claims_in_flight().insert(c.clone());
        }
        let (reply, answer) = oneshot::channel();
        // A writer that is gone ends the process (main's select), so this only waits.
        let sent = self.inbox.unbounded_send(Request { change, reply });
        let answer = match sent {
            Ok(()) => answer.await.ok(),
            Err(_) => None,
        };
        if let Some(c) = &claim {
            self.claims_in_flight().remove(c);
        }
        match answer {
            Some(reply) => reply,
            None => std::future::pending().await,
        }
    }

    /// Whether the node's claim of `net` is being written by this process: the watch's
    /// echo of that write need not trigger the node, whose reconcile is waiting for the
    /// writer's answer and goes on from it.
    pub fn is_claiming(&self, node: &str, net: IpNet) -> bool {
        self.claims_in_flight().contains(&(node.to_owned(), net))
    }

    fn claims_in_flight(&self) -> MutexGuard<'_, HashSet<(String, IpNet)>> {
        lock(&self.claiming)
    }
}

/// The writing task's own state.
struct Writer {
    api: Api<WeftClaimBlock>,
    ledger: Arc<Ledger>,
}

impl Writer {
    /// Writes blocks until every handle is gone.
    async fn run(self, mut inbox: mpsc::UnboundedReceiver<Request>) {
        // The last version of each block this writer read or wrote: its next write's base.
        let mut latest: HashMap<String, WeftClaimBlock> = HashMap::new();
        while let Some(first) = inbox.next().await {
            let mut round = vec![first];
            while round.len() < MAX_BATCH {
                match inbox.try_recv() {
                    Ok(r) => round.push(r),
                    Err(_) => break,
                }
            }
            // Keyed by the block's name, which also names the ranges' length.
            let mut by_block: BTreeMap<String, ((IpNet, u8), Vec<Request>)> = BTreeMap::new();
            for r in round {
                let net = r.change.net();
                let (block, name) = block_of(net);
                by_block
                    .entry(name)
                    .or_insert(((block, net.prefix_len()), Vec::new()))
                    .1
                    .push(r);
            }
            let this = &self;
            let writes = by_block.into_iter().map(|(name, (block, requests))| {
                let base = latest.remove(&name);
                async move {
                    let written = this.write_block(&name, block, base, requests).await;
                    (name, written)
                }
            });
            for (name, written) in futures::future::join_all(writes).await {
                if let Some(b) = written {
                    latest.insert(name, b);
                }
            }
        }
    }

    /// Applies the requests to one block, writing it once (more on conflicts), answers them,
    /// and returns the block as written, for the next round's base.
    async fn write_block(
        &self,
        name: &str,
        block: (IpNet, u8),
        mut base: Option<WeftClaimBlock>,
        requests: Vec<Request>,
    ) -> Option<WeftClaimBlock> {
        // A write proves the base current (its resourceVersion matched); an answer given
        // without one comes from a read made for it, never from the cached base, which a
        // racing writer may have outdated.
        for _ in 0..MAX_ATTEMPTS {
            // The cached base on the first pass only; a read on every other.
            let read = base.is_none();
            let current = match base.take() {
                Some(b) => Some(b),
                None => match self.api.get_opt(name).await {
                    Ok(b) => b,
                    Err(e) => return self.fail(requests, e),
                },
            };
            let before = current
                .as_ref()
                .map(|b| b.spec.claims.clone())
                .unwrap_or_default();
            let mut entries = before.clone();
            let verdicts: Vec<Verdict> = requests
                .iter()
                .map(|r| apply(&mut entries, &r.change))
                .collect();
            if entries == before && !read {
                continue;
            }
            let written = if entries == before {
                Ok(current.map_or(Written::Absent, Written::Kept))
            } else {
                self.write(name, block, current.as_ref(), entries).await
            };
            match written {
                Ok(w) => {
                    let kept = w.block().cloned();
                    if let Some(b) = &kept {
                        self.ledger.apply_block(b, w.deleted());
                    }
                    self.answer(name, requests, &verdicts, kept.as_ref(), w.deleted());
                    return kept.filter(|_| !w.deleted());
                }
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                    debug!(block = %name, reason = %s.reason, "block changed since read: reading again");
                }
                Err(e) => return self.fail(requests, e),
            }
        }
        let message =
            format!("{MAX_ATTEMPTS} conflicting writes of WeftClaimBlock {name} in a row");
        let e = kube::Error::Api(
            kube::core::Status::failure(&message, "Conflict")
                .with_code(409)
                .boxed(),
        );
        self.fail(requests, e)
    }
}

/// The result of one write.
enum Written {
    /// Created or replaced: the block now.
    Kept(WeftClaimBlock),
    /// The last claim went: the block, as deleted.
    Deleted(WeftClaimBlock),
    /// Nothing to write, and no block.
    Absent,
}

impl Written {
    fn block(&self) -> Option<&WeftClaimBlock> {
        match self {
            Written::Kept(b) | Written::Deleted(b) => Some(b),
            Written::Absent => None,
        }
    }
    fn deleted(&self) -> bool {
        matches!(self, Written::Deleted(_) | Written::Absent)
    }
}

impl Writer {
    /// One create, replace or delete of the block, guarded by what it was read as.
    async fn write(
        &self,
        name: &str,
        (block, range_length): (IpNet, u8),
        current: Option<&WeftClaimBlock>,
        entries: Vec<BlockClaim>,
    ) -> Result<Written, kube::Error> {
        let params = PostParams {
            field_manager: Some(MANAGER.into()),
            ..PostParams::default()
        };
        match current {
            Some(b) if entries.is_empty() => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: b.uid(),
                        resource_version: b.resource_version(),
                    }),
                    ..DeleteParams::default()
                };
                self.api.delete(name, &params).await?;
                info!(block = %name, "last claim gone: block deleted");
                Ok(Written::Deleted(b.clone()))
            }
            Some(b) => {
                let mut next = b.clone();
                next.spec.claims = entries;
                next.metadata.managed_fields = None;
                self.api
                    .replace(name, &params, &next)
                    .await
                    .map(Written::Kept)
            }
            None => {
                let next = WeftClaimBlock::new(
                    name,
                    WeftClaimBlockSpec {
                        cidr: block.to_string(),
                        range_length,
                        claims: entries,
                    },
                );
                self.api.create(&params, &next).await.map(Written::Kept)
            }
        }
    }
}

/// The entry of `net`, in whatever text form it was written.
fn position(entries: &[BlockClaim], net: IpNet) -> Option<usize> {
    entries
        .iter()
        .position(|e| parse_cidr(&e.cidr) == Some(net))
}

/// What one change found in the block's entries.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    /// The claim is the node's (added now, or there already).
    Ours,
    Taken,
    Done,
}

/// Applies one change to a block's entries.
fn apply(entries: &mut Vec<BlockClaim>, change: &Change) -> Verdict {
    match change {
        Change::Claim {
            net,
            from,
            node_name,
            node_uid,
        } => match position(entries, *net) {
            Some(i) => {
                let e = &entries[i];
                if e.node_name == *node_name && e.node_uid == *node_uid && e.released_at.is_none() {
                    Verdict::Ours
                } else {
                    Verdict::Taken
                }
            }
            None => {
                entries.push(BlockClaim {
                    cidr: net.to_string(),
                    from: from.clone(),
                    node_name: node_name.clone(),
                    node_uid: node_uid.clone(),
                    released_at: None,
                });
                Verdict::Ours
            }
        },
        Change::Release { net, node_uid } => {
            if let Some(i) = position(entries, *net) {
                let e = &mut entries[i];
                if e.node_uid == *node_uid && e.released_at.is_none() {
                    e.released_at = Some(Time(Timestamp::now()));
                }
            }
            Verdict::Done
        }
        Change::Forget { net, released_at } => {
            if let Some(i) = position(entries, *net) {
                if entries[i].released_at.as_ref().map(|t| t.0) == Some(*released_at) {
                    entries.remove(i);
                }
            }
            Verdict::Done
        }
    }
}

impl Writer {
    /// Answers every request of a round that reached the apiserver (or needed not to).
    fn answer(
        &self,
        name: &str,
        requests: Vec<Request>,
        verdicts: &[Verdict],
        block: Option<&WeftClaimBlock>,
        deleted: bool,
    ) {
        let held = match block {
            Some(b) if !deleted => Held::of_block(b),
            _ => Vec::new(),
        };
        for (request, verdict) in requests.into_iter().zip(verdicts) {
            let answer = match (&request.change, verdict) {
                (Change::Claim { net, .. }, verdict) => {
                    self.ledger.settle(*net, true);
                    match held.iter().find(|h| h.cidr == *net) {
                        Some(h) if *verdict == Verdict::Ours => Answer::Mine(h.clone()),
                        _ => Answer::Taken,
                    }
                }
                (Change::Forget { net, .. }, _) => {
                    if !held.iter().any(|h| h.cidr == *net) {
                        info!(block = %name, cidr = %net, "cooldown over, range free");
                    }
                    Answer::Done
                }
                (Change::Release { .. }, _) => Answer::Done,
            };
            let _ = request.reply.send(Ok(answer));
        }
    }

    /// A write that did not reach a verdict: every request fails (the claims' reservations
    /// are dropped; the watch shows what the apiserver has, should the write have happened).
    fn fail(&self, requests: Vec<Request>, e: kube::Error) -> Option<WeftClaimBlock> {
        let e = Arc::new(e);
        for r in requests {
            if let Change::Claim { net, .. } = r.change {
                self.ledger.settle(net, false);
            }
            let _ = r.reply.send(Err(e.clone()));
        }
        None
    }
}

#[cfg(test)]
#[path = "tests/blocks.rs"]
mod tests;
