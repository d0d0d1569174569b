//! `WeftNodePolicy`: which policies apply to each pod of one node, and how far that
//! node's weftd has programmed them; and `WeftPolicyIndex`: which namespaces have any
//! policy at all, so weftd knows at a pod's ADD whether to wait for its entry.
//!
//! The controller writes the spec; the node's weftd writes the status (admission allows
//! it only its own). Named after the Node and owned by it, as `WeftNode` is.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::address_group::NamedPort;

/// The name of the one `WeftPolicyIndex`.
pub const POLICY_INDEX_NAME: &str = "default";

/// One node's pods under policy.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "WeftNodePolicy",
    plural = "weftnodepolicies",
    shortname = "wnpol",
    status = "WeftNodePolicyStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(name = "Node", type_ = "string", json_path = ".spec.nodeName"),
    printcolumn(name = "Applied", type_ = "date", json_path = ".status.appliedAt"),
    printcolumn(name = "Pending", type_ = "integer", json_path = ".status.pendingPods"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WeftNodePolicySpec {
    /// The Node's name.
    pub node_name: String,
    /// Every pod of the node in a namespace the index lists, and every pod of the node
    /// turning a family off, sorted by namespace and name.
    #[serde(default)]
    pub pods: Vec<PodPolicies>,
}

/// The policies that apply to one pod, by `WeftPolicy` name. A direction with no policy
/// is not isolated; with policies, only what their rules allow passes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodPolicies {
    /// The pod's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its UID: weftd admits a pod only on the entry of that very pod.
    pub uid: String,
    /// Policies isolating its ingress, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<String>,
    /// Policies isolating its egress, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<String>,
    /// Its named container ports that some ingress rule of its policies uses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub named_ports: Vec<NamedPort>,
    /// The families it keeps (`weft.dev/ip-families`), when it turns one off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_families: Option<Vec<String>>,
}

/// How far the node's weftd got, for the controller's `Programmed` counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeftNodePolicyStatus {
    /// The `resourceVersion` of the last event applied to the kernel, per watch: keys
    /// `weftPolicies/node`, `weftPolicies/all`, `weftAddressGroups/node`,
    /// `weftAddressGroups/all`, `weftNodePolicy`. Versions of one resource compare, so
    /// an object of that resource at or below its watch's version is programmed.
    #[serde(default)]
    pub observed: BTreeMap<String, String>,
    /// When weftd last applied a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<Time>,
    /// Local pods waiting for their entry, so started isolated.
    #[serde(default)]
    pub pending_pods: u32,
    /// Objects weftd refused, each naming the object, field and value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The namespaces that have a policy.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "WeftPolicyIndex",
    plural = "weftpolicyindexes",
    shortname = "wpindex",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WeftPolicyIndexSpec {
    /// Namespaces with at least one NetworkPolicy, sorted by name.
    #[serde(default)]
    pub namespaces: Vec<PolicedNamespace>,
}

/// A namespace with policies, and which directions they isolate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicedNamespace {
    /// The namespace.
    pub name: String,
    /// Some policy of it isolates ingress.
    #[serde(default)]
    pub ingress: bool,
    /// Some policy of it isolates egress.
    #[serde(default)]
    pub egress: bool,
}

impl WeftPolicyIndexSpec {
    /// Whether a pod of `namespace` may be under a policy, so must wait for its entry.
    pub fn polices(&self, namespace: &str) -> bool {
        self.namespaces
            .binary_search_by(|n| n.name.as_str().cmp(namespace))
            .is_ok()
    }
}
