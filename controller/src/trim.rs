//! What the controller keeps of the objects it caches: only what a reconcile reads.
//!
//! The stores hold every Node and WeftNode of the cluster, so their size is the
//! controller's memory. A Node as a kubelet keeps it is mostly status the controller
//! never reads: up to 50 images with their digests (kubelet's `--node-status-max-images`),
//! conditions, addresses, capacity, node info; 10-20 KiB of JSON per Node, plus the
//! managedFields of every writer and tools' annotations. Trimming happens as each watch
//! event arrives, and on the responses of our own writes, before anything is kept.

use k8s_openapi::api::core::v1::Node;
use weft_api::WeftNode;

/// Keeps a Node's metadata but its annotations and managedFields, and its spec (the
/// name, UID, resourceVersion, deletion timestamp, the zone label and `podCIDRs` are
/// what reconciles and Events read); drops its status.
pub fn node(node: &mut Node) {
    node.status = None;
    node.metadata.managed_fields = None;
    node.metadata.annotations = None;
}

/// Keeps a WeftNode but its managedFields (nothing reads them, and at 5,000 WeftNodes
/// they are a good part of the store).
pub fn weftnode(weftnode: &mut WeftNode) {
    weftnode.metadata.managed_fields = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;

    #[test]
    fn a_kubelet_node_keeps_what_reconciles_read() {
        let mut n: Node = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "n1", "uid": "u1", "resourceVersion": "7",
                "labels": {"topology.kubernetes.io/zone": "z1"},
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
                "managedFields": [{"manager": "kubelet", "operation": "Update"}],
            },
            "spec": {"podCIDRs": ["10.255.1.0/24"], "providerID": "p"},
            "status": {
                "images": [{"names": ["registry.k8s.io/pause:3.10"], "sizeBytes": 320368}],
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }))
        .unwrap();
        node(&mut n);
        assert_eq!(n.name_any(), "n1");
        assert_eq!(n.uid().as_deref(), Some("u1"));
        assert_eq!(n.resource_version().as_deref(), Some("7"));
        assert_eq!(n.labels()["topology.kubernetes.io/zone"], "z1");
        let spec = n.spec.as_ref().unwrap();
        assert_eq!(
            spec.pod_cidrs.as_deref(),
            Some(&["10.255.1.0/24".to_owned()][..])
        );
        assert_eq!(spec.provider_id.as_deref(), Some("p"));
        assert!(n.status.is_none());
        assert!(n.metadata.annotations.is_none());
        assert!(n.metadata.managed_fields.is_none());
    }
}
