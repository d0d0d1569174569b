//! WeftClaims: one object per delegated range, named after it (`weft_api::claim_name`),
//! so the apiserver refuses a second holder. This module keeps the [`Ledger`] (the claims
//! seen, indexed by node, and the allocator's pool), creates claims (create, never apply:
//! "already exists" means someone holds the range), and releases the claims of Nodes
//! that are gone, deleting them a cooldown later.

use crate::allocator::{cooldown_left, Exhausted, Pool};
use crate::context::Context;
use crate::reconcile::MANAGER;
use futures::channel::mpsc::UnboundedSender;
use futures::StreamExt;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, ResourceExt};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};
use weft_api::{claim_name, Plan, RangeUsage, WeftClaim, WeftClaimSpec, WeftNode, NODE_LABEL};

/// What the controller needs of a claim.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub name: String,
    pub uid: String,
    pub cidr: IpNet,
    pub node_name: String,
    pub node_uid: String,
    pub released_at: Option<Timestamp>,
}

impl Held {
    /// None for a claim whose name is not its CIDR's canonical name: such an object
    /// (made by hand) proves nothing about uniqueness, so it is ignored.
    fn of(claim: &WeftClaim) -> Option<Held> {
        let cidr = parse_cidr(&claim.spec.cidr)?;
        let name = claim.name_any();
        if name != claim_name(cidr) {
            warn!(claim = %name, cidr = %claim.spec.cidr, "ignoring a claim not named after its CIDR");
            return None;
        }
        Some(Held {
            name,
            uid: claim.uid().unwrap_or_default(),
            cidr,
            node_name: claim.spec.node_name.clone(),
            node_uid: claim.spec.node_uid.clone(),
            released_at: claim.spec.released_at.as_ref().map(|t| t.0),
        })
    }

    /// Held by this incarnation of the node and not released.
    pub fn live_for(&self, node: &str, uid: &str) -> bool {
        self.node_name == node && self.node_uid == uid && self.released_at.is_none()
    }
}

/// Any text form of either family.
pub fn parse_cidr(text: &str) -> Option<IpNet> {
    weft_wire::parse_ipv6_prefix("cidr", text, 0..=128)
        .map(IpNet::V6)
        .or_else(|_| weft_wire::parse_ipv4_subnet("cidr", text, 0..=32).map(IpNet::V4))
        .ok()
}

#[derive(Debug, Default)]
struct Index {
    pool: Pool,
    claims: HashMap<String, Held>,
    by_node: HashMap<String, BTreeSet<String>>,
    /// A relist in progress: the objects listed so far.
    relist: Option<Vec<Held>>,
}

impl Index {
    fn insert(&mut self, held: Held) {
        self.pool.mark(held.cidr);
        self.by_node
            .entry(held.node_name.clone())
            .or_default()
            .insert(held.name.clone());
        if let Some(old) = self.claims.insert(held.name.clone(), held) {
            self.unlink(&old);
        }
    }

    fn remove(&mut self, name: &str) {
        if let Some(old) = self.claims.remove(name) {
            self.pool.unmark(old.cidr);
            self.unlink(&old);
        }
    }

    /// Drops `old` from the node index unless the current entry of its name is still there.
    fn unlink(&mut self, old: &Held) {
        if self
            .claims
            .get(&old.name)
            .is_some_and(|h| h.node_name == old.node_name)
        {
            return;
        }
        if let Some(names) = self.by_node.get_mut(&old.node_name) {
            names.remove(&old.name);
            if names.is_empty() {
                self.by_node.remove(&old.node_name);
            }
        }
    }
}

/// The claims seen (watch plus this process's own writes) and the allocator's pool,
/// behind one lock: a candidate is chosen and marked in one step.
#[derive(Debug)]
pub struct Ledger {
    index: Mutex<Index>,
    ready: watch::Sender<bool>,
}

impl Default for Ledger {
    fn default() -> Ledger {
        Ledger {
            index: Mutex::default(),
            ready: watch::Sender::new(false),
        }
    }
}

