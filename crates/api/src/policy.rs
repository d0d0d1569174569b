//! `WeftPolicy`: one Kubernetes NetworkPolicy as the controller compiled it, with its
//! peers resolved to address groups (`WeftAddressGroup`) and ipBlocks. weftd turns it
//! into nftables rules for the local pods `WeftNodePolicy` says it applies to; it never
//! evaluates a selector itself.
//!
//! Named `<namespace>.<name>` of the source policy (both are DNS labels or subdomains, so
//! the dot is unambiguous); labelled with its span (`span.rs`): the nodes hosting a pod
//! the policy selects.

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::network::SpecError;

/// A compiled NetworkPolicy.
#[derive(CustomResource, Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "WeftPolicy",
    plural = "weftpolicies",
    shortname = "wpol",
    status = "WeftPolicyStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn(
        name = "Namespace",
        type_ = "string",
        json_path = ".spec.source.namespace"
    ),
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.source.name"),
    printcolumn(name = "Nodes", type_ = "integer", json_path = ".status.spanNodes"),
    printcolumn(
        name = "Programmed",
        type_ = "integer",
        json_path = ".status.programmedNodes"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WeftPolicySpec {
    /// The NetworkPolicy this was compiled from.
    pub source: PolicySource,
    /// Ingress rules; absent when the policy does not isolate ingress (its `policyTypes`),
    /// empty when it isolates and allows nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<PolicyRule>>,
    /// Egress rules, read as `ingress`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<PolicyRule>>,
}

/// Which NetworkPolicy, and which version of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicySource {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its UID: a policy deleted and re-created under the same name is another policy.
    pub uid: String,
    /// The `metadata.generation` compiled.
    pub generation: i64,
}

/// One rule: traffic to or from any of `peers` on any of `ports` is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// The peers; absent means every peer, as an absent or empty `from`/`to` does
    /// (NetworkPolicyIngressRule). Never present and empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<PolicyPeer>>,
    /// The ports; empty means every port of every protocol.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PolicyPort>,
}

/// One peer: exactly one of `group` and `ipBlock`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPeer {
    /// A `WeftAddressGroup` group name (`g-<hash>`): pods a selector picks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Addresses outside any selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

/// A CIDR and the parts of it excluded. It opens its own family only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpBlock {
    /// The CIDR.
    pub cidr: String,
    /// CIDRs inside it that are not allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

/// A transport protocol NetworkPolicy names.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum Protocol {
    /// TCP, the API's default.
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

impl Protocol {
    /// Its IANA protocol number, as `meta l4proto` matches it.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

/// A port match: a protocol and at most one of a number (with an optional range end) or
/// a name resolved on the pod that owns the port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPort {
    /// The protocol.
    #[serde(default)]
    pub protocol: Protocol,
    /// A port number; with neither this nor `namedPort`, every port of the protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The last port of a range starting at `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<u16>,
    /// A container port name (IANA_SVC_NAME).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named_port: Option<String>,
}

/// What the controller reports of the policy's programming on its nodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeftPolicyStatus {
    /// Nodes hosting a pod the policy selects.
    #[serde(default)]
    pub span_nodes: u32,
    /// Of those, nodes whose weftd has the policy and every group it names in the kernel.
    #[serde(default)]
    pub programmed_nodes: u32,
    /// Up to ten nodes still to program it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_nodes: Vec<String>,
    /// `Programmed`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The object name of the compiled form of `namespace/name`.
pub fn policy_name(namespace: &str, name: &str) -> String {
    format!("{namespace}.{name}")
}

impl WeftPolicySpec {
    /// Every rule problem, each naming its field and value. weftd refuses a policy with
    /// problems whole (its pods keep their previous verdicts) rather than enforce a part.
    pub fn problems(&self) -> Vec<SpecError> {
        let mut errors = Vec::new();
        for (direction, rules) in [("ingress", &self.ingress), ("egress", &self.egress)] {
            for (i, rule) in rules.iter().flatten().enumerate() {
                rule.check(&format!("spec.{direction}[{i}]"), &mut errors);
            }
        }
        errors
    }
}

impl PolicyRule {
    fn check(&self, at: &str, errors: &mut Vec<SpecError>) {
        if let Some(peers) = &self.peers {
            if peers.is_empty() {
                errors.push(problem(
                    format!("{at}.peers"),
                    "is empty: leave it out for every peer",
                ));
            }
            for (i, peer) in peers.iter().enumerate() {
                peer.check(&format!("{at}.peers[{i}]"), errors);
            }
        }
        for (i, port) in self.ports.iter().enumerate() {
            port.check(&format!("{at}.ports[{i}]"), errors);
        }
    }
}

impl PolicyPeer {
    fn check(&self, at: &str, errors: &mut Vec<SpecError>) {
        match (&self.group, &self.ip_block) {
            (Some(_), None) => {}
            (None, Some(block)) => block.check(&format!("{at}.ipBlock"), errors),
            _ => errors.push(problem(at, "needs exactly one of group and ipBlock")),
        }
    }
}

impl IpBlock {
    /// The CIDR and its exceptions, parsed; the exceptions lie inside the CIDR, so share
    /// its family.
    pub fn parse(&self) -> Result<(IpNet, Vec<IpNet>), Vec<SpecError>> {
        let mut errors = Vec::new();
        self.check("ipBlock", &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        let cidr = parse_net(&self.cidr).expect("checked");
        let except = self.except.iter().map(|e| parse_net(e).expect("checked"));
        Ok((cidr, except.collect()))
    }

    fn check(&self, at: &str, errors: &mut Vec<SpecError>) {
        let Some(cidr) = parse_net(&self.cidr) else {
            errors.push(problem(
                format!("{at}.cidr"),
                format!("'{}' is not a CIDR", self.cidr),
            ));
            return;
        };
        for (i, text) in self.except.iter().enumerate() {
            match parse_net(text) {
                Some(except) if cidr.contains(&except) => {}
                Some(_) => errors.push(problem(
                    format!("{at}.except[{i}]"),
                    format!("'{text}' is not inside cidr '{}'", self.cidr),
                )),
                None => errors.push(problem(
                    format!("{at}.except[{i}]"),
                    format!("'{text}' is not a CIDR"),
                )),
            }
        }
    }
}

impl PolicyPort {
    fn check(&self, at: &str, errors: &mut Vec<SpecError>) {
        if self.named_port.is_some() && (self.port.is_some() || self.end_port.is_some()) {
            errors.push(problem(at, "has both a named port and a number"));
        }
        match (self.port, self.end_port) {
            (None, Some(end)) => errors.push(problem(
                format!("{at}.endPort"),
                format!("{end} without a port"),
            )),
            (Some(port), Some(end)) if end < port => errors.push(problem(
                format!("{at}.endPort"),
                format!("{end} is below port {port}"),
            )),
            (Some(0), _) => errors.push(problem(format!("{at}.port"), "0 is not a port")),
            _ => {}
        }
        if self.named_port.as_deref() == Some("") {
            errors.push(problem(format!("{at}.namedPort"), "is empty"));
        }
    }
}

/// A CIDR in canonical form only: the controller writes `10.0.0.0/8` for a policy's
/// `10.0.0.1/8` (host bits dropped, as Go's `net.ParseCIDR` reads it), so anything else
/// was not written by it.
fn parse_net(text: &str) -> Option<IpNet> {
    let net: IpNet = text.parse().ok()?;
    (net.trunc() == net).then_some(net)
}

fn problem(field: impl Into<String>, text: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        problem: text.into(),
    }
}
