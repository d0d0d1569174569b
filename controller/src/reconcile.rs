//! The Node reconciler, controller-rs style: [`reconcile`] and [`error_policy`] over a
//! shared [`Context`] (context.rs), with typed errors whose variant names are the
//! metric labels.
//!
//! One reconcile brings one Node to: exactly one live claim per family its network's
//! mode serves (reusing the node's existing claims, adopting its own earlier writes,
//! releasing duplicates), its WeftNode naming them (server-side apply, field manager
//! `weft-controller`, so weftd's fields are never touched), `spec.podCIDRs` set when
//! empty, and the `Allocated` and `PodCIDRs` conditions. Writes happen only when
//! something differs, so a resync of an allocated node costs no apiserver call.

use crate::allocator::Exhausted;
use crate::claims::{self, Outcome};
use crate::context::{Context, Waiting};
use crate::ledger::{self, Held};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};
use weft_api::{condition, conditions_differ, Plan, WeftNode, WeftNodeSpec};
use weft_wire::Family;

/// The field manager of every write, and the Events' reporting controller.
pub const MANAGER: &str = "weft-controller";
/// The Node label naming its zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Candidates tried in one reconcile before giving the others a turn.
const MAX_CANDIDATES: usize = 64;
/// Safety-net resync of a settled node (watches trigger everything that matters).
const RESYNC: Duration = Duration::from_secs(600);

