//! The six watches that bring this node its policy objects (docs/networkpolicy-design.md
//! §2.1): `WeftPolicy` and `WeftAddressGroup` each on the node's span label and on
//! `span.weft.dev/all`, its own `WeftNodePolicy` and the `WeftPolicyIndex` by name. No
//! weftd watches Pods, Namespaces or NetworkPolicies: the controller resolved those.
//!
//! Events go into the shared [`PolicyInputs`]; after each burst (events closer than
//! [`BURST`]) the engine is told, with the newest resourceVersion seen per watch (which
//! it reports once the kernel holds what they brought) and whether every watch has
//! listed once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{BoxStream, StreamExt};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch as signal;
use tracing::warn;
use weft_api::span::{span_label, SPAN_ALL};
use weft_api::{WeftAddressGroup, WeftNodePolicy, WeftPolicy, WeftPolicyIndex, POLICY_INDEX_NAME};

use super::inputs::PolicyInputs;
use super::spanned::SpanWatch;
use crate::error::Error;
use crate::metrics::Metrics;

/// Events closer together than this are applied as one change.
pub const BURST: Duration = Duration::from_millis(20);

/// The newest resourceVersion each watch delivered, by the status key of
/// `WeftNodePolicyStatus::observed`.
pub type Observed = BTreeMap<&'static str, String>;

/// What the watches have delivered so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The newest versions.
    pub observed: Observed,
    /// Every watch has listed once: the inputs are the controller's whole word, and a
    /// missing entry or index means there is none (before, it may just not have come).
    pub complete: bool,
}

/// How many watches [`feed`] runs.
const WATCHES: usize = 6;

/// Where each watch's events land.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Policies(SpanWatch),
    Slices(SpanWatch),
    NodePolicy,
    Index,
}

impl Source {
    /// Its key in `WeftNodePolicyStatus::observed`.
    fn key(self) -> &'static str {
        match self {
            Source::Policies(SpanWatch::Node) => "weftPolicies/node",
            Source::Policies(SpanWatch::All) => "weftPolicies/all",
            Source::Slices(SpanWatch::Node) => "weftAddressGroups/node",
            Source::Slices(SpanWatch::All) => "weftAddressGroups/all",
            Source::NodePolicy => "weftNodePolicy",
            Source::Index => "weftPolicyIndex",
        }
    }
}

/// One event of one watch, its object reduced to what the inputs keep.
enum Seen {
    Policy(Event<WeftPolicy>),
    Slice(Event<WeftAddressGroup>),
    NodePolicy(Event<WeftNodePolicy>),
    Index(Event<WeftPolicyIndex>),
}

/// Runs the watches until their stream ends (never, in practice: a broken watch is
/// retried with backoff, each failure counted), applying events to `inputs` and sending
/// the observed versions to `changed` after each burst. The four span watches go
/// through `spans` (the apiserver, or weft-controller's policy relay), the two by name
/// through `client` (the apiserver, which sends a watch scoped to a name only that
/// object's events).
pub async fn feed(
    client: Client,
    spans: Client,
    node_name: String,
    inputs: Arc<Mutex<PolicyInputs>>,
    changed: signal::Sender<Progress>,
    metrics: Metrics,
) -> crate::error::Result<()> {
    let own = span_label(&node_name);
    let streams: Vec<BoxStream<'static, (Source, Result<Seen, watcher::Error>)>> = vec![
        watch(
            &spans,
            Source::Policies(SpanWatch::Node),
            labels(&own),
            Seen::Policy,
        ),
        watch(
            &spans,
            Source::Policies(SpanWatch::All),
            labels(SPAN_ALL),
            Seen::Policy,
        ),
        watch(
            &spans,
            Source::Slices(SpanWatch::Node),
            labels(&own),
            Seen::Slice,
        ),
        watch(
            &spans,
            Source::Slices(SpanWatch::All),
            labels(SPAN_ALL),
            Seen::Slice,
        ),
        watch(
            &client,
            Source::NodePolicy,
            by_name(&node_name),
            Seen::NodePolicy,
        ),
        watch(
            &client,
            Source::Index,
            by_name(POLICY_INDEX_NAME),
            Seen::Index,
        ),
    ];
    let mut events = futures::stream::select_all(streams);
    let mut listings = Listings::default();
    let mut observed = Observed::new();
    let mut dirty = false;
    loop {
        let expiry = lock(&inputs).next_expiry();
        let wait = match (dirty, expiry) {
            (true, _) => Some(BURST),
            (false, Some(at)) => Some(at.saturating_duration_since(Instant::now())),
            (false, None) => None,
        };
        let next = match wait {
            Some(wait) => match tokio::time::timeout(wait, events.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let expired = lock(&inputs).expire(Instant::now());
                    if dirty || expired {
                        changed.send_replace(Progress {
                            observed: observed.clone(),
                            complete: lock(&inputs).complete(),
                        });
                        dirty = false;
                    }
                    continue;
                }
            },
            None => events.next().await,
        };
        let Some((source, event)) = next else {
            return Ok(());
        };
        match event {
            Err(e) => {
                let e = Error::Watch {
                    context: format!("{} watch", source.key()),
                    source: Box::new(e),
                };
                warn!(error = %e, "retrying");
                metrics.error(&e);
            }
            Ok(seen) => {
                if let Some(version) = newest_version(&seen) {
                    observed.insert(source.key(), version);
                }
                dirty |= listings.apply(&mut lock(&inputs), source, seen, Instant::now());
            }
        }
    }
}

