//! How far this node got, on its `WeftNodePolicy` status: per watch, the newest
//! resourceVersion whose objects the kernel holds, so the controller can count a policy
//! programmed on a node exactly (docs/networkpolicy-design.md §1.2, "Status").
//!
//! Written on the leading edge of a change, then at most once per period (the
//! controller is its only reader; at 5,000 nodes a 10 s period under churn touching
//! every node is 500 writes/s, the rate of kubelets' node Leases), and never when
//! nothing changed.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::Api;
use tokio::sync::watch;
use tracing::warn;
use weft_api::{WeftNodePolicy, WeftNodePolicyStatus};

use super::watch::Observed;
use crate::error::Error;
use crate::metrics::Metrics;

/// Field manager of weftd's status writes.
const FIELD_MANAGER: &str = "weftd";

/// What the engine last put in the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The versions the kernel now holds the objects of.
    pub observed: Observed,
    /// Local pods started isolated, waiting for their entry.
    pub pending_pods: u32,
    /// Objects refused, each naming object, field and value.
    pub errors: Vec<String>,
}

/// Writes each new [`Applied`] to the status of `node`'s `WeftNodePolicy`, at most once
/// per `period`. Returns when the engine's sender is gone.
pub async fn report(
    api: Api<WeftNodePolicy>,
    node: String,
    mut applied: watch::Receiver<Applied>,
    period: Duration,
    metrics: Metrics,
) {
    let mut written: Option<Applied> = None;
    loop {
        let now = applied.borrow_and_update().clone();
        if written.as_ref() == Some(&now) {
            if applied.changed().await.is_err() {
                return;
            }
            continue;
        }
        match write(&api, &node, &now).await {
            Ok(()) => written = Some(now),
            // The controller creates the object with the node's first policy entry;
            // until then, or while the apiserver is away, it is retried each period.
            Err(e) => {
                warn!(error = %e, "reporting policy status");
                metrics.error(&e);
            }
        }
        tokio::time::sleep(period).await;
    }
}

async fn write(
    api: &Api<WeftNodePolicy>,
    node: &str,
    applied: &Applied,
) -> crate::error::Result<()> {
    let status = WeftNodePolicyStatus {
        observed: applied
            .observed
            .iter()
            .map(|(key, version)| ((*key).to_owned(), version.clone()))
            .collect(),
        applied_at: Some(Time(Timestamp::now())),
        pending_pods: applied.pending_pods,
        errors: applied.errors.clone(),
    };
    let patch = serde_json::json!({
        "apiVersion": "weft.dev/v1alpha1", "kind": "WeftNodePolicy",
        "metadata": {"name": node}, "status": status,
    });
    api.patch_status(
        node,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
    .map_err(Error::kubernetes(format!("WeftNodePolicy {node} status")))
}
