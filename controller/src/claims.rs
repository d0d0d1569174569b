//! Claims of ranges, whichever way they are stored: new claims go into
//! `WeftClaimBlock`s through the block writer (blocks.rs); the one-object-per-range
//! `WeftClaim`s of earlier versions are still honoured, released and deleted. This
//! module feeds the [`Ledger`] from both watches, claims a range for a node, and
//! releases the claims of Nodes that are gone, freeing them a cooldown later.

use crate::allocator::cooldown_left;
use crate::blocks::{Answer, Change};
use crate::context::Context;
use crate::ledger::{Held, Stored};
use futures::channel::mpsc::UnboundedSender;
use futures::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};
use weft_api::{WeftClaim, WeftClaimBlock, WeftNode};

pub use crate::ledger::Ledger;

/// Feeds the ledger from the watches of claim blocks and of `WeftClaim`s, until the
/// process ends, and sends the holders of the claims that changed to `touched`, once
/// the ledger has them: the Node controller's trigger (one watch per kind serves both).
/// The echo of a claim this process is writing triggers nothing (`is_claiming`).
pub async fn watch_claims(
    blocks: Api<WeftClaimBlock>,
    objects: Api<WeftClaim>,
    ctx: &Context,
    touched: &UnboundedSender<ObjectRef<Node>>,
) {
    let blocks = follow(
        blocks,
        "WeftClaimBlock",
        |e| {
            ctx.ledger
                .on_block_event(e)
                .into_iter()
                .filter(|(node, net)| !net.is_some_and(|n| ctx.block_writer.is_claiming(node, n)))
                .map(|(node, _)| node)
                .collect()
        },
        touched,
    );
    let objects = follow(
        objects,
        "WeftClaim",
        |e| ctx.ledger.on_claim_event(e),
        touched,
    );
    futures::future::join(blocks, objects).await;
}

async fn follow<K>(
    api: Api<K>,
    kind: &str,
    on_event: impl Fn(watcher::Event<K>) -> Vec<String>,
    touched: &UnboundedSender<ObjectRef<Node>>,
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let events = watcher(api, watcher::Config::default()).default_backoff();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(e) => {
                for node in on_event(e) {
                    let _ = touched.unbounded_send(ObjectRef::new(&node));
                }
            }
            Err(e) => warn!(kind, error = %e, "watch"),
        }
    }
}

/// What a claim found.
#[derive(Debug)]
pub enum Outcome {
    /// The claim is the node's: just written, or an earlier write of ours adopted.
    Mine(Held),
    /// Someone else holds the range.
    Taken,
}

/// Claims `net` (already reserved in the ledger) for the node, in its block. The
/// apiserver decides (blocks.rs): a range the block shows held by this incarnation of
/// the node is adopted, by anyone else taken.
pub async fn create(
    ctx: &Context,
    node: &Node,
    net: IpNet,
    from: &str,
) -> Result<Outcome, Arc<kube::Error>> {
    let node_name = node.name_any();
    let change = Change::Claim {
        net,
        from: from.to_owned(),
        node_name: node_name.clone(),
        node_uid: node.uid().unwrap_or_default(),
    };
    let answer = ctx.block_writer.submit(change).await;
    ctx.pacing.allocation_written(&node_name);
    match answer? {
        Answer::Mine(h) => Ok(Outcome::Mine(h)),
        Answer::Taken | Answer::Done => Ok(Outcome::Taken),
    }
}

