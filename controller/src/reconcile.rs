//! The Node reconciler, controller-rs style: [`reconcile`] and [`error_policy`] over the
//! shared [`Context`]; `reconcile` reads the Node into a [`NodeView`] and delegates to
//! its methods, one per phase, each handed only the handles it uses.
//!
//! One reconcile brings one Node to:
//!
//! 1. exactly one live claim per family its network's mode serves, reusing the node's
//!    existing claims, adopting its own earlier writes, releasing duplicates
//!    ([`NodeView::claim_ranges`]);
//! 2. its WeftNode naming them (server-side apply, field manager `weft-controller`, so
//!    weftd's fields are never touched; [`NodeView::name_ranges`]);
//! 3. `spec.podCIDRs` set when empty, and the `Allocated` and `PodCIDRs` conditions
//!    ([`NodeView::report`]).
//!
//! Writes happen only when something differs, so a resync of an allocated node costs no
//! apiserver call. A missing or invalid network stops at step 1
//! ([`NodeView::wait_for_network`]).

use crate::allocator::Exhausted;
use crate::claims::{Claims, Outcome};
use crate::context::Context;
use crate::ledger::Held;
use crate::pacing::{Pacing, MAX_DEFER};
use crate::shared::{family_of, owned_by, parse_cidr, Error, Waiting, ZONE_LABEL};
use crate::stores::Stores;
use crate::waitlist::Waitlist;
use crate::writes::Writes;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};
use weft_api::{condition, conditions_differ, Plan, WeftNode, WeftNodeSpec};
use weft_wire::Family;

/// Candidates tried in one reconcile before giving the others a turn.
const MAX_CANDIDATES: usize = 64;
/// Safety-net resync of a settled node (watches trigger everything that matters).
const RESYNC: Duration = Duration::from_secs(600);

/// Brings one Node to its allocation, in its turn.
///
/// kube-runtime's runner, when all its workers are busy, takes the next object from a
/// hash set: during a burst of joining nodes it served them in hash order, and 1% of
/// 5,000 waited 21 s where the median waited 0.35 s. So the runner is left unbounded and
/// reconciles wait here for one of `--workers` turns, in the order they were triggered
/// (tokio's semaphore is fair). Until its turn a reconcile holds only the Node and the
/// context: the work itself is boxed, sized when it starts.
pub async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _turn = ctx.turn().await;
    Box::pin(async {
        let _timer = ctx.metrics.reconcile_duration.start_timer();
        // The Node as it is now, after the wait for a turn.
        match NodeView::read(&node.name_any(), &ctx.stores) {
            Some(view) => view.reconcile(&ctx).await,
            None => Ok(Action::await_change()),
        }
    })
    .await
}

/// Counts the error under its metric label and requeues.
pub fn error_policy(node: Arc<Node>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[error.metric_label()])
        .inc();
    if error.is_waiting() {
        debug!(node = %node.name_any(), error = %error, "waiting");
    } else {
        warn!(node = %node.name_any(), error = %error, "reconcile failed");
    }
    Action::requeue(error.retry_after())
}

/// The claim, if any, per family.
#[derive(Debug, Default)]
struct Ranges {
    ipv6: Option<Held>,
    ipv4: Option<Held>,
}

impl Ranges {
    fn get(&self, family: Family) -> Option<&Held> {
        match family {
            Family::Ipv6 => self.ipv6.as_ref(),
            Family::Ipv4 => self.ipv4.as_ref(),
        }
    }

    fn set(&mut self, family: Family, held: Option<Held>) {
        match family {
            Family::Ipv6 => self.ipv6 = held,
            Family::Ipv4 => self.ipv4 = held,
        }
    }
}

/// The range of `family` a WeftNode names.
fn named(wn: Option<&WeftNode>, family: Family) -> Option<IpNet> {
    let text = wn?.spec.range(family)?;
    parse_cidr(text).filter(|n| family_of(*n) == family)
}

