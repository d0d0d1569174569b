//! A NetworkPolicy (networking.k8s.io/v1) compiled into the `WeftPolicy` spec weftd
//! enforces, and the address groups its peers name.
//!
//! policyTypes default as the API defines them (`pkg/apis/networking/v1/defaults.go`):
//! Ingress always, Egress when the policy has egress rules. A peer's group is the
//! triple (scope, namespace selector, pod selector) in normal form: scope = the policy's
//! namespace when the peer has only a `podSelector`, the whole cluster when it has a
//! `namespaceSelector` (both given = pods matching both). Its name is a hash of that
//! text, so every policy naming the same peers shares one group.

use super::error::{PolicyError, Problem};
use super::selector::{Labels, Selector};
use ipnet::IpNet;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, BTreeSet};
use weft_api::span::content_hash;
use weft_api::{
    policy_name, IpBlock, PolicyPeer, PolicyPort, PolicyRule, PolicySource, Protocol,
    WeftPolicySpec, ALL_PODS_GROUP,
};

/// Hex digits of the selector hash in a group name.
const GROUP_HASH_DIGITS: usize = 12;

/// A namespaced object's identity: a pod's or a policy's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Key {
        Key {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// Where a group's pods live.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// One namespace: the policy's own.
    Namespace(String),
    /// Every namespace its selector picks.
    Cluster(Selector),
}

/// What an address group selects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    pub scope: Scope,
    pub pods: Selector,
}

impl GroupKey {
    /// Every pod of every namespace: the group egress rules with named ports resolve
    /// against when their peers are not groups (all peers, or ipBlocks), since a named
    /// port is the destination pod's (design §2.2, "Named ports").
    pub fn all_pods() -> GroupKey {
        GroupKey {
            scope: Scope::Cluster(Selector::everything()),
            pods: Selector::everything(),
        }
    }

    /// `<scope>|<namespace selector>|<pod selector>`, scope `*` for the cluster (no
    /// namespace is named `*`): the `selector` of its `WeftAddressGroup`s.
    pub fn text(&self) -> String {
        match &self.scope {
            Scope::Namespace(namespace) => format!("{namespace}||{}", self.pods),
            Scope::Cluster(namespaces) => format!("*|{namespaces}|{}", self.pods),
        }
    }

    /// `g-<12 hex digits of SHA-256 of the text>`; [`ALL_PODS_GROUP`] for every pod,
    /// whether a rule needs it for named ports or a peer names it (`namespaceSelector:
    /// {}`): one selection, one group.
    pub fn name(&self) -> String {
        if *self == GroupKey::all_pods() {
            return ALL_PODS_GROUP.to_owned();
        }
        format!("g-{}", content_hash(&self.text(), GROUP_HASH_DIGITS))
    }

    /// Whether a pod of `namespace` with `labels` is selected, its namespace having
    /// `namespace_labels` (`None`: not seen, so no namespace selector picks it).
    pub fn selects(
        &self,
        namespace: &str,
        namespace_labels: Option<&Labels>,
        labels: &Labels,
    ) -> bool {
        let scoped = match &self.scope {
            Scope::Namespace(n) => n == namespace,
            Scope::Cluster(_) => namespace_labels.is_some_and(|l| self.selects_namespace(l)),
        };
        scoped && self.pods.matches(labels)
    }

    /// Whether a cluster-scoped group's namespace selector picks a namespace with
    /// `labels` (a namespace-scoped group's scope is a name, not labels: never).
    pub fn selects_namespace(&self, labels: &Labels) -> bool {
        match &self.scope {
            Scope::Namespace(_) => false,
            Scope::Cluster(selector) => selector.matches(labels),
        }
    }
}

/// A NetworkPolicy as the model keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledPolicy {
    pub key: Key,
    /// The `WeftPolicy` spec.
    pub spec: WeftPolicySpec,
    /// Its `podSelector`: the pods of its namespace it applies to.
    pub pods: Selector,
    /// Every group its rules need, by name, with the port names its egress rules resolve
    /// on the group's members.
    pub groups: BTreeMap<String, GroupUse>,
    /// Port names its ingress rules use (resolved on the pods it applies to).
    pub ingress_ports: BTreeSet<String>,
}

/// A group a policy needs.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupUse {
    pub key: GroupKey,
    /// Named ports egress rules naming the group use.
    pub ports: BTreeSet<String>,
}

impl CompiledPolicy {
    /// Its `WeftPolicy` name.
    pub fn name(&self) -> String {
        policy_name(&self.key.namespace, &self.key.name)
    }
}