/// Marks a claim released now; it is freed a cooldown later.
pub async fn release(ctx: &Context, held: &Held, why: &str) -> Result<(), Arc<kube::Error>> {
    match &held.stored {
        Stored::Block { .. } => {
            let change = Change::Release {
                net: held.cidr,
                node_uid: held.node_uid.clone(),
            };
            ctx.block_writer.submit(change).await?;
        }
        Stored::Object { .. } => {
            let patch = serde_json::json!({"spec": {"releasedAt": Time(Timestamp::now())}});
            let c = ctx
                .claims
                .patch(&held.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            if let Some(h) = Held::of(&c) {
                ctx.ledger.insert(h);
            }
        }
    }
    info!(claim = %held.name, node = %held.node_name, why, "released");
    Ok(())
}

/// Frees a claim whose cooldown is over: drops its block entry, or deletes its
/// `WeftClaim` (only that object: the UID is a precondition).
async fn free(ctx: &Context, held: &Held, released_at: Timestamp) -> Result<(), Arc<kube::Error>> {
    let uid = match &held.stored {
        Stored::Block { .. } => {
            let change = Change::Forget {
                net: held.cidr,
                released_at,
            };
            ctx.block_writer.submit(change).await?;
            return Ok(());
        }
        Stored::Object { uid } => uid,
    };
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match ctx.claims.delete(&held.name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => return Err(Arc::new(e)),
    }
    info!(claim = %held.name, cidr = %held.cidr, "cooldown over, range free");
    ctx.ledger.remove(&held.name);
    Ok(())
}

/// Whether this incarnation of the node is in the node cache.
fn node_cached(ctx: &Context, name: &str, uid: &str) -> bool {
    ctx.nodes
        .get(&ObjectRef::new(name))
        .is_some_and(|n| n.uid().as_deref() == Some(uid))
}

/// Asks the apiserver (not the cache) whether this incarnation of the node exists: a
/// release must never follow from a cache that lags.
async fn node_exists(ctx: &Context, name: &str, uid: &str) -> Result<bool, kube::Error> {
    let node = ctx.node_api.get_opt(name).await?;
    Ok(node.is_some_and(|n| n.uid().as_deref() == Some(uid)))
}

/// How often the releaser sweeps: a deleted Node's claims are released within this.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Releases the claims of gone Nodes, deletes claims whose cooldown is over, and deletes
/// the WeftNodes of gone Nodes (the test apiserver runs no garbage collector, and a real
/// one may lag). Runs while this replica leads.
pub async fn run_releaser(ctx: &Context) {
    let _ = ctx.nodes.wait_until_ready().await;
    let _ = ctx.weftnodes.wait_until_ready().await;
    ctx.ledger.wait_ready().await;
    loop {
        sweep(ctx).await;
        tokio::time::sleep(SWEEP_EVERY).await;
    }
}

/// Claims handled at once in a sweep: block changes made together share a write.
const SWEEP_CONCURRENCY: usize = 64;

async fn sweep(ctx: &Context) {
    let cooldown = ctx.cooldown();
    let now = Timestamp::now();
    let actionable = ctx
        .ledger
        .select(|h| h.released_at.is_some() || !node_cached(ctx, &h.node_name, &h.node_uid));
    let freed = futures::stream::iter(actionable)
        .map(|held| async move {
            let (outcome, freed) = match held.released_at {
                None => match node_exists(ctx, &held.node_name, &held.node_uid).await {
                    Ok(false) => (release(ctx, &held, "node gone").await, false),
                    Ok(true) => (Ok(()), false),
                    Err(e) => (Err(Arc::new(e)), false),
                },
                Some(at) if cooldown_left(at.into(), cooldown, now.into()).is_zero() => {
                    (free(ctx, &held, at).await, true)
                }
                Some(_) => (Ok(()), false),
            };
            if let Err(e) = &outcome {
                warn!(claim = %held.name, error = %e, "release");
            }
            freed && outcome.is_ok()
        })
        .buffer_unordered(SWEEP_CONCURRENCY)
        .fold(false, |any, freed| async move { any || freed })
        .await;
    for wn in ctx.weftnodes.state() {
        let owner = wn
            .owner_references()
            .iter()
            .find(|o| o.kind == "Node")
            .map(|o| o.uid.clone());
        let name = wn.name_any();
        let alive = match &owner {
            Some(uid) => node_cached(ctx, &name, uid),
            None => ctx.nodes.get(&ObjectRef::new(&name)).is_some(),
        };
        if !alive {
            delete_weftnode(ctx, &wn).await;
        }
    }
    ctx.forget_gone_waiting();
    ctx.fresh_weftnodes
        .prune(|name| ctx.weftnodes.get(&ObjectRef::new(name)));
    ctx.fresh_nodes
        .prune(|name| ctx.nodes.get(&ObjectRef::new(name)));
    if freed && ctx.any_waiting() {
        ctx.retrigger_all();
    }
}

async fn delete_weftnode(ctx: &Context, wn: &WeftNode) {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: wn.uid(),
            resource_version: wn.resource_version(),
        }),
        ..DeleteParams::default()
    };
    match ctx.weftnode_api.delete(&wn.name_any(), &params).await {
        Ok(_) => info!(weftnode = %wn.name_any(), "deleted: its Node is gone"),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => warn!(weftnode = %wn.name_any(), error = %e, "cannot delete"),
    }
}
