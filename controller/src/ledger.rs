//! The [`Ledger`]: every claim seen (the `WeftClaimBlock` watch, plus this process's own
//! writes), indexed by node, and the allocator's pool, behind one lock so a candidate is
//! chosen and marked in one step.

use crate::allocator::{Exhausted, Pool};
use crate::shared::{lock, parse_cidr};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher;
use kube::ResourceExt;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::watch;
use tracing::warn;
use weft_api::{
    block_name, block_of, claim_name, BlockClaim, Plan, RangeUsage, WeftClaimBlock, BLOCK_BITS,
};

/// What the controller needs of a claim.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    /// The range's canonical name (`weft_api::claim_name`): the ledger's key.
    pub name: String,
    pub cidr: IpNet,
    pub node_name: String,
    pub node_uid: String,
    pub released_at: Option<Timestamp>,
    /// The `WeftClaimBlock` holding the claim.
    pub block: String,
}

impl Held {
    fn new(cidr: IpNet, claim: &BlockClaim, block: String) -> Held {
        Held {
            name: claim_name(cidr),
            cidr,
            node_name: claim.node_name.clone(),
            node_uid: claim.node_uid.clone(),
            released_at: claim.released_at.as_ref().map(|t| t.0),
            block,
        }
    }

    /// The block's entries, each once. A block not named after its CIDR, or an entry
    /// outside it or of another length, is ignored (only the canonical object of a
    /// range's block proves the range unique).
    pub fn of_block(block: &WeftClaimBlock) -> Vec<Held> {
        let name = block.name_any();
        let len = block.spec.range_length;
        let canonical = parse_cidr(&block.spec.cidr).is_some_and(|b| {
            b.prefix_len() == len.saturating_sub(BLOCK_BITS) && block_name(b, len) == name
        });
        if !canonical {
            warn!(block = %name, cidr = %block.spec.cidr, "ignoring a claim block not named after its CIDR");
            return Vec::new();
        }
        let mut seen = HashSet::new();
        block
            .spec
            .claims
            .iter()
            .filter_map(|entry| {
                let cidr = parse_cidr(&entry.cidr)
                    .filter(|c| c.prefix_len() == len && block_of(*c).1 == name)?;
                seen.insert(cidr)
                    .then(|| Held::new(cidr, entry, name.clone()))
            })
            .collect()
    }

    /// Held by this incarnation of the node and not released.
    pub fn live_for(&self, node: &str, uid: &str) -> bool {
        self.node_name == node && self.node_uid == uid && self.released_at.is_none()
    }
}

/// The block's resourceVersion as a number, to drop a watch event older than a write
/// this process already applied (the apiserver's versions are etcd revisions).
fn version(block: &WeftClaimBlock) -> Option<u64> {
    block.resource_version()?.parse().ok()
}

#[derive(Debug, Default)]
struct Index {
    pool: Pool,
    claims: HashMap<String, Held>,
    by_node: HashMap<String, BTreeSet<String>>,
    /// Per block: its version and the claim names it holds.
    blocks: HashMap<String, (Option<u64>, Vec<String>)>,
    /// A relist in progress: the blocks listed so far.
    relist: Option<Vec<WeftClaimBlock>>,
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

    /// Replaces what the ledger knows of one block (`deleted`: that it is gone), unless
    /// `block` is older than what it has. Returns the claims that changed: holder and range.
    fn apply_block(&mut self, block: &WeftClaimBlock, deleted: bool) -> Vec<(String, IpNet)> {
        let name = block.name_any();
        let new_version = version(block);
        if let (Some((Some(have), _)), Some(new)) = (self.blocks.get(&name), new_version) {
            if new < *have || (new == *have && !deleted) {
                return Vec::new();
            }
        }
        let held = if deleted {
            Vec::new()
        } else {
            Held::of_block(block)
        };
        // A deleted block leaves its version behind, so a late event cannot revive it.
        let names = held.iter().map(|h| h.name.clone()).collect();
        let old = self.blocks.insert(name.clone(), (new_version, names));
        let mut touched = Vec::new();
        for old_name in old.map(|(_, names)| names).unwrap_or_default() {
            let Some(was) = self.claims.get(&old_name).cloned() else {
                continue;
            };
            if was.block == name && !held.iter().any(|h| h.name == old_name) {
                self.remove(&old_name);
                touched.push((was.node_name, was.cidr));
            }
        }
        for h in held {
            if self.claims.get(&h.name) != Some(&h) {
                touched.push((h.node_name.clone(), h.cidr));
                self.insert(h);
            }
        }
        touched
    }

    /// A relist is complete: the claims are exactly `listed`.
    fn replace(&mut self, listed: Vec<Held>) {
        self.claims.clear();
        self.by_node.clear();
        self.pool.replace(listed.iter().map(|h| h.cidr));
        for h in listed {
            self.insert(h);
        }
    }
}

/// The claims seen and the allocator's pool. See the module documentation.
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
        lock(&self.index)
    }

    /// Waits for the first complete list of claim blocks.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Records a block as written (or `deleted`) by this process; returns the claims
    /// that changed.
    pub fn apply_block(&self, block: &WeftClaimBlock, deleted: bool) -> Vec<(String, IpNet)> {
        self.lock().apply_block(block, deleted)
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

    /// Follows the `WeftClaimBlock` watch; returns the claims that changed (holder and
    /// range; no range: reconcile the holder whatever changed).
    pub fn on_block_event(
        &self,
        event: watcher::Event<WeftClaimBlock>,
    ) -> Vec<(String, Option<IpNet>)> {
        let changed = |c: Vec<(String, IpNet)>| c.into_iter().map(|(n, r)| (n, Some(r))).collect();
        let mut index = self.lock();
        match event {
            watcher::Event::Apply(b) => changed(index.apply_block(&b, false)),
            watcher::Event::Delete(b) => changed(index.apply_block(&b, true)),
            watcher::Event::Init => {
                index.relist = Some(Vec::new());
                Vec::new()
            }
            watcher::Event::InitApply(b) => {
                let holders = b
                    .spec
                    .claims
                    .iter()
                    .map(|c| (c.node_name.clone(), None))
                    .collect();
                if let Some(list) = index.relist.as_mut() {
                    list.push(b);
                }
                holders
            }
            watcher::Event::InitDone => {
                let listed = index.relist.take().unwrap_or_default();
                let mut held = Vec::new();
                index.blocks = listed
                    .iter()
                    .map(|b| {
                        let entries = Held::of_block(b);
                        let names = entries.iter().map(|h| h.name.clone()).collect();
                        held.extend(entries);
                        (b.name_any(), (version(b), names))
                    })
                    .collect();
                index.replace(held);
                drop(index);
                self.ready.send_replace(true);
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
#[path = "tests/ledger.rs"]
mod tests;
