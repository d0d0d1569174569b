//! What Kubernetes says a set of NetworkPolicies allows, evaluated from the API's own
//! text (kubernetes.io/docs/concepts/services-networking/network-policies/ and the
//! networking.k8s.io/v1 reference), never from weft's implementation: the truth table's
//! expected column.
//!
//! - A pod is isolated for ingress (egress) iff some policy in its namespace selects it
//!   and lists that policy type; absent `policyTypes` means Ingress, plus Egress when the
//!   policy has egress rules (the API's defaulting).
//! - An isolated pod accepts (sends) only what the union of those policies' rules allows;
//!   a connection needs egress allowed at the source and ingress at the destination.
//! - A peer's `podSelector` alone means pods of the policy's namespace; `namespaceSelector`
//!   alone, every pod of the matching namespaces; both, pods matching both (AND).
//! - `ipBlock` matches the peer's address of the probed family only: an IPv4 block never
//!   opens IPv6.
//! - A named port resolves on the destination pod's container ports (name and protocol),
//!   for ingress and egress alike; `endPort` makes a numeric port a range.
//! - "A pod cannot block access to itself", and "traffic to and from the node where a Pod
//!   is running is always allowed".

use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::net::IpAddr;

use super::model::{Connection, Family, Labels, Model, Pod, Protocol, Source};

/// Which side of a pod a policy governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn api_name(self) -> &'static str {
        match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        }
    }
}

/// The other end of a connection, as a rule's peers see it.
#[derive(Debug, Clone, Copy)]
enum Peer<'a> {
    /// A pod, seen at its address of the probed family.
    Pod(&'a Pod, IpAddr),
    /// Anything else: only ipBlocks match it.
    Address(IpAddr),
}

impl Peer<'_> {
    fn addr(self) -> IpAddr {
        match self {
            Peer::Pod(_, addr) | Peer::Address(addr) => addr,
        }
    }
}

impl Model {
    /// Whether `policies` allow `connection`. A pod absent from the model, or lacking an
    /// address of the connection's family, cannot be connected to or from.
    pub fn allows(&self, policies: &[NetworkPolicy], connection: &Connection) -> bool {
        let Some(destination) = self.pod(&connection.destination) else {
            return false;
        };
        if destination.addr(connection.family).is_none() {
            return false;
        }
        let (peer, egress_allowed) = match &connection.source {
            Source::Pod(id) if *id == destination.id => return true,
            Source::Node { name, .. } if *name == destination.node => return true,
            Source::Pod(id) => {
                let Some(source) = self.pod(id) else {
                    return false;
                };
                let Some(addr) = source.addr(connection.family) else {
                    return false;
                };
                let allowed = self.permits(
                    policies,
                    source,
                    Direction::Egress,
                    Peer::Pod(destination, destination.addr(connection.family).unwrap()),
                    destination,
                    connection,
                );
                (Peer::Pod(source, addr), allowed)
            }
            Source::Node { addr, .. } | Source::External(addr) => {
                if Family::of(*addr) != connection.family {
                    return false;
                }
                (Peer::Address(*addr), true)
            }
        };
        egress_allowed
            && self.permits(
                policies,
                destination,
                Direction::Ingress,
                peer,
                destination,
                connection,
            )
    }

    /// Whether `pod`'s side `direction` lets the connection with `peer` through: not
    /// isolated, or some rule of a policy isolating it matches. Named ports resolve on
    /// `destination`.
    fn permits(
        &self,
        policies: &[NetworkPolicy],
        pod: &Pod,
        direction: Direction,
        peer: Peer<'_>,
        destination: &Pod,
        connection: &Connection,
    ) -> bool {
        let isolating: Vec<(&str, &NetworkPolicySpec)> = policies
            .iter()
            .filter_map(|p| Some((policy_namespace(p), p.spec.as_ref()?)))
            .filter(|(namespace, spec)| {
                *namespace == pod.id.namespace
                    && selects(spec.pod_selector.as_ref(), &pod.labels)
                    && policy_types(spec).contains(&direction)
            })
            .collect();
        if isolating.is_empty() {
            return true;
        }
        let port_matches = |ports: Option<&Vec<NetworkPolicyPort>>| {
            ports.is_none_or(|ports| {
                ports.is_empty()
                    || ports
                        .iter()
                        .any(|p| port_matches(p, connection.protocol, connection.port, destination))
            })
        };
        isolating.iter().any(|(namespace, spec)| match direction {
            Direction::Ingress => spec.ingress.iter().flatten().any(|rule| {
                port_matches(rule.ports.as_ref())
                    && self.peers_match(rule.from.as_ref(), namespace, peer)
            }),
            Direction::Egress => spec.egress.iter().flatten().any(|rule| {
                port_matches(rule.ports.as_ref())
                    && self.peers_match(rule.to.as_ref(), namespace, peer)
            }),
        })
    }