impl Ledger {
    fn lock(&self) -> MutexGuard<'_, Index> {
        // A panic while holding the lock leaves a consistent index (each step is whole).
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the first complete list of claims.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Records a claim that exists.
    pub fn insert(&self, held: Held) {
        self.lock().insert(held);
    }

    /// Forgets a deleted claim.
    pub fn remove(&self, name: &str) {
        self.lock().remove(name);
    }

    /// The node's claims (every incarnation, released ones too).
    pub fn of_node(&self, node: &str) -> Vec<Held> {
        let index = self.lock();
        index
            .by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|name| index.claims.get(name).cloned())
            .collect()
    }

    /// The claims `pick` selects.
    pub fn select(&self, pick: impl Fn(&Held) -> bool) -> Vec<Held> {
        self.lock()
            .claims
            .values()
            .filter(|h| pick(h))
            .cloned()
            .collect()
    }

    /// Nodes holding at least one claim.
    #[cfg(test)]
    pub fn nodes(&self) -> Vec<String> {
        self.lock().by_node.keys().cloned().collect()
    }

    pub fn reserve_ipv6(
        &self,
        plan: &Plan,
        zone: Option<&str>,
    ) -> Result<(Ipv6Net, String), Exhausted> {
        let (net, range) = self.lock().pool.reserve_ipv6(plan, zone)?;
        Ok((net, range.range.to_string()))
    }

    pub fn reserve_ipv4(&self, plan: &Plan) -> Result<Ipv4Net, Exhausted> {
        self.lock().pool.reserve_ipv4(plan)
    }

    /// Reserves exactly `net` if no claim marks it.
    pub fn reserve_exact(&self, net: IpNet) -> bool {
        self.lock().pool.reserve_exact(net)
    }

    pub fn settle(&self, net: IpNet, held: bool) {
        self.lock().pool.settle(net, held);
    }

    /// Per IPv6 range of the plan, then the IPv4 network.
    pub fn usage(&self, plan: &Plan) -> (Vec<RangeUsage>, RangeUsage) {
        let index = self.lock();
        let v6 = plan
            .ipv6_ranges
            .iter()
            .map(|r| index.pool.ipv6_usage(r))
            .collect();
        (v6, index.pool.ipv4_usage(plan))
    }

    fn on_event(&self, event: watcher::Event<WeftClaim>) {
        let mut index = self.lock();
        match event {
            watcher::Event::Apply(c) => {
                if let Some(h) = Held::of(&c) {
                    index.insert(h);
                }
            }
            watcher::Event::Delete(c) => index.remove(&c.name_any()),
            watcher::Event::Init => index.relist = Some(Vec::new()),
            watcher::Event::InitApply(c) => {
                if let (Some(list), Some(h)) = (index.relist.as_mut(), Held::of(&c)) {
                    list.push(h);
                }
            }
            watcher::Event::InitDone => {
                let list = index.relist.take().unwrap_or_default();
                index.claims.clear();
                index.by_node.clear();
                index.pool.replace(list.iter().map(|h| h.cidr));
                for h in list {
                    index.insert(h);
                }
                drop(index);
                self.ready.send_replace(true);
            }
        }
    }
}

/// Feeds the ledger from a watch on every WeftClaim, until the process ends, and sends
/// the holder of each claim seen to `touched`, once the ledger has it: the Node
/// controller's trigger (one watch serves both, rather than a second one of its own).
pub async fn watch_claims(
    api: Api<WeftClaim>,
    ledger: &Ledger,
    touched: &UnboundedSender<ObjectRef<Node>>,
) {
    let events = watcher(api, watcher::Config::default()).default_backoff();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(e) => {
                let holder = match &e {
                    watcher::Event::Apply(c)
                    | watcher::Event::InitApply(c)
                    | watcher::Event::Delete(c) => Some(c.spec.node_name.clone()),
                    watcher::Event::Init | watcher::Event::InitDone => None,
                };
                ledger.on_event(e);
                if let Some(node) = holder {
                    let _ = touched.unbounded_send(ObjectRef::new(&node));
                }
            }
            Err(e) => warn!(error = %e, "WeftClaim watch"),
        }
    }
}

/// What a create found.
#[derive(Debug)]
pub enum Outcome {
    /// The claim is the node's: just created, or an earlier write of ours adopted.
    Mine(Held),
    /// Someone else holds the range.
    Taken,
}