/// Compiles `policy`; the first problem found is the error.
pub fn compile(policy: &NetworkPolicy) -> Result<CompiledPolicy, PolicyError> {
    let meta = &policy.metadata;
    let namespace = meta.namespace.clone().unwrap_or_default();
    let spec = policy.spec.clone().unwrap_or_default();
    let (isolates_ingress, isolates_egress) = policy_types(&spec)?;
    let mut compiled = CompiledPolicy {
        key: Key::new(namespace.clone(), meta.name.clone().unwrap_or_default()),
        spec: WeftPolicySpec {
            source: PolicySource {
                namespace: namespace.clone(),
                name: meta.name.clone().unwrap_or_default(),
                uid: meta.uid.clone().unwrap_or_default(),
                generation: meta.generation.unwrap_or_default(),
            },
            ingress: None,
            egress: None,
        },
        pods: selector_or_everything(spec.pod_selector.as_ref(), "spec.podSelector")?,
        groups: BTreeMap::new(),
        ingress_ports: BTreeSet::new(),
    };
    if isolates_ingress {
        let mut rules = Vec::new();
        for (i, rule) in spec.ingress.iter().flatten().enumerate() {
            let at = format!("spec.ingress[{i}]");
            let peers = rule.from.as_deref().unwrap_or_default();
            let rule = compile_rule(&namespace, peers, rule.ports.as_deref(), &at, "from")?;
            compiled.ingress_ports.extend(named_ports(&rule.rule));
            compiled.add_groups(rule.groups, &BTreeSet::new());
            rules.push(rule.rule);
        }
        compiled.spec.ingress = Some(rules);
    }
    if isolates_egress {
        let mut rules = Vec::new();
        for (i, rule) in spec.egress.iter().flatten().enumerate() {
            let at = format!("spec.egress[{i}]");
            let peers = rule.to.as_deref().unwrap_or_default();
            let mut rule = compile_rule(&namespace, peers, rule.ports.as_deref(), &at, "to")?;
            let ports = named_ports(&rule.rule);
            let groupless = rule
                .rule
                .peers
                .as_ref()
                .is_none_or(|peers| peers.iter().any(|p| p.ip_block.is_some()));
            if groupless && !ports.is_empty() {
                rule.groups.push(GroupKey::all_pods());
            }
            compiled.add_groups(rule.groups, &ports);
            rules.push(rule.rule);
        }
        compiled.spec.egress = Some(rules);
    }
    Ok(compiled)
}

impl CompiledPolicy {
    fn add_groups(&mut self, groups: Vec<GroupKey>, ports: &BTreeSet<String>) {
        for key in groups {
            let group = self.groups.entry(key.name()).or_insert_with(|| GroupUse {
                key,
                ports: BTreeSet::new(),
            });
            group.ports.extend(ports.iter().cloned());
        }
    }
}

/// Whether the policy isolates ingress and egress.
fn policy_types(
    spec: &k8s_openapi::api::networking::v1::NetworkPolicySpec,
) -> Result<(bool, bool), PolicyError> {
    let types = spec.policy_types.as_deref().unwrap_or_default();
    if types.is_empty() {
        let has_egress_rules = spec.egress.as_ref().is_some_and(|rules| !rules.is_empty());
        return Ok((true, has_egress_rules));
    }
    let (mut ingress, mut egress) = (false, false);
    for (i, t) in types.iter().enumerate() {
        match t.as_str() {
            "Ingress" => ingress = true,
            "Egress" => egress = true,
            other => {
                let field = format!("spec.policyTypes[{i}]");
                return Err(PolicyError::new(field, other, Problem::PolicyType));
            }
        }
    }
    Ok((ingress, egress))
}

/// A compiled rule and the groups its peers name.
struct Rule {
    rule: PolicyRule,
    groups: Vec<GroupKey>,
}

fn compile_rule(
    namespace: &str,
    peers: &[NetworkPolicyPeer],
    ports: Option<&[NetworkPolicyPort]>,
    at: &str,
    peers_field: &str,
) -> Result<Rule, PolicyError> {
    let mut compiled = Rule {
        rule: PolicyRule::default(),
        groups: Vec::new(),
    };
    if !peers.is_empty() {
        let mut out = Vec::new();
        for (i, peer) in peers.iter().enumerate() {
            let field = format!("{at}.{peers_field}[{i}]");
            match compile_peer(namespace, peer, &field)? {
                Peer::Group(key) => {
                    out.push(PolicyPeer {
                        group: Some(key.name()),
                        ip_block: None,
                    });
                    compiled.groups.push(key);
                }
                Peer::Block(block) => out.push(PolicyPeer {
                    group: None,
                    ip_block: Some(block),
                }),
            }
        }
        compiled.rule.peers = Some(out);
    }
    for (i, port) in ports.unwrap_or_default().iter().enumerate() {
        let field = format!("{at}.ports[{i}]");
        compiled.rule.ports.push(compile_port(port, &field)?);
    }
    Ok(compiled)
}