/// A watch of one kind, its events tagged with their source.
fn watch<K, F>(
    client: &Client,
    source: Source,
    config: watcher::Config,
    wrap: F,
) -> BoxStream<'static, (Source, Result<Seen, watcher::Error>)>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: Fn(Event<K>) -> Seen + Send + 'static,
{
    watcher::watcher(Api::<K>::all(client.clone()), config)
        .default_backoff()
        .map(move |event| (source, event.map(&wrap)))
        .boxed()
}

fn labels(label: &str) -> watcher::Config {
    watcher::Config::default().labels(label)
}

fn by_name(name: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={name}"))
}

fn lock(inputs: &Mutex<PolicyInputs>) -> std::sync::MutexGuard<'_, PolicyInputs> {
    inputs.lock().unwrap_or_else(|e| e.into_inner())
}

/// The resourceVersion an event brings, if it brings an object.
fn newest_version(seen: &Seen) -> Option<String> {
    fn of<K: Resource>(event: &Event<K>) -> Option<String> {
        match event {
            Event::Apply(o) | Event::InitApply(o) | Event::Delete(o) => o.resource_version(),
            Event::Init | Event::InitDone => None,
        }
    }
    match seen {
        Seen::Policy(e) => of(e),
        Seen::Slice(e) => of(e),
        Seen::NodePolicy(e) => of(e),
        Seen::Index(e) => of(e),
    }
}

impl Seen {
    fn ends_listing(&self) -> bool {
        matches!(
            self,
            Seen::Policy(Event::InitDone)
                | Seen::Slice(Event::InitDone)
                | Seen::NodePolicy(Event::InitDone)
                | Seen::Index(Event::InitDone)
        )
    }
}

/// A kind watched through span labels, and how its objects go into the inputs.
trait SpannedKind: ResourceExt + Sized {
    type Spec;
    fn spec(self) -> Self::Spec;
    fn apply(inputs: &mut PolicyInputs, watch: SpanWatch, name: &str, spec: Self::Spec);
    fn delete(inputs: &mut PolicyInputs, watch: SpanWatch, name: &str, now: Instant);
    fn relist(
        inputs: &mut PolicyInputs,
        watch: SpanWatch,
        listed: BTreeMap<String, Self::Spec>,
        now: Instant,
    );
}

impl SpannedKind for WeftPolicy {
    type Spec = weft_api::WeftPolicySpec;
    fn spec(self) -> Self::Spec {
        self.spec
    }
    fn apply(inputs: &mut PolicyInputs, watch: SpanWatch, name: &str, spec: Self::Spec) {
        inputs.apply_policy(watch, name, spec)
    }
    fn delete(inputs: &mut PolicyInputs, watch: SpanWatch, name: &str, now: Instant) {
        inputs.delete_policy(watch, name, now)
    }
    fn relist(
        inputs: &mut PolicyInputs,
        watch: SpanWatch,
        listed: BTreeMap<String, Self::Spec>,
        now: Instant,
    ) {
        inputs.relist_policies(watch, listed, now)
    }
}