/// Claims `net` (already reserved in the ledger) for the node. The create decides: on
/// "already exists" the existing claim is read, adopted when it is this node's (same UID,
/// not released), else left marked as taken.
pub async fn create(
    ctx: &Context,
    node: &Node,
    net: IpNet,
    from: &str,
) -> Result<Outcome, kube::Error> {
    let name = claim_name(net);
    let node_name = node.name_any();
    let node_uid = node.uid().unwrap_or_default();
    let mut claim = WeftClaim::new(
        &name,
        WeftClaimSpec {
            cidr: net.to_string(),
            from: from.to_owned(),
            node_name: node_name.clone(),
            node_uid: node_uid.clone(),
            released_at: None,
        },
    );
    // Label values are at most 63 characters; longer node names go by spec.nodeName.
    if node_name.len() <= 63 {
        claim
            .labels_mut()
            .insert(NODE_LABEL.into(), node_name.clone());
    }
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    let created = ctx.claims.create(&params, &claim).await;
    ctx.pacing.allocation_written(&node_name);
    match created {
        Ok(c) => {
            let held = Held::of(&c);
            ctx.ledger.settle(net, true);
            match held {
                Some(h) => {
                    ctx.ledger.insert(h.clone());
                    Ok(Outcome::Mine(h))
                }
                None => Ok(Outcome::Taken),
            }
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = ctx.claims.get_opt(&name).await;
            let held = match existing {
                Ok(Some(c)) => Held::of(&c),
                // Deleted in between: free again, the next round may take it.
                Ok(None) => {
                    ctx.ledger.settle(net, false);
                    return Ok(Outcome::Taken);
                }
                Err(e) => {
                    ctx.ledger.settle(net, true);
                    return Err(e);
                }
            };
            ctx.ledger.settle(net, true);
            match held {
                Some(h) if h.live_for(&node_name, &node_uid) => {
                    info!(node = %node_name, claim = %name, "adopted an earlier claim");
                    ctx.ledger.insert(h.clone());
                    Ok(Outcome::Mine(h))
                }
                Some(h) => {
                    ctx.ledger.insert(h);
                    Ok(Outcome::Taken)
                }
                None => Ok(Outcome::Taken),
            }
        }
        Err(e) => {
            // The create may still have happened; the watch will say so.
            ctx.ledger.settle(net, false);
            Err(e)
        }
    }
}

/// Marks a claim released now; it is deleted a cooldown later.
pub async fn release(ctx: &Context, held: &Held, why: &str) -> Result<(), kube::Error> {
    let patch = serde_json::json!({"spec": {"releasedAt": Time(Timestamp::now())}});
    let c = ctx
        .claims
        .patch(&held.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    info!(claim = %held.name, node = %held.node_name, why, "released");
    if let Some(h) = Held::of(&c) {
        ctx.ledger.insert(h);
    }
    Ok(())
}

/// Deletes a claim whose cooldown is over (only that object: the UID is a precondition).
async fn delete(ctx: &Context, held: &Held) -> Result<(), kube::Error> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(held.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match ctx.claims.delete(&held.name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => return Err(e),
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

async fn sweep(ctx: &Context) {
    let cooldown = ctx.cooldown();
    let now = Timestamp::now();
    let mut freed = false;
    let actionable = ctx
        .ledger
        .select(|h| h.released_at.is_some() || !node_cached(ctx, &h.node_name, &h.node_uid));
    for held in actionable {
        let outcome = match held.released_at {
            None => match node_exists(ctx, &held.node_name, &held.node_uid).await {
                Ok(false) => release(ctx, &held, "node gone").await,
                Ok(true) => Ok(()),
                Err(e) => Err(e),
            },
            Some(at) if cooldown_left(at.into(), cooldown, now.into()).is_zero() => {
                freed = true;
                delete(ctx, &held).await
            }
            Some(_) => Ok(()),
        };
        if let Err(e) = outcome {
            warn!(claim = %held.name, error = %e, "release");
        }
    }
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

#[cfg(test)]
#[path = "tests/claims.rs"]
mod tests;