enum Peer {
    Group(GroupKey),
    Block(IpBlock),
}

/// The group key of a selector peer, or its canonical ipBlock.
fn compile_peer(namespace: &str, peer: &NetworkPolicyPeer, at: &str) -> Result<Peer, PolicyError> {
    let has_selector = peer.pod_selector.is_some() || peer.namespace_selector.is_some();
    match (&peer.ip_block, has_selector) {
        (Some(_), true) => Err(PolicyError::new(at, "ipBlock", Problem::MixedPeer)),
        (Some(block), false) => Ok(Peer::Block(ip_block(block, &format!("{at}.ipBlock"))?)),
        (None, false) => Err(PolicyError::new(at, "{}", Problem::EmptyPeer)),
        (None, true) => {
            let pods =
                selector_or_everything(peer.pod_selector.as_ref(), &format!("{at}.podSelector"))?;
            let scope = match &peer.namespace_selector {
                Some(s) => Scope::Cluster(Selector::parse(s, &format!("{at}.namespaceSelector"))?),
                None => Scope::Namespace(namespace.to_owned()),
            };
            Ok(Peer::Group(GroupKey { scope, pods }))
        }
    }
}

fn selector_or_everything(
    selector: Option<&LabelSelector>,
    field: &str,
) -> Result<Selector, PolicyError> {
    selector.map_or(Ok(Selector::everything()), |s| Selector::parse(s, field))
}

/// The block with host bits dropped from its CIDR and exceptions, as Go's
/// `net.ParseCIDR` reads `10.0.0.1/8` as `10.0.0.0/8`.
fn ip_block(block: &IPBlock, at: &str) -> Result<IpBlock, PolicyError> {
    let cidr = canonical_net(&block.cidr, &format!("{at}.cidr"))?;
    let mut except = Vec::new();
    for (i, text) in block.except.iter().flatten().enumerate() {
        let field = format!("{at}.except[{i}]");
        let net = canonical_net(text, &field)?;
        // The apiserver asks for a strict subset (`ValidateIPBlock`).
        if !cidr.contains(&net) || net.prefix_len() <= cidr.prefix_len() {
            return Err(PolicyError::new(field, text, Problem::ExceptOutside));
        }
        except.push(net.to_string());
    }
    Ok(IpBlock {
        cidr: cidr.to_string(),
        except,
    })
}

fn canonical_net(text: &str, field: &str) -> Result<IpNet, PolicyError> {
    let net: IpNet = text
        .parse()
        .map_err(|_| PolicyError::new(field, text, Problem::Cidr))?;
    Ok(net.trunc())
}

fn compile_port(port: &NetworkPolicyPort, at: &str) -> Result<PolicyPort, PolicyError> {
    let protocol = match port.protocol.as_deref() {
        None | Some("TCP") => Protocol::Tcp,
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        Some(other) => {
            return Err(PolicyError::new(
                format!("{at}.protocol"),
                other,
                Problem::Protocol,
            ))
        }
    };
    let mut compiled = PolicyPort {
        protocol,
        ..PolicyPort::default()
    };
    match &port.port {
        None => {}
        Some(IntOrString::Int(number)) => {
            compiled.port = Some(port_number(*number, &format!("{at}.port"))?);
        }
        Some(IntOrString::String(name)) if name.is_empty() || name.parse::<u32>().is_ok() => {
            return Err(PolicyError::new(
                format!("{at}.port"),
                name,
                Problem::PortName,
            ))
        }
        Some(IntOrString::String(name)) => compiled.named_port = Some(name.clone()),
    }
    if let Some(end) = port.end_port {
        let field = format!("{at}.endPort");
        let end = port_number(end, &field)?;
        match compiled.port {
            Some(start) if start <= end => compiled.end_port = Some(end),
            _ => return Err(PolicyError::new(field, end, Problem::EndPort)),
        }
    }
    Ok(compiled)
}

fn port_number(number: i32, field: &str) -> Result<u16, PolicyError> {
    u16::try_from(number)
        .ok()
        .filter(|n| *n != 0)
        .ok_or_else(|| PolicyError::new(field, number, Problem::Port))
}

fn named_ports(rule: &PolicyRule) -> BTreeSet<String> {
    rule.ports
        .iter()
        .filter_map(|p| p.named_port.clone())
        .collect()
}

#[cfg(test)]
#[path = "../tests/policy_model.rs"]
mod tests;