    /// A rule's `from`/`to`: absent or empty matches every peer, else any one of them.
    fn peers_match(
        &self,
        peers: Option<&Vec<NetworkPolicyPeer>>,
        policy_namespace: &str,
        peer: Peer<'_>,
    ) -> bool {
        peers.is_none_or(|peers| {
            peers.is_empty()
                || peers
                    .iter()
                    .any(|p| self.peer_matches(p, policy_namespace, peer))
        })
    }

    fn peer_matches(
        &self,
        rule_peer: &NetworkPolicyPeer,
        policy_namespace: &str,
        peer: Peer<'_>,
    ) -> bool {
        if let Some(block) = &rule_peer.ip_block {
            return block_contains(block, peer.addr());
        }
        let Peer::Pod(pod, _) = peer else {
            return false;
        };
        let namespace_matches = match &rule_peer.namespace_selector {
            Some(selector) => self
                .namespace_labels(&pod.id.namespace)
                .is_some_and(|labels| selects(Some(selector), labels)),
            None => rule_peer.pod_selector.is_some() && pod.id.namespace == policy_namespace,
        };
        namespace_matches && selects(rule_peer.pod_selector.as_ref(), &pod.labels)
    }
}

/// The policy's namespace; kubectl's default when the object names none.
fn policy_namespace(policy: &NetworkPolicy) -> &str {
    policy.metadata.namespace.as_deref().unwrap_or("default")
}

/// `spec.policyTypes`, defaulted as the API does when absent or empty.
fn policy_types(spec: &NetworkPolicySpec) -> Vec<Direction> {
    match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => [Direction::Ingress, Direction::Egress]
            .into_iter()
            .filter(|d| types.iter().any(|t| t == d.api_name()))
            .collect(),
        _ => {
            let mut types = vec![Direction::Ingress];
            if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                types.push(Direction::Egress);
            }
            types
        }
    }
}

/// A label selector: an absent or empty one selects everything; otherwise every
/// `matchLabels` pair and every `matchExpressions` requirement must hold.
fn selects(selector: Option<&LabelSelector>, labels: &Labels) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let pairs_hold = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    let requirements_hold = selector.match_expressions.iter().flatten().all(|r| {
        let values = r.values.as_deref().unwrap_or_default();
        let value = labels.get(&r.key);
        match r.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    pairs_hold && requirements_hold
}

/// `cidr` contains `addr` (same family only) and no `except` does.
fn block_contains(block: &IPBlock, addr: IpAddr) -> bool {
    let within = |cidr: &str| {
        cidr.parse::<IpNet>()
            .is_ok_and(|net| Family::of(net.addr()) == Family::of(addr) && net.contains(&addr))
    };
    within(&block.cidr) && !block.except.iter().flatten().any(|e| within(e))
}

/// One NetworkPolicyPort against (protocol, port) on `destination`: the protocol must be
/// the port's (TCP when absent); no port means every port of it; a number, that port or
/// through `endPort`; a name, a container port of the destination with that name and
/// protocol.
fn port_matches(
    rule_port: &NetworkPolicyPort,
    protocol: Protocol,
    port: u16,
    destination: &Pod,
) -> bool {
    let rule_protocol = rule_port.protocol.as_deref().unwrap_or("TCP");
    if Protocol::from_api_name(rule_protocol) != Some(protocol) {
        return false;
    }
    match &rule_port.port {
        None => true,
        Some(IntOrString::Int(first)) => {
            let last = rule_port.end_port.unwrap_or(*first);
            (*first..=last).contains(&i32::from(port))
        }
        Some(IntOrString::String(name)) => destination.names_port(name, protocol, port),
    }
}