/// Of several live claims of one family (a race, or a write cut short), the node keeps
/// the one its WeftNode names, else the lowest; the others are returned for release.
pub fn keeper(mut mine: Vec<Held>, named: Option<IpNet>) -> (Held, Vec<Held>) {
    mine.sort_by_key(|h| h.cidr);
    let at = mine.iter().position(|h| Some(h.cidr) == named).unwrap_or(0);
    let keep = mine.remove(at);
    (keep, mine)
}

/// The plan's range (or IPv4 network) holding `net`.
fn origin(plan: &Plan, net: IpNet) -> Option<String> {
    match net {
        IpNet::V6(n) => plan
            .ipv6_ranges
            .iter()
            .find(|r| r.range.contains(&n) && n.prefix_len() == r.prefix_length)
            .map(|r| r.range.to_string()),
        IpNet::V4(n) => (plan.ipv4_network.contains(&n)
            && n.prefix_len() == plan.ipv4_subnet_length)
            .then(|| plan.ipv4_network.to_string()),
    }
}

/// Whether writing `wanted` over `previous` only reports success: every wanted
/// condition is `True` and none of them replaces a `False`.
fn only_good_news(previous: &[Condition], wanted: &[Condition]) -> bool {
    wanted.iter().all(|c| {
        c.status == "True"
            && !previous
                .iter()
                .any(|p| p.type_ == c.type_ && p.status == "False")
    })
}

/// One Node as its reconcile found it.
struct NodeView {
    name: String,
    uid: String,
    node: Arc<Node>,
    /// The WeftNode as it is: the base of our writes.
    current: Option<Arc<WeftNode>>,
    /// `current`, if it belongs to this incarnation of the node.
    weftnode: Option<Arc<WeftNode>>,
}

impl NodeView {
    /// The Node and its WeftNode as the stores (or our fresher writes) have them; None
    /// for a Node gone or going.
    fn read(name: &str, stores: &Stores) -> Option<NodeView> {
        let node = stores.node(name)?;
        let uid = node.uid()?;
        if node.meta().deletion_timestamp.is_some() {
            return None;
        }
        let current = stores.weftnode(name);
        let weftnode = current.clone().filter(|wn| owned_by(wn, &uid));
        Some(NodeView {
            name: name.to_owned(),
            uid,
            node,
            current,
            weftnode,
        })
    }

    /// The three phases (see the module documentation).
    async fn reconcile(&self, ctx: &Context) -> Result<Action, Error> {
        let plan = match ctx.stores.plan() {
            Ok(plan) => plan,
            Err(e) => return self.wait_for_network(e, &ctx.writes, &ctx.waitlist).await,
        };
        let (ranges, exhausted) = self
            .claim_ranges(&plan, &ctx.claims, &ctx.pacing, &ctx.writes)
            .await?;
        self.name_ranges(&ranges, &ctx.writes).await?;
        let previous = self.previous_conditions();
        let (result, conditions) = match exhausted {
            None => {
                let ready = self
                    .allocated(&plan, &ranges, &previous, &ctx.writes)
                    .await?;
                ctx.waitlist.wait(&self.name, None);
                if self.holds_good_news(&previous, &ready, &ctx.pacing) {
                    return Ok(Action::requeue(MAX_DEFER));
                }
                (Ok(Action::requeue(RESYNC)), ready)
            }
            Some(e) => self.exhausted(&e, &previous, &ctx.waitlist),
        };
        ctx.writes
            .conditions(&self.node, &previous, conditions)
            .await?;
        result
    }

    /// The node's zone, if its label names one.
    fn zone(&self) -> Option<&str> {
        self.node
            .labels()
            .get(ZONE_LABEL)
            .map(String::as_str)
            .filter(|z| !z.is_empty())
    }

    /// The conditions this incarnation's WeftNode carries.
    fn previous_conditions(&self) -> Vec<Condition> {
        self.weftnode
            .as_deref()
            .and_then(|wn| wn.status.as_ref())
            .map(|s| s.conditions.clone())
            .unwrap_or_default()
    }

