//! Warning Events on NetworkPolicies the controller cannot compile, in the policy's
//! namespace (`InvalidNetworkPolicy`, the message naming the field and its value). An
//! Event is best effort: a failure is logged, and the policy's previous version stays
//! in force either way.

use super::feed::Invalid;
use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

/// The Event reason.
pub const REASON: &str = "InvalidNetworkPolicy";

/// Publishes an Event for each refusal the model reports, for ever.
pub async fn publish(recorder: Recorder, mut refused: UnboundedReceiver<Invalid>) {
    while let Some(Invalid { policy, error }) = refused.next().await {
        let event = Event {
            type_: EventType::Warning,
            reason: REASON.into(),
            note: Some(format!(
                "not enforced, its previous version (if any) stays in force: {error}"
            )),
            action: "Compile".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &policy).await {
            let name = policy.name.unwrap_or_default();
            warn!(policy = %name, error = %e, "cannot publish an event");
        }
    }
}
