//! The world NetworkPolicies are evaluated in: nodes, namespaces, pods with their labels,
//! addresses and named ports, and the connections asked about. Plain data; the oracle
//! reads it, the cluster fills it from what the apiserver holds.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Labels of a namespace or pod.
pub type Labels = BTreeMap<String, String>;

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// Both, IPv4 first.
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    /// The family of `addr`.
    pub fn of(addr: IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// A transport protocol a NetworkPolicyPort names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP, the API's default.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The API's spelling (`TCP`, `UDP`, `SCTP`).
    pub fn api_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// Lower case, as upstream's port names and the probe agent's targets spell it.
    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// The protocol the API spells `name`.
    pub fn from_api_name(name: &str) -> Option<Protocol> {
        [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
            .into_iter()
            .find(|p| p.api_name() == name)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.lower())
    }
}

/// A namespace and its labels (as the apiserver holds them, `kubernetes.io/metadata.name`
/// included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: Labels,
}

/// One named container port of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPort {
    /// `name`.
    pub name: String,
    /// `protocol`.
    pub protocol: Protocol,
    /// `containerPort`.
    pub port: u16,
}

/// A pod's identity: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodId {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl PodId {
    /// `namespace/name`.
    pub fn new(namespace: &str, name: &str) -> PodId {
        PodId {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for PodId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the oracle knows of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// Namespace and name.
    pub id: PodId,
    /// `spec.nodeName`.
    pub node: String,
    /// Its labels.
    pub labels: Labels,
    /// Its IPv4 address, if it has one.
    pub v4: Option<Ipv4Addr>,
    /// Its IPv6 address, if it has one.
    pub v6: Option<Ipv6Addr>,
    /// Its containers' ports.
    pub ports: Vec<ContainerPort>,
}

impl Pod {
    /// Its address of `family`.
    pub fn addr(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => self.v4.map(IpAddr::V4),
            Family::V6 => self.v6.map(IpAddr::V6),
        }
    }

    /// Whether a container port named `name` serves `protocol` on `port`.
    pub fn names_port(&self, name: &str, protocol: Protocol, port: u16) -> bool {
        self.ports
            .iter()
            .any(|p| p.name == name && p.protocol == protocol && p.port == port)
    }
}

/// A node: its name and the addresses it sends from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Its name, as pods' `spec.nodeName` gives it.
    pub name: String,
    /// Its IPv4 address, if it has one.
    pub v4: Option<Ipv4Addr>,
    /// Its IPv6 address, if it has one.
    pub v6: Option<Ipv6Addr>,
}

impl Node {
    /// Its address of `family`.
    pub fn addr(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => self.v4.map(IpAddr::V4),
            Family::V6 => self.v6.map(IpAddr::V6),
        }
    }
}

/// Where a connection comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A pod of the model.
    Pod(PodId),
    /// A node (its kubelet, say), by `spec.nodeName` and the address it sends from.
    Node {
        /// The node's name.
        name: String,
        /// Its source address.
        addr: IpAddr,
    },
    /// An address outside the cluster.
    External(IpAddr),
}

/// One connection attempt to a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Who connects.
    pub source: Source,
    /// To which pod.
    pub destination: PodId,
    /// Over which family (the destination's address of it).
    pub family: Family,
    /// With which protocol.
    pub protocol: Protocol,
    /// To which port.
    pub port: u16,
}

/// Nodes, namespaces and pods: the world policies are evaluated in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// Every node.
    pub nodes: Vec<Node>,
    /// Every namespace.
    pub namespaces: Vec<Namespace>,
    /// Every pod.
    pub pods: Vec<Pod>,
}

impl Model {
    /// The node `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The pod `id`.
    pub fn pod(&self, id: &PodId) -> Option<&Pod> {
        self.pods.iter().find(|p| &p.id == id)
    }

    /// The pod `id`, to change.
    pub fn pod_mut(&mut self, id: &PodId) -> Option<&mut Pod> {
        self.pods.iter_mut().find(|p| &p.id == id)
    }

    /// The labels of namespace `name`.
    pub fn namespace_labels(&self, name: &str) -> Option<&Labels> {
        self.namespaces
            .iter()
            .find(|n| n.name == name)
            .map(|n| &n.labels)
    }
}