impl SpannedKind for WeftAddressGroup {
    type Spec = weft_api::WeftAddressGroupSpec;
    fn spec(self) -> Self::Spec {
        self.spec
    }
    fn apply(inputs: &mut PolicyInputs, watch: SpanWatch, name: &str, spec: Self::Spec) {
        inputs.apply_slice(watch, name, spec)
    }
    fn delete(inputs: &mut PolicyInputs, watch: SpanWatch, name: &str, now: Instant) {
        inputs.delete_slice(watch, name, now)
    }
    fn relist(
        inputs: &mut PolicyInputs,
        watch: SpanWatch,
        listed: BTreeMap<String, Self::Spec>,
        now: Instant,
    ) {
        inputs.relist_slices(watch, listed, now)
    }
}

/// One event of a span watch: a listing is collected in `listings` and applied whole
/// at its end; true when the inputs changed.
fn spanned<K: SpannedKind>(
    listings: &mut BTreeMap<Source, BTreeMap<String, K::Spec>>,
    inputs: &mut PolicyInputs,
    (source, watch): (Source, SpanWatch),
    event: Event<K>,
    now: Instant,
) -> bool {
    match event {
        Event::Init => {
            listings.insert(source, BTreeMap::new());
            false
        }
        Event::InitApply(o) => {
            if let Some(list) = listings.get_mut(&source) {
                list.insert(o.name_any(), o.spec());
            }
            false
        }
        Event::InitDone => {
            let listed = listings.remove(&source).unwrap_or_default();
            K::relist(inputs, watch, listed, now);
            true
        }
        Event::Apply(o) => {
            K::apply(inputs, watch, &o.name_any(), o.spec());
            true
        }
        Event::Delete(o) => {
            K::delete(inputs, watch, &o.name_any(), now);
            true
        }
    }
}

/// Initial lists (and relists) in progress, per source, applied whole at their end.
#[derive(Default)]
struct Listings {
    policies: BTreeMap<Source, BTreeMap<String, weft_api::WeftPolicySpec>>,
    slices: BTreeMap<Source, BTreeMap<String, weft_api::WeftAddressGroupSpec>>,
    singles: BTreeMap<Source, bool>,
    /// Sources that listed once.
    listed: std::collections::BTreeSet<Source>,
}

impl Listings {
    /// Applies one event; true when the inputs changed.
    fn apply(
        &mut self,
        inputs: &mut PolicyInputs,
        source: Source,
        seen: Seen,
        now: Instant,
    ) -> bool {
        // A listing's end is news even when it changed nothing: it may complete them.
        let ends_listing = seen.ends_listing();
        if ends_listing {
            self.listed.insert(source);
            if self.listed.len() == WATCHES {
                inputs.set_complete();
            } else if [Source::NodePolicy, Source::Index]
                .iter()
                .all(|own| self.listed.contains(own))
            {
                inputs.set_own_listed();
            }
        }
        ends_listing | self.change(inputs, source, seen, now)
    }

    /// Applies one event's content; true when the inputs changed.
    fn change(
        &mut self,
        inputs: &mut PolicyInputs,
        source: Source,
        seen: Seen,
        now: Instant,
    ) -> bool {
        match (source, seen) {
            (Source::Policies(w), Seen::Policy(event)) => {
                spanned::<WeftPolicy>(&mut self.policies, inputs, (source, w), event, now)
            }
            (Source::Slices(w), Seen::Slice(event)) => {
                spanned::<WeftAddressGroup>(&mut self.slices, inputs, (source, w), event, now)
            }
            (_, Seen::NodePolicy(event)) => {
                self.single(source, event, |spec| inputs.set_node(spec.map(|o| o.spec)))
            }
            (_, Seen::Index(event)) => {
                self.single(source, event, |spec| inputs.set_index(spec.map(|o| o.spec)))
            }
            _ => false,
        }
    }

    /// One object watched by name: a listing that ends without it means it is gone.
    fn single<K>(&mut self, source: Source, event: Event<K>, set: impl FnOnce(Option<K>)) -> bool {
        match event {
            Event::Init => {
                self.singles.insert(source, false);
                false
            }
            Event::InitApply(o) => {
                self.singles.insert(source, true);
                set(Some(o));
                true
            }
            Event::InitDone => {
                let seen = self.singles.remove(&source).unwrap_or(false);
                if !seen {
                    set(None);
                }
                !seen
            }
            Event::Apply(o) => {
                set(Some(o));
                true
            }
            Event::Delete(_) => {
                set(None);
                true
            }
        }
    }
}

#[cfg(test)]
#[path = "../tests/policy_watch.rs"]
mod tests;
