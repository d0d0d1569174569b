//! Follows one resource on the apiserver into its [`Hub`]: a list, then a watch from
//! the list's version with bookmarks, resumed from the last version when it ends, and
//! a new list when the apiserver no longer has that version (410). The relay is one
//! watcher of the apiserver however many nodes watch the relay.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{ApiResource, DynamicObject, ListParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use serde_json::Value;
use tracing::{info, warn};

use super::error::Error;
use super::hub::{lock, Hub};
use super::Relayed;
use crate::metrics::Metrics;

/// How long one watch request lasts before it is resumed (the apiserver caps it too).
const WATCH_TIMEOUT_SECONDS: u32 = 290;

/// Waits after a failed list or watch, doubling to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Follows `relayed` for ever, each failure said and counted, then retried: a watch
/// cut off (a reset connection, an apiserver restart) resumes from the last version,
/// so the relay's own clients see no break; only a 410 lists again, which ends their
/// watches too.
pub async fn follow(client: Client, relayed: Relayed, hub: Arc<Mutex<Hub>>, metrics: Metrics) {
    let api: Api<DynamicObject> = Api::all_with(client, &relayed.api_resource());
    let mut version = None;
    let mut wait = RETRY_MIN;
    loop {
        let followed = match version.take() {
            None => list(&api, relayed, &hub).await.map(Some),
            Some(from) => watch(&api, relayed, &hub, from).await,
        };
        match followed {
            Ok(next) => {
                version = next;
                wait = RETRY_MIN;
            }
            Err((e, resume)) => {
                version = resume;
                warn!(error = %e, "relay: following the apiserver; retrying");
                e.count(&metrics);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}

/// A failure, and the version to resume from (`None`: list again).
type Failed = (Error, Option<String>);

/// Lists into a fresh hub; the list's version.
async fn list(
    api: &Api<DynamicObject>,
    relayed: Relayed,
    hub: &Arc<Mutex<Hub>>,
) -> Result<String, Failed> {
    let resource = relayed.plural();
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|source| (Error::List { resource, source }, None))?;
    let version = list.metadata.resource_version.unwrap_or_default();
    let objects: Vec<Value> = list
        .items
        .into_iter()
        .map(|object| typed(object, relayed.api_resource()))
        .collect();
    let count = objects.len();
    let number = parse_version(resource, &version).map_err(|e| (e, None))?;
    lock(hub).reset(objects, number);
    info!(resource, objects = count, version, "relay: listed");
    Ok(version)
}

/// Watches from `version` until the request ends: `Some(last version)` to watch on,
/// `None` when the apiserver no longer has it (410: list again).
async fn watch(
    api: &Api<DynamicObject>,
    relayed: Relayed,
    hub: &Arc<Mutex<Hub>>,
    mut version: String,
) -> Result<Option<String>, Failed> {
    let resource = relayed.plural();
    let params = WatchParams::default().timeout(WATCH_TIMEOUT_SECONDS);
    let mut events = match api.watch(&params, &version).await {
        Ok(events) => events.boxed(),
        Err(kube::Error::Api(status)) if status.code == 410 => return Ok(None),
        Err(source) => return Err((Error::Watch { resource, source }, Some(version))),
    };
    loop {
        let event = match events.try_next().await {
            Ok(Some(event)) => event,
            Ok(None) => return Ok(Some(version)),
            Err(source) => return Err((Error::Watch { resource, source }, Some(version))),
        };
        let applied = match event {
            WatchEvent::Added(object) | WatchEvent::Modified(object) => {
                versioned(object, relayed, &mut version).map(|(o, at)| lock(hub).apply(&o, at))
            }
            WatchEvent::Deleted(object) => {
                versioned(object, relayed, &mut version).map(|(o, at)| lock(hub).delete(&o, at))
            }
            WatchEvent::Bookmark(bookmark) => {
                version = bookmark.metadata.resource_version;
                parse_version(resource, &version).map(|at| lock(hub).advance(at))
            }
            WatchEvent::Error(status) if status.code == 410 => return Ok(None),
            WatchEvent::Error(status) => Err(Error::WatchStatus {
                resource,
                code: status.code,
                message: status.message,
            }),
        };
        // A version that does not parse cannot order the hub's changes: list again.
        applied.map_err(|e| (e, None))?;
    }
}

/// The object as JSON with its kind, and its version (now the newest seen).
fn versioned(
    object: DynamicObject,
    relayed: Relayed,
    version: &mut String,
) -> Result<(Value, u64), Error> {
    let at = object.metadata.resource_version.clone().unwrap_or_default();
    let number = parse_version(relayed.plural(), &at)?;
    *version = at;
    Ok((typed(object, relayed.api_resource()), number))
}

/// The object as JSON, `apiVersion` and `kind` set (list items may lack them).
fn typed(mut object: DynamicObject, resource: ApiResource) -> Value {
    object.types = Some(kube::api::TypeMeta {
        api_version: resource.api_version,
        kind: resource.kind,
    });
    serde_json::to_value(object).unwrap_or_default()
}

/// A resourceVersion as a number. etcd's revisions, which the apiserver hands out as
/// versions, grow across a resource; the relay orders its changes by them.
pub fn parse_version(resource: &'static str, version: &str) -> Result<u64, Error> {
    version.parse().map_err(|_| Error::Version {
        resource,
        version: version.to_owned(),
    })
}
