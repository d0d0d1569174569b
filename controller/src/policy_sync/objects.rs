//! The four kinds of object the policy writer keeps, named ([`ObjectId`]) and rendered
//! ([`Rendered`]: exactly the fields the controller applies). Imports nothing of this
//! crate: the writer's state and its task both speak these terms.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use weft_api::span::{SPAN_ALL, SPAN_NODE_PREFIX};

/// A kind the policy writer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `WeftAddressGroup`: one slice of a group.
    Slice,
    /// `WeftPolicy`.
    Policy,
    /// `WeftNodePolicy`.
    Node,
    /// `WeftPolicyIndex`.
    Index,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Slice, Kind::Policy, Kind::Node, Kind::Index];

    /// The object kind: the `kind` label of the policy metrics.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Slice => "WeftAddressGroup",
            Kind::Policy => "WeftPolicy",
            Kind::Node => "WeftNodePolicy",
            Kind::Index => "WeftPolicyIndex",
        }
    }
}

/// One object: its kind and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    pub kind: Kind,
    pub name: String,
}

impl ObjectId {
    pub fn new(kind: Kind, name: impl Into<String>) -> ObjectId {
        ObjectId {
            kind,
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.name)
    }
}

/// What the controller owns of an object: its span labels, its owner (a
/// `WeftNodePolicy`'s Node) and its spec. Two renderings compare equal exactly when
/// applying one over the other would change nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub labels: BTreeMap<String, String>,
    /// The owning Node: (name, uid).
    pub owner: Option<(String, String)>,
    pub spec: Value,
}

impl Rendered {
    /// The controller's part of a listed object: its span labels only (others' labels
    /// are theirs), its Node owner, its spec.
    pub fn of_listed(
        labels: &BTreeMap<String, String>,
        owners: &[OwnerReference],
        spec: Value,
    ) -> Rendered {
        let labels = labels
            .iter()
            .filter(|(key, _)| is_span_label(key))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let owner = owners
            .iter()
            .find(|o| o.kind == "Node" && o.api_version == "v1")
            .map(|o| (o.name.clone(), o.uid.clone()));
        Rendered {
            labels,
            owner,
            spec,
        }
    }

    /// The server-side apply body of object `name` of `kind`.
    pub fn apply_body(&self, kind: Kind, name: &str) -> Value {
        let mut metadata = json!({"name": name, "labels": self.labels});
        if let Some((node, uid)) = &self.owner {
            metadata["ownerReferences"] = json!([OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.clone(),
                uid: uid.clone(),
                controller: Some(true),
                block_owner_deletion: None,
            }]);
        }
        json!({
            "apiVersion": "weft.dev/v1alpha1",
            "kind": kind.name(),
            "metadata": metadata,
            "spec": self.spec,
        })
    }
}

/// Whether `key` is a span label (a node's or `span.weft.dev/all`).
pub fn is_span_label(key: &str) -> bool {
    key.starts_with(SPAN_NODE_PREFIX) || key == SPAN_ALL
}