/// A reconcile that did not settle its node. The variant name is the `error` label of
/// `weft_controller_reconcile_errors_total`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("WeftNetwork {0} does not exist")]
    NetworkMissing(String),
    #[error("WeftNetwork {name} is invalid: {problems}")]
    InvalidNetwork { name: String, problems: String },
    #[error("{0}")]
    RangeExhausted(String),
    #[error("{0} candidates in a row were held by others")]
    Contention(usize),
    #[error("writing a claim: {0}")]
    ClaimWrite(#[source] Arc<kube::Error>),
    #[error("writing the WeftNode: {0}")]
    WeftNodeWrite(#[source] kube::Error),
    #[error("the WeftNode changed since it was read; retrying with what it says now")]
    WeftNodeChanged,
    #[error("writing the Node's podCIDRs: {0}")]
    NodeWrite(#[source] kube::Error),
}

impl Error {
    /// The metric label: the variant's name.
    pub fn label(&self) -> &'static str {
        match self {
            Error::NetworkMissing(_) => "NetworkMissing",
            Error::InvalidNetwork { .. } => "InvalidNetwork",
            Error::RangeExhausted(_) => "RangeExhausted",
            Error::Contention(_) => "Contention",
            Error::ClaimWrite(_) => "ClaimWrite",
            Error::WeftNodeWrite(_) => "WeftNodeWrite",
            Error::WeftNodeChanged => "WeftNodeChanged",
            Error::NodeWrite(_) => "NodeWrite",
        }
    }

    fn retry_after(&self) -> Duration {
        match self {
            // The network watch and freed claims re-trigger these at once; the requeue is
            // a safety net.
            Error::NetworkMissing(_) | Error::InvalidNetwork { .. } => Duration::from_secs(30),
            Error::RangeExhausted(_) => Duration::from_secs(15),
            Error::Contention(_) | Error::WeftNodeChanged => Duration::from_millis(200),
            _ => Duration::from_secs(2),
        }
    }
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

fn family_of(net: IpNet) -> Family {
    match net {
        IpNet::V6(_) => Family::Ipv6,
        IpNet::V4(_) => Family::Ipv4,
    }
}

/// The ranges a WeftNode of this node incarnation names.
fn named(wn: Option<&WeftNode>, family: Family) -> Option<IpNet> {
    let text = wn?.spec.range(family)?;
    ledger::parse_cidr(text).filter(|n| family_of(*n) == family)
}

pub fn owned_by(wn: &WeftNode, uid: &str) -> bool {
    wn.owner_references()
        .iter()
        .any(|o| o.kind == "Node" && o.uid == uid)
}

/// Of several live claims of one family (a race, or a write cut short), the node keeps
/// the one its WeftNode names, else the lowest; the others are returned for release.
pub fn keeper(mut mine: Vec<Held>, named: Option<IpNet>) -> (Held, Vec<Held>) {
    mine.sort_by_key(|h| h.cidr);
    let at = mine.iter().position(|h| Some(h.cidr) == named).unwrap_or(0);
    let keep = mine.remove(at);
    (keep, mine)
}

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
    Box::pin(settle(node.name_any(), ctx.clone())).await
}

/// See the module documentation.
async fn settle(name: String, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_duration.start_timer();
    // The Node as it is now, after the wait for a turn.
    let Some(node) = ctx.nodes.get(&ObjectRef::new(&name)) else {
        return Ok(Action::await_change());
    };
    let Some(uid) = node.uid() else {
        return Ok(Action::await_change());
    };
    if node.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let node = ctx
        .fresh_nodes
        .view(&name, Some(node.clone()))
        .unwrap_or(node);
    // The WeftNode as it is, and as far as it belongs to this incarnation of the node.
    let current = ctx.weftnode(&name);
    let weftnode = current.clone().filter(|wn| owned_by(wn, &uid));
    let plan = match ctx.plan() {
        Ok(plan) => plan,
        Err(e) => return wait_for_network(&node, current.as_deref(), &ctx, e).await,
    };
    let zone = node
        .labels()
        .get(ZONE_LABEL)
        .map(String::as_str)
        .filter(|z| !z.is_empty());
    let live: Vec<Held> = ctx
        .ledger
        .of_node(&name)
        .into_iter()
        .filter(|h| h.live_for(&name, &uid))
        .collect();

    // 1. One claim per served family.
    let mut ranges = Ranges::default();
    let mut exhausted: Option<Exhausted> = None;
    for family in plan.mode.families() {
        let wanted = named(weftnode.as_deref(), family);
        let mine: Vec<Held> = live
            .iter()
            .filter(|h| family_of(h.cidr) == family)
            .cloned()
            .collect();
        // Several live claims (controllers raced): the WeftNode as the apiserver has it
        // now decides, never a cache. It only changes under a resourceVersion
        // precondition (see `apply_weftnode`), so the claim it names cannot be released
        // here while another writer makes it name a different one.
        let wanted = if mine.len() > 1 {
            let fresh = ctx
                .weftnode_api
                .get_opt(&name)
                .await
                .map_err(Error::WeftNodeWrite)?;
            named(fresh.as_ref().filter(|wn| owned_by(wn, &uid)), family)
        } else {
            wanted
        };
        let held = if mine.is_empty() {
            match allocate(&ctx, &plan, &node, zone, family, wanted).await? {
                Ok(held) => Some(held),
                Err(e) => {
                    exhausted.get_or_insert(e);
                    None
                }
            }
        } else {
            let (keep, extras) = keeper(mine, wanted);
            for extra in &extras {
                claims::release(&ctx, extra, "duplicate claim of the node")
                    .await
                    .map_err(Error::ClaimWrite)?;
            }
            Some(keep)
        };
        ranges.set(family, held);
    }

    // 2. The WeftNode names them.
    let prefix = ranges.ipv6.as_ref().map(|h| h.cidr);
    let spec = WeftNodeSpec {
        node_name: name.clone(),
        zone: match weftnode.as_deref() {
            Some(wn) if prefix.is_some() && prefix == named(Some(wn), Family::Ipv6) => {
                wn.spec.zone.clone()
            }
            _ => zone.map(str::to_owned),
        },
        ipv6_prefix: prefix.map(|n| n.to_string()),
        ipv4_subnet: ranges.ipv4.as_ref().map(|h| h.cidr.to_string()),
        ..WeftNodeSpec::default()
    };
    apply_weftnode(&ctx, &node, current.as_deref(), spec).await?;

    // 3. podCIDRs (only complete: they cannot change once set) and the conditions.
    let previous = weftnode
        .as_deref()
        .and_then(|wn| wn.status.as_ref())
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut conditions = Vec::new();
    let result = match &exhausted {
        None => {
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
            conditions.push(condition(&previous, "Allocated", true, "Allocated", text));
            conditions.push(pod_cidrs(&ctx, &node, &cidrs, &previous).await?);
            ctx.wait(&name, None);
            // Good news waits while other nodes' ranges are being written (pacing.rs);
            // the nudger, or at worst this requeue, brings the node back.
            if conditions_differ(&previous, &conditions)
                && only_good_news(&previous, &conditions)
                && !ctx.pacing.may_write(&name)
            {
                return Ok(Action::requeue(crate::pacing::MAX_DEFER));
            }
            Ok(Action::requeue(RESYNC))
        }
        Some(e) => {
            let message = e.to_string();
            conditions.push(condition(
                &previous,
                "Allocated",
                false,
                "RangeExhausted",
                message.clone(),
            ));
            ctx.wait(
                &name,
                Some(Waiting {
                    reason: "RangeExhausted",
                    message: message.clone(),
                }),
            );
            Err(Error::RangeExhausted(message))
        }
    };
    write_conditions(&ctx, &node, &previous, conditions).await?;
    result
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

/// The network is missing or invalid: a node allocated earlier keeps its ranges; one
/// that has none is told why it waits.
async fn wait_for_network(
    node: &Node,
    current: Option<&WeftNode>,
    ctx: &Context,
    error: Error,
) -> Result<Action, Error> {
    let uid = node.uid().unwrap_or_default();
    let weftnode = current.filter(|wn| owned_by(wn, &uid));
    let allocated =
        weftnode.is_some_and(|wn| wn.spec.ipv6_prefix.is_some() || wn.spec.ipv4_subnet.is_some());
    if allocated {
        return Ok(Action::await_change());
    }
    let name = node.name_any();
    if weftnode.is_none() {
        let spec = WeftNodeSpec {
            node_name: name.clone(),
            zone: node.labels().get(ZONE_LABEL).cloned(),
            ..WeftNodeSpec::default()
        };
        apply_weftnode(ctx, node, current, spec).await?;
    }
    let previous = weftnode
        .and_then(|wn| wn.status.as_ref())
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let message = error.to_string();
    let c = condition(
        &previous,
        "Allocated",
        false,
        error.label(),
        message.clone(),
    );
    write_conditions(ctx, node, &previous, vec![c]).await?;
    ctx.wait(
        &name,
        Some(Waiting {
            reason: error.label(),
            message,
        }),
    );
    Err(error)
}

/// Claims a range of `family` for the node: the one its WeftNode already names if that
/// is still free (weftd may serve pods from it), else the lowest free candidate. The
/// inner error is exhaustion, which the caller reports.
async fn allocate(
    ctx: &Context,
    plan: &Plan,
    node: &Node,
    zone: Option<&str>,
    family: Family,
    wanted: Option<IpNet>,
) -> Result<Result<Held, Exhausted>, Error> {
    if let Some(net) = wanted {
        if let Some(from) = origin(plan, net) {
            if ctx.ledger.reserve_exact(net) {
                let outcome = claims::create(ctx, node, net, &from)
                    .await
                    .map_err(Error::ClaimWrite)?;
                if let Outcome::Mine(held) = outcome {
                    return Ok(Ok(held));
                }
            }
        }
    }
    for _ in 0..MAX_CANDIDATES {
        let reserved = match family {
            Family::Ipv6 => ctx
                .ledger
                .reserve_ipv6(plan, zone)
                .map(|(net, from)| (IpNet::V6(net), from)),
            Family::Ipv4 => ctx
                .ledger
                .reserve_ipv4(plan)
                .map(|net| (IpNet::V4(net), plan.ipv4_network.to_string())),
        };
        let (net, from) = match reserved {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let outcome = claims::create(ctx, node, net, &from)
            .await
            .map_err(Error::ClaimWrite)?;
        match outcome {
            Outcome::Mine(held) => return Ok(Ok(held)),
            Outcome::Taken => {
                debug!(node = %node.name_any(), %net, "candidate held by another node")
            }
        }
    }
    Err(Error::Contention(MAX_CANDIDATES))
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

/// Server-side applies the controller's fields of the WeftNode when they differ.
async fn apply_weftnode(
    ctx: &Context,
    node: &Node,
    current: Option<&WeftNode>,
    spec: WeftNodeSpec,
) -> Result<(), Error> {
    let uid = node.uid().unwrap_or_default();
    let same = current.is_some_and(|wn| {
        owned_by(wn, &uid)
            && wn.spec.node_name == spec.node_name
            && wn.spec.zone == spec.zone
            && wn.spec.ipv6_prefix == spec.ipv6_prefix
            && wn.spec.ipv4_subnet == spec.ipv4_subnet
    });
    if same {
        return Ok(());
    }
    let name = node.name_any();
    let mut wn = WeftNode::new(&name, spec);
    wn.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: name.clone(),
        uid,
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    // The ranges are committed first-writer-wins: a WeftNode that exists is written only
    // if it is still the version this reconcile read (a racing controller, or weftd
    // publishing meanwhile, makes this one retry on the new content); one that does not
    // exist is created, not applied, so of two creators one fails.
    let written = match current {
        Some(seen) => {
            wn.metadata.resource_version = seen.resource_version();
            ctx.weftnode_api
                .patch(
                    &name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&wn),
                )
                .await
        }
        None => {
            let params = kube::api::PostParams {
                field_manager: Some(MANAGER.into()),
                ..kube::api::PostParams::default()
            };
            ctx.weftnode_api.create(&params, &wn).await
        }
    };
    ctx.pacing.allocation_written(&name);
    let written = match written {
        Ok(w) => w,
        Err(kube::Error::Api(s)) if s.code == 409 => return Err(Error::WeftNodeChanged),
        Err(e) => return Err(Error::WeftNodeWrite(e)),
    };
    ctx.fresh_weftnodes.record(&name, current, written);
    Ok(())
}

/// Sets `spec.podCIDRs` (and `podCIDR`) when empty; never overwrites. Returns the
/// `PodCIDRs` condition.
async fn pod_cidrs(
    ctx: &Context,
    node: &Node,
    cidrs: &[IpNet],
    previous: &[Condition],
) -> Result<Condition, Error> {
    let texts: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
    let current: Vec<String> = node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidrs.clone())
        .unwrap_or_default();
    let set = || condition(previous, "PodCIDRs", true, "Set", texts.join(", "));
    if current.is_empty() {
        // A merge patch guarded by the resourceVersion read: if someone else sets them
        // meanwhile, the apiserver refuses ours (conflict) and the next round compares
        // instead of writing. (The apiserver itself also refuses to change podCIDRs
        // once set.)
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": node.resource_version()},
            "spec": {"podCIDR": texts.first(), "podCIDRs": texts},
        });
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..PatchParams::default()
        };
        let written = ctx
            .node_api
            .patch(&node.name_any(), &params, &Patch::Merge(&patch))
            .await;
        ctx.pacing.allocation_written(&node.name_any());
        let written = written.map_err(Error::NodeWrite)?;
        ctx.fresh_nodes
            .record(&node.name_any(), Some(node), written);
        return Ok(set());
    }
    let parsed: Vec<Option<IpNet>> = current.iter().map(|c| ledger::parse_cidr(c)).collect();
    let wanted: Vec<Option<IpNet>> = cidrs.iter().copied().map(Some).collect();
    if parsed == wanted {
        return Ok(set());
    }
    let message = format!(
        "Node spec.podCIDRs [{}] differ from weft's allocation [{}]; weft leaves them as they are",
        current.join(", "),
        texts.join(", ")
    );
    let was = previous.iter().find(|c| c.type_ == "PodCIDRs");
    if was.is_none_or(|c| c.reason != "PodCIDRsDiffer") {
        ctx.event(node, EventType::Warning, "PodCIDRsDiffer", message.clone())
            .await;
    }
    Ok(condition(
        previous,
        "PodCIDRs",
        false,
        "PodCIDRsDiffer",
        message,
    ))
}