    /// The network is missing or invalid: a node allocated earlier keeps its ranges; one
    /// that has none is told why it waits.
    async fn wait_for_network(
        &self,
        error: Error,
        writes: &Writes,
        waitlist: &Waitlist,
    ) -> Result<Action, Error> {
        let allocated = self
            .weftnode
            .as_deref()
            .is_some_and(|wn| wn.spec.ipv6_prefix.is_some() || wn.spec.ipv4_subnet.is_some());
        if allocated {
            return Ok(Action::await_change());
        }
        if self.weftnode.is_none() {
            let spec = WeftNodeSpec {
                node_name: self.name.clone(),
                zone: self.node.labels().get(ZONE_LABEL).cloned(),
                ..WeftNodeSpec::default()
            };
            writes
                .apply_weftnode(&self.node, self.current.as_deref(), spec)
                .await?;
        }
        let previous = self.previous_conditions();
        let reason = error.metric_label();
        let message = error.to_string();
        let c = condition(&previous, "Allocated", false, reason, message.clone());
        writes.conditions(&self.node, &previous, vec![c]).await?;
        waitlist.wait(&self.name, Some(Waiting { reason, message }));
        Err(error)
    }

    /// Phase 1: one claim per served family. Exhaustion of a family is returned, not an
    /// error: the other family's claim and the WeftNode are still written.
    async fn claim_ranges(
        &self,
        plan: &Plan,
        claims: &Claims,
        pacing: &Pacing,
        writes: &Writes,
    ) -> Result<(Ranges, Option<Exhausted>), Error> {
        let live: Vec<Held> = claims
            .ledger()
            .of_node(&self.name)
            .into_iter()
            .filter(|h| h.live_for(&self.name, &self.uid))
            .collect();
        let mut ranges = Ranges::default();
        let mut exhausted = None;
        for family in plan.mode.families() {
            let mine: Vec<Held> = live
                .iter()
                .filter(|h| family_of(h.cidr) == family)
                .cloned()
                .collect();
            let held = if mine.is_empty() {
                let wanted = named(self.weftnode.as_deref(), family);
                match self.allocate(plan, family, wanted, claims, pacing).await? {
                    Ok(held) => Some(held),
                    Err(e) => {
                        exhausted.get_or_insert(e);
                        None
                    }
                }
            } else {
                Some(self.keep_one(family, mine, claims, writes).await?)
            };
            ranges.set(family, held);
        }
        Ok((ranges, exhausted))
    }

    /// Keeps one of the node's live claims of `family`, releasing the others.
    async fn keep_one(
        &self,
        family: Family,
        mine: Vec<Held>,
        claims: &Claims,
        writes: &Writes,
    ) -> Result<Held, Error> {
        // Several live claims (controllers raced): the WeftNode as the apiserver has it
        // now decides, never a cache. It only changes under a resourceVersion
        // precondition (see `Writes::apply_weftnode`), so the claim it names cannot be
        // released here while another writer makes it name a different one.
        let wanted = if mine.len() > 1 {
            let fresh = writes.read_weftnode(&self.name).await?;
            named(fresh.as_ref().filter(|wn| owned_by(wn, &self.uid)), family)
        } else {
            named(self.weftnode.as_deref(), family)
        };
        let (keep, extras) = keeper(mine, wanted);
        for extra in &extras {
            claims
                .release(extra, "duplicate claim of the node")
                .await
                .map_err(Error::ClaimWrite)?;
        }
        Ok(keep)
    }

