//! [`Writes`]: a reconcile's writes of Nodes and WeftNodes, and its Events. Each write
//! happens only when something differs; its response is recorded in the stores (so the
//! next reconcile decides from it, not from a cache that lags), and each allocation
//! write is told to the pacing of conditions.

use crate::pacing::Pacing;
use crate::shared::{owned_by, parse_cidr, Error, MANAGER};
use crate::stores::Stores;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use std::sync::Arc;
use tracing::warn;
use weft_api::{condition, conditions_differ, WeftNode, WeftNodeSpec};

/// See the module documentation. Cheap to clone.
#[derive(Clone)]
pub struct Writes {
    pub node_api: Api<Node>,
    pub weftnode_api: Api<WeftNode>,
    pub recorder: Recorder,
    pub stores: Stores,
    pub pacing: Arc<Pacing>,
}

impl Writes {
    /// The WeftNode as the apiserver has it now (not a cache).
    pub async fn read_weftnode(&self, name: &str) -> Result<Option<WeftNode>, Error> {
        self.weftnode_api
            .get_opt(name)
            .await
            .map_err(Error::WeftNodeWrite)
    }

    /// Server-side applies the controller's fields of the WeftNode when they differ from
    /// `current`, the WeftNode as the reconcile read it.
    pub async fn apply_weftnode(
        &self,
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
        // The ranges are committed first-writer-wins: a WeftNode that exists is written
        // only if it is still the version this reconcile read (a racing controller, or
        // weftd publishing meanwhile, makes this one retry on the new content); one that
        // does not exist is created, not applied, so of two creators one fails.
        let written = match current {
            Some(seen) => {
                wn.metadata.resource_version = seen.resource_version();
                self.weftnode_api
                    .patch(
                        &name,
                        &PatchParams::apply(MANAGER).force(),
                        &Patch::Apply(&wn),
                    )
                    .await
            }
            None => {
                let params = PostParams {
                    field_manager: Some(MANAGER.into()),
                    ..PostParams::default()
                };
                self.weftnode_api.create(&params, &wn).await
            }
        };
        self.pacing.allocation_written(&name);
        let written = match written {
            Ok(w) => w,
            Err(kube::Error::Api(s)) if s.code == 409 => return Err(Error::WeftNodeChanged),
            Err(e) => return Err(Error::WeftNodeWrite(e)),
        };
        self.stores.wrote_weftnode(&name, current, written);
        Ok(())
    }

    /// Sets `spec.podCIDRs` (and `podCIDR`) when empty; never overwrites. Returns the
    /// `PodCIDRs` condition.
    pub async fn pod_cidrs(
        &self,
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
            self.set_pod_cidrs(node, &texts).await?;
            return Ok(set());
        }
        let parsed: Vec<Option<IpNet>> = current.iter().map(|c| parse_cidr(c)).collect();
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
            self.event(node, EventType::Warning, "PodCIDRsDiffer", message.clone())
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

    /// A merge patch guarded by the resourceVersion read: if someone else sets them
    /// meanwhile, the apiserver refuses ours (conflict) and the next round compares
    /// instead of writing. (The apiserver itself also refuses to change podCIDRs once
    /// set.)
    async fn set_pod_cidrs(&self, node: &Node, texts: &[String]) -> Result<(), Error> {
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": node.resource_version()},
            "spec": {"podCIDR": texts.first(), "podCIDRs": texts},
        });
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..PatchParams::default()
        };
        let name = node.name_any();
        let written = self
            .node_api
            .patch(&name, &params, &Patch::Merge(&patch))
            .await;
        self.pacing.allocation_written(&name);
        let written = written.map_err(Error::NodeWrite)?;
        self.stores.wrote_node(&name, Some(node), written);
        Ok(())
    }

    /// Writes the controller's conditions of the WeftNode (server-side apply on status:
    /// the conditions are a map keyed by type, so weftd's `Ready` stays), and publishes a
    /// Warning Event when the node starts waiting for a new reason.
    pub async fn conditions(
        &self,
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
        let before = self.stores.weftnode(&name);
        let written = self
            .weftnode_api
            .patch_status(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(Error::WeftNodeWrite)?;
        self.stores
            .wrote_weftnode(&name, before.as_deref(), written);
        self.pacing.forget(&name);
        if let Some((reason, message)) = warning {
            self.event(node, EventType::Warning, &reason, message).await;
        }
        Ok(())
    }

    /// Publishes an Event on the Node (failures are logged: an Event is best effort).
    async fn event(&self, node: &Node, type_: EventType, reason: &str, note: String) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Allocate".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &node.object_ref(&())).await {
            warn!(node = %node.name_any(), error = %e, "cannot publish an event");
        }
    }
}
