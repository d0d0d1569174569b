//! The tasks that make the policy model (crate::policy) real, all of one term of
//! leadership (design §1.3):
//!
//! - [`feed`] watches every Pod (trimmed on arrival), Namespace and NetworkPolicy into
//!   the model and hands the writer the first complete snapshot, then each event's
//!   delta; refused policies go to [`events`].
//! - [`writer`] lists what is written, writes only differences (a new leader with the
//!   same inputs writes nothing), then writes coalesced deltas; its decisions are the
//!   pure [`state`] over [`objects`].
//! - [`events`] publishes a Warning Event on each NetworkPolicy the model refuses.
//! - [`status`] writes each `WeftPolicy`'s programmed counts from the writer's
//!   [`progress`] view and weftd's reports on the `WeftNodePolicy`s.

mod events;
mod feed;
mod objects;
mod progress;
mod state;
mod status;
mod writer;

use crate::metrics::Metrics;
use crate::stores::Listed;
use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::Client;

/// The policy tasks, named, for the lead to supervise.
pub fn tasks(
    client: &Client,
    nodes: Store<Node>,
    nodes_listed: Listed,
    recorder: Recorder,
    metrics: &Metrics,
) -> Vec<(&'static str, BoxFuture<'static, ()>)> {
    let (updates, updated) = futures::channel::mpsc::unbounded();
    let (refusals, refused) = futures::channel::mpsc::unbounded();
    let (programming, programmed) = tokio::sync::watch::channel(Default::default());
    let writer = writer::Writer::new(client, nodes, nodes_listed, metrics.clone(), programming);
    vec![
        (
            "the policy inputs watch",
            feed::feed(client.clone(), updates, refusals).boxed(),
        ),
        ("the policy writer", writer.run(updated).boxed()),
        (
            "the policy events publisher",
            events::publish(recorder, refused).boxed(),
        ),
        (
            "the policy status writer",
            status::run(client.clone(), programmed, metrics.clone()).boxed(),
        ),
    ]
}
