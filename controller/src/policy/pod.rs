//! What the policy model keeps of a Pod (design §1.3, "Watches"): identity, labels,
//! node, whether it can be a peer or be policed at all, its addresses and its named
//! container ports.

use super::model::Key;
use super::selector::Labels;
use k8s_openapi::api::core::v1::{Container, Pod};
use std::collections::BTreeSet;
use weft_api::{NamedPort, Protocol};

/// The annotation a pod turns one family off with (design §5).
pub const IP_FAMILIES_ANNOTATION: &str = "weft.dev/ip-families";

/// A pod, trimmed to what policy needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: Labels,
    /// `spec.nodeName`: none before it is scheduled.
    pub node: Option<String>,
    pub host_network: bool,
    /// `status.phase`.
    pub phase: Option<String>,
    /// `status.podIPs`.
    pub ips: Vec<String>,
    /// Named container ports (restartable init containers' too), sorted.
    pub ports: Vec<NamedPort>,
    /// The families it keeps, from [`IP_FAMILIES_ANNOTATION`], copied as written.
    pub ip_families: Option<Vec<String>>,
}

impl PolicyPod {
    /// The trimmed pod; `None` without a namespace, name or UID (never from a watch).
    pub fn from_pod(pod: &Pod) -> Option<PolicyPod> {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let restartable_init = spec
            .and_then(|s| s.init_containers.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let containers = spec.map(|s| s.containers.iter()).into_iter().flatten();
        let mut ports: Vec<NamedPort> = containers
            .chain(restartable_init)
            .flat_map(named_ports)
            .collect();
        ports.sort();
        ports.dedup();
        Some(PolicyPod {
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            labels: meta.labels.clone().unwrap_or_default(),
            node: spec.and_then(|s| s.node_name.clone()),
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            phase: status.and_then(|s| s.phase.clone()),
            ips: status
                .and_then(|s| s.pod_ips.as_ref())
                .into_iter()
                .flatten()
                .map(|ip| ip.ip.clone())
                .collect(),
            ports,
            ip_families: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(IP_FAMILIES_ANNOTATION))
                .map(|v| v.split(',').map(|f| f.trim().to_owned()).collect()),
        })
    }

    pub fn key(&self) -> Key {
        Key::new(self.namespace.clone(), self.name.clone())
    }

    /// A pod that ran to completion: its addresses are released and may be reused.
    pub fn finished(&self) -> bool {
        matches!(self.phase.as_deref(), Some("Succeeded" | "Failed"))
    }

    /// Whether policies can apply to it: it has its own network and still runs.
    pub fn policed(&self) -> bool {
        !self.host_network && !self.finished()
    }

    /// Whether it can be an address group member: policed and addressed.
    pub fn addressable(&self) -> bool {
        self.policed() && !self.ips.is_empty()
    }

    /// Its named ports whose names `wanted` holds, sorted.
    pub fn ports_named(&self, wanted: &BTreeSet<String>) -> Vec<NamedPort> {
        let wanted = |p: &&NamedPort| wanted.contains(&p.name);
        self.ports.iter().filter(wanted).cloned().collect()
    }
}

fn named_ports(container: &Container) -> impl Iterator<Item = NamedPort> + '_ {
    container.ports.iter().flatten().filter_map(|p| {
        let protocol = match p.protocol.as_deref() {
            None | Some("TCP") => Protocol::Tcp,
            Some("UDP") => Protocol::Udp,
            Some("SCTP") => Protocol::Sctp,
            // The apiserver admits no other; a port weft cannot name cannot be matched.
            Some(_) => return None,
        };
        Some(NamedPort {
            name: p.name.clone()?,
            protocol,
            port: u16::try_from(p.container_port).ok()?,
        })
    })
}