    /// Claims a range of `family` for the node: the one its WeftNode already names
    /// (`wanted`) if that is still free (weftd may serve pods from it), else the lowest
    /// free candidate. The inner error is exhaustion, which the caller reports.
    async fn allocate(
        &self,
        plan: &Plan,
        family: Family,
        wanted: Option<IpNet>,
        claims: &Claims,
        pacing: &Pacing,
    ) -> Result<Result<Held, Exhausted>, Error> {
        if let Some(net) = wanted {
            if let Some(from) = origin(plan, net) {
                if claims.ledger().reserve_exact(net) {
                    if let Outcome::Mine(held) = self.claim(net, &from, claims, pacing).await? {
                        return Ok(Ok(held));
                    }
                }
            }
        }
        let ledger = claims.ledger();
        for _ in 0..MAX_CANDIDATES {
            let reserved = match family {
                Family::Ipv6 => ledger
                    .reserve_ipv6(plan, self.zone())
                    .map(|(net, from)| (IpNet::V6(net), from)),
                Family::Ipv4 => ledger
                    .reserve_ipv4(plan)
                    .map(|net| (IpNet::V4(net), plan.ipv4_network.to_string())),
            };
            let (net, from) = match reserved {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            match self.claim(net, &from, claims, pacing).await? {
                Outcome::Mine(held) => return Ok(Ok(held)),
                Outcome::Taken => {
                    debug!(node = %self.name, %net, "candidate held by another node")
                }
            }
        }
        Err(Error::Contention(MAX_CANDIDATES))
    }

    /// Claims a reserved candidate; the write counts as an allocation for pacing.
    async fn claim(
        &self,
        net: IpNet,
        from: &str,
        claims: &Claims,
        pacing: &Pacing,
    ) -> Result<Outcome, Error> {
        let outcome = claims.claim(&self.node, net, from).await;
        pacing.allocation_written(&self.name);
        outcome.map_err(Error::ClaimWrite)
    }

    /// Phase 2: the WeftNode names the claimed ranges. The zone is the one the WeftNode
    /// gave with its prefix while the prefix stays: pods use it.
    async fn name_ranges(&self, ranges: &Ranges, writes: &Writes) -> Result<(), Error> {
        let prefix = ranges.ipv6.as_ref().map(|h| h.cidr);
        let zone = match self.weftnode.as_deref() {
            Some(wn) if prefix.is_some() && prefix == named(Some(wn), Family::Ipv6) => {
                wn.spec.zone.clone()
            }
            _ => self.zone().map(str::to_owned),
        };
        let spec = WeftNodeSpec {
            node_name: self.name.clone(),
            zone,
            ipv6_prefix: prefix.map(|n| n.to_string()),
            ipv4_subnet: ranges.ipv4.as_ref().map(|h| h.cidr.to_string()),
            ..WeftNodeSpec::default()
        };
        writes
            .apply_weftnode(&self.node, self.current.as_deref(), spec)
            .await
    }

    /// Phase 3, every family claimed: podCIDRs (only complete: they cannot change once
    /// set) and the conditions saying so.
    async fn allocated(
        &self,
        plan: &Plan,
        ranges: &Ranges,
        previous: &[Condition],
        writes: &Writes,
    ) -> Result<Vec<Condition>, Error> {
        let cidrs: Vec<IpNet> = plan
            .mode
            .families()
            .filter_map(|f| ranges.get(f).map(|h| h.cidr))
            .collect();
        let text = cidrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let allocated = condition(previous, "Allocated", true, "Allocated", text);
        let pod_cidrs = writes.pod_cidrs(&self.node, &cidrs, previous).await?;
        Ok(vec![allocated, pod_cidrs])
    }

    /// Good news waits while other nodes' ranges are being written (pacing.rs); the
    /// nudger, or at worst the requeue after [`MAX_DEFER`], brings the node back.
    fn holds_good_news(
        &self,
        previous: &[Condition],
        wanted: &[Condition],
        pacing: &Pacing,
    ) -> bool {
        conditions_differ(previous, wanted)
            && only_good_news(previous, wanted)
            && !pacing.may_write(&self.name)
    }

    /// Phase 3, a family exhausted: the condition and the waitlist say so.
    fn exhausted(
        &self,
        e: &Exhausted,
        previous: &[Condition],
        waitlist: &Waitlist,
    ) -> (Result<Action, Error>, Vec<Condition>) {
        let message = e.to_string();
        let reason = "RangeExhausted";
        let c = condition(previous, "Allocated", false, reason, message.clone());
        waitlist.wait(
            &self.name,
            Some(Waiting {
                reason,
                message: message.clone(),
            }),
        );
        (Err(Error::RangeExhausted(message)), vec![c])
    }
}

#[cfg(test)]
#[path = "tests/reconcile.rs"]
mod tests;
