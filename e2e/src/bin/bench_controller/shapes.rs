//! The Node objects the benchmark creates: bare names, or shaped as a kubelet keeps them.

use serde_json::{json, Value};

pub(crate) fn node_list(names: &[String], kubelet: bool) -> Value {
    let items: Vec<Value> = names
        .iter()
        .map(|n| {
            if kubelet {
                kubelet_node(n)
            } else {
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}})
            }
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// A Node as a kubelet registers it and reports its status (the apiserver keeps a
/// Node's status on create, as kubelet's registration relies on): the well-known
/// labels, kubelet's annotations, capacity, conditions, addresses, node info and the 50
/// images kubelet lists by default (`--node-status-max-images`), each by digest and tag.
fn kubelet_node(name: &str) -> Value {
    let now = "2026-11-23T00:00:00Z";
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let images: Vec<Value> = (0..50)
        .map(|i| {
            let repo = format!("registry.example.com/team-{}/service-{i}", i % 7);
            let digest = format!(
                "{:064x}",
                (i as u128 + 1) * 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834
            );
            json!({"names": [format!("{repo}@sha256:{digest}"), format!("{repo}:v1.{i}.0")],
                   "sizeBytes": 20_000_000 + i * 1_234_567})
        })
        .collect();
    let resources = json!({"cpu": "8", "ephemeral-storage": "101430960Ki", "hugepages-1Gi": "0",
                           "hugepages-2Mi": "0", "memory": "32780412Ki", "pods": "110"});
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": "standard-8",
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/containerd/containerd.sock",
            },
        },
        "spec": {"providerID": format!("example://{name}")},
        "status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": "192.0.2.10"},
                          {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": format!("{:032x}", name.len() * 7919), "systemUUID": "4c4c4544-0042-3510-8052-b7c04f4e3132",
                "bootID": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "kernelVersion": "6.18.0",
                "osImage": "Debian GNU/Linux 13 (trixie)", "containerRuntimeVersion": "containerd://2.1.4",
                "kubeletVersion": "v1.35.8", "kubeProxyVersion": "", "operatingSystem": "linux",
                "architecture": "amd64",
            },
            "images": images,
        },
    })
}