/// Writes the controller's conditions of the WeftNode (server-side apply on status: the
/// conditions are a map keyed by type, so weftd's `Ready` stays), and publishes a
/// Warning Event when the node starts waiting for a new reason.
async fn write_conditions(
    ctx: &Context,
    node: &Node,
    previous: &[Condition],
    wanted: Vec<Condition>,
) -> Result<(), Error> {
    if !conditions_differ(previous, &wanted) {
        return Ok(());
    }
    // Published once the condition is written: a failed write is retried, and the
    // retry must not say it twice.
    let warning = wanted
        .iter()
        .find(|c| c.type_ == "Allocated" && c.status == "False")
        .filter(|c| {
            let was = previous.iter().find(|p| p.type_ == "Allocated");
            was.is_none_or(|p| p.status != "False" || p.reason != c.reason)
        })
        .map(|c| (c.reason.clone(), c.message.clone()));
    let name = node.name_any();
    let patch = serde_json::json!({
        "apiVersion": "weft.dev/v1alpha1",
        "kind": "WeftNode",
        "metadata": {"name": name},
        "status": {"conditions": wanted},
    });
    let before = ctx.weftnode(&name);
    let written = ctx
        .weftnode_api
        .patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(Error::WeftNodeWrite)?;
    ctx.fresh_weftnodes
        .record(&name, before.as_deref(), written);
    ctx.pacing.forget(&name);
    if let Some((reason, message)) = warning {
        ctx.event(node, EventType::Warning, &reason, message).await;
    }
    Ok(())
}

/// Counts the error under its variant name and requeues.
pub fn error_policy(node: Arc<Node>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[error.label()])
        .inc();
    match error {
        Error::RangeExhausted(_) | Error::InvalidNetwork { .. } | Error::NetworkMissing(_) => {
            debug!(node = %node.name_any(), error = %error, "waiting")
        }
        _ => warn!(node = %node.name_any(), error = %error, "reconcile failed"),
    }
    Action::requeue(error.retry_after())
}

#[cfg(test)]
#[path = "tests/reconcile.rs"]
mod tests;
