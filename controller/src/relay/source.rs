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
use super::hub::Hub;
use super::Relayed;
use crate::metrics::Metrics;

/// How long one watch request lasts before it is resumed (the apiserver caps it too).
const WATCH_TIMEOUT_SECONDS: u32 = 290;

/// Waits after a failed list or watch, doubling to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Follows `relayed` for ever, each failure said and counted, then retried.
pub async fn follow(client: Client, relayed: Relayed, hub: Arc<Mutex<Hub>>, metrics: Metrics) {
    let api: Api<DynamicObject> = Api::all_with(client, &relayed.api_resource());
    let mut wait = RETRY_MIN;
    loop {
        match list_and_watch(&api, relayed, &hub).await {
            Ok(()) => wait = RETRY_MIN,
            Err(e) => {
                warn!(error = %e, "relay: following the apiserver; retrying");
                metrics
                    .relay_errors
                    .with_label_values(&[e.metric_label()])
                    .inc();
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Lists, then watches until the apiserver no longer has the version (`Ok`: list
/// again) or a request fails.
async fn list_and_watch(
    api: &Api<DynamicObject>,
    relayed: Relayed,
    hub: &Arc<Mutex<Hub>>,
) -> Result<(), Error> {
    let resource = relayed.plural();
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::List { resource, source })?;
    let mut version = list.metadata.resource_version.unwrap_or_default();
    let objects: Vec<Value> = list
        .items
        .into_iter()
        .map(|object| typed(object, relayed.api_resource()))
        .collect();
    let count = objects.len();
    lock(hub).reset(objects, parse_version(resource, &version)?);
    info!(resource, objects = count, version, "relay: listed");
    loop {
        let params = WatchParams::default().timeout(WATCH_TIMEOUT_SECONDS);
        let mut events = api
            .watch(&params, &version)
            .await
            .map_err(|source| Error::Watch { resource, source })?
            .boxed();
        while let Some(event) = events
            .try_next()
            .await
            .map_err(|source| Error::Watch { resource, source })?
        {
            match event {
                WatchEvent::Added(object) | WatchEvent::Modified(object) => {
                    let (object, at) = versioned(object, relayed, &mut version)?;
                    lock(hub).apply(&object, at);
                }
                WatchEvent::Deleted(object) => {
                    let (object, at) = versioned(object, relayed, &mut version)?;
                    lock(hub).delete(&object, at);
                }
                WatchEvent::Bookmark(bookmark) => {
                    version = bookmark.metadata.resource_version;
                    lock(hub).advance(parse_version(resource, &version)?);
                }
                WatchEvent::Error(status) if status.code == 410 => return Ok(()),
                WatchEvent::Error(status) => {
                    return Err(Error::WatchStatus {
                        resource,
                        code: status.code,
                        message: status.message,
                    })
                }
            }
        }
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

fn lock(hub: &Mutex<Hub>) -> std::sync::MutexGuard<'_, Hub> {
    hub.lock().unwrap_or_else(|e| e.into_inner())
}
