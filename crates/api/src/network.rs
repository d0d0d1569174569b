//! `WeftNetwork`: the cluster's address plan, one cluster-scoped object (the controller
//! reads the one named by its `--network` flag, `default` unless told otherwise).
//!
//! IPv6 ranges have the shape of BOSH manual-network subnets: a range, an optional
//! availability zone, reserved parts and a gateway. Each node gets a delegated prefix of
//! `prefixLength` (default /80) from a range of its zone, the lowest free one first.

use ipnet::{Ipv4Net, Ipv6Net};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::Ipv6Addr;
use weft_wire::{parse_ip, parse_ipv4_subnet, parse_ipv6_prefix};

/// The cluster's address plan.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "WeftNetwork",
    plural = "weftnetworks",
    shortname = "wnet",
    status = "WeftNetworkStatus",
    derive = "PartialEq",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(
        name = "IPv6 routing",
        type_ = "string",
        json_path = ".spec.ipv6Routing"
    ),
    printcolumn(
        name = "IPv4 network",
        type_ = "string",
        json_path = ".spec.ipv4Network"
    ),
    printcolumn(
        name = "Valid",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Valid\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WeftNetworkSpec {
    /// Families served to pods: `dual`, `ipv6` or `ipv4`.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// How nodes' IPv6 prefixes are reached: `fabric` or `direct` (see weftd's
    /// `--ipv6-routing`).
    #[serde(default)]
    pub ipv6_routing: Ipv6Routing,
    /// Ranges node prefixes are delegated from.
    #[serde(default)]
    pub ipv6_ranges: Vec<Ipv6Range>,
    /// The IPv4 overlay network node subnets are cut from.
    #[serde(default = "default_ipv4_network")]
    pub ipv4_network: String,
    /// Length of each node's IPv4 subnet (16 to 28).
    #[serde(default = "default_ipv4_subnet_length")]
    pub ipv4_subnet_length: u8,
    /// VXLAN network identifier of the IPv4 overlay.
    #[serde(rename = "vxlanVNI", default = "default_vni")]
    pub vxlan_vni: u32,
    /// UDP port of the IPv4 overlay.
    #[serde(default = "default_port")]
    pub vxlan_port: u16,
    /// Seconds a deleted node's prefix and subnet rest before another node gets them,
    /// so late packets to a recycled range cannot reach a new node.
    #[serde(default = "default_cooldown")]
    pub release_cooldown_seconds: u64,
}

/// How peers' IPv6 prefixes are reached: the `WeftNetwork`'s `ipv6Routing` and weftd's
/// `--ipv6-routing`, one type for both so the CRD's schema and the flag accept the same
/// words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ipv6Routing {
    /// The network routes each node's prefix to the node (AWS VPC prefix delegation,
    /// BOSH): weftd adds no peer routes.
    #[default]
    Fabric,
    /// Nodes share a link: weftd routes each peer's prefix via its underlay address.
    Direct,
}

impl Ipv6Routing {
    /// The word the API and the flag use.
    pub fn as_str(self) -> &'static str {
        match self {
            Ipv6Routing::Fabric => "fabric",
            Ipv6Routing::Direct => "direct",
        }
    }
}

impl std::fmt::Display for Ipv6Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Ipv6Routing {
    type Err = String;

    fn from_str(text: &str) -> Result<Ipv6Routing, String> {
        match text {
            "fabric" => Ok(Ipv6Routing::Fabric),
            "direct" => Ok(Ipv6Routing::Direct),
            other => Err(format!("'{other}' is not fabric or direct")),
        }
    }
}

/// One IPv6 range (a BOSH manual-network subnet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Ipv6Range {
    /// The range, e.g. `2001:db8:1000::/64`.
    pub range: String,
    /// The zone (`topology.kubernetes.io/zone`) whose nodes take prefixes from it; a
    /// range without a zone serves nodes of every zone and nodes without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Length of the prefix each node gets (64 to 120).
    #[serde(default = "default_prefix_length")]
    pub prefix_length: u8,
    /// Parts of the range never delegated: prefixes (`2001:db8:1000::/80`), single
    /// addresses, or `first-last` address ranges, as BOSH writes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reserved: Vec<String>,
    /// The range's gateway (reserved too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// What the controller found in the plan and how much of it is in use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WeftNetworkStatus {
    /// `Valid` (the spec parses and is consistent) and `Exhausted` (some node waits
    /// for space).
    ///
    /// A map keyed by `type` for server-side apply, so a writer owns only the
    /// conditions it sets.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Use per IPv6 range.
    #[serde(default)]
    pub ipv6_ranges: Vec<RangeUsage>,
    /// Use of the IPv4 network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_network: Option<RangeUsage>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Allocations and free prefixes of one range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RangeUsage {
    /// The range.
    pub range: String,
    /// Prefixes or subnets given to nodes (cooling ones included).
    pub allocated: u64,
    /// Prefixes or subnets still free.
    pub free: u64,
}

fn default_mode() -> String {
    "dual".into()
}
fn default_ipv4_network() -> String {
    "10.255.0.0/16".into()
}
fn default_ipv4_subnet_length() -> u8 {
    24
}
fn default_prefix_length() -> u8 {
    80
}
fn default_vni() -> u32 {
    weft_wire::DEFAULT_VXLAN_VNI
}
fn default_port() -> u16 {
    weft_wire::DEFAULT_VXLAN_PORT
}
fn default_cooldown() -> u64 {
    30
}

/// A spec field that is wrong: its path (`spec.ipv6Ranges[1].reserved[0]`), the value
/// and why. Its text goes into the `Valid` condition and an Event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct SpecError {
    /// Path of the field.
    pub field: String,
    /// What is wrong, quoting the value.
    pub problem: String,
}

fn spec_error(field: impl Into<String>, problem: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// A validated IPv6 range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRange {
    /// The range.
    pub range: Ipv6Net,
    /// Its zone.
    pub zone: Option<String>,
    /// Delegated prefix length.
    pub prefix_length: u8,
    /// Reserved address intervals (inclusive), gateway included.
    pub reserved: Vec<(Ipv6Addr, Ipv6Addr)>,
}

/// A validated plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `dual`, `ipv6` or `ipv4`.
    pub mode: weft_wire::Mode,
    /// How peers' IPv6 prefixes are reached.
    pub ipv6_routing: Ipv6Routing,
    /// IPv6 ranges, in spec order (allocation order).
    pub ipv6_ranges: Vec<PlannedRange>,
    /// The IPv4 overlay network.
    pub ipv4_network: Ipv4Net,
    /// Node subnet length.
    pub ipv4_subnet_length: u8,
    /// VXLAN VNI and port.
    pub vxlan_vni: u32,
    /// See [`WeftNetworkSpec::vxlan_port`].
    pub vxlan_port: u16,
    /// See [`WeftNetworkSpec::release_cooldown_seconds`].
    pub release_cooldown: std::time::Duration,
}

impl WeftNetworkSpec {
    /// Validates the spec. Every error names its field and value; all are returned, so
    /// an operator fixes the spec in one go.
    pub fn plan(&self) -> Result<Plan, Vec<SpecError>> {
        let mut errors = Vec::new();
        let mode = self.mode.parse::<weft_wire::Mode>().map_err(|_| {
            spec_error(
                "spec.mode",
                format!("'{}' is not dual, ipv6 or ipv4", self.mode),
            )
        });
        let mut ranges = Vec::new();
        for (i, r) in self.ipv6_ranges.iter().enumerate() {
            match plan_range(i, r) {
                Ok(p) => ranges.push(p),
                Err(mut e) => errors.append(&mut e),
            }
        }
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                if a.range.contains(&b.range) || b.range.contains(&a.range) {
                    errors.push(spec_error(
                        "spec.ipv6Ranges",
                        format!("ranges {} and {} overlap", a.range, b.range),
                    ));
                }
            }
        }
        let ipv4_network = parse_ipv4_subnet("spec.ipv4Network", &self.ipv4_network, 8..=28)
            .map_err(|e| spec_error("spec.ipv4Network", e.problem_with_value()));
        if !weft_wire::PEER_IPV4_LENGTHS.contains(&self.ipv4_subnet_length) {
            errors.push(spec_error(
                "spec.ipv4SubnetLength",
                format!("{} is not between 16 and 28", self.ipv4_subnet_length),
            ));
        }
        if let Ok(net) = &ipv4_network {
            if self.ipv4_subnet_length < net.prefix_len() {
                errors.push(spec_error(
                    "spec.ipv4SubnetLength",
                    format!("/{} subnets do not fit in {net}", self.ipv4_subnet_length),
                ));
            }
        }
        if self.vxlan_vni > 0xff_ffff {
            errors.push(spec_error(
                "spec.vxlanVNI",
                format!("{} is above 16777215", self.vxlan_vni),
            ));
        }
        if self.vxlan_port == 0 {
            errors.push(spec_error("spec.vxlanPort", "0 is not a port"));
        }
        let mode = match mode {
            Ok(m) => Some(m),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        if mode.is_some_and(|m| m.has_ipv6()) && self.ipv6_ranges.is_empty() {
            errors.push(spec_error(
                "spec.ipv6Ranges",
                format!("mode {} serves IPv6 but no range is given", self.mode),
            ));
        }
        let ipv4_network = match ipv4_network {
            Ok(n) => Some(n),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        match (mode, ipv4_network, errors.is_empty()) {
            (Some(mode), Some(ipv4_network), true) => Ok(Plan {
                mode,
                ipv6_routing: self.ipv6_routing,
                ipv6_ranges: ranges,
                ipv4_network,
                ipv4_subnet_length: self.ipv4_subnet_length,
                vxlan_vni: self.vxlan_vni,
                vxlan_port: self.vxlan_port,
                release_cooldown: std::time::Duration::from_secs(self.release_cooldown_seconds),
            }),
            _ => Err(errors),
        }
    }
}

trait ProblemWithValue {
    fn problem_with_value(&self) -> String;
}

impl ProblemWithValue for weft_wire::AddrError {
    fn problem_with_value(&self) -> String {
        format!("'{}' {}", self.value, self.problem)
    }
}

fn plan_range(i: usize, r: &Ipv6Range) -> Result<PlannedRange, Vec<SpecError>> {
    let at = |field: &str| format!("spec.ipv6Ranges[{i}].{field}");
    let mut errors = Vec::new();
    let range = parse_ipv6_prefix(&at("range"), &r.range, 0..=128)
        .map_err(|e| spec_error(at("range"), e.problem_with_value()));
    if !weft_wire::PEER_IPV6_LENGTHS.contains(&r.prefix_length) {
        errors.push(spec_error(
            at("prefixLength"),
            format!("{} is not between 64 and 120", r.prefix_length),
        ));
    }
    let range = match range {
        Ok(range) => range,
        Err(e) => {
            errors.push(e);
            return Err(errors);
        }
    };
    if r.prefix_length < range.prefix_len() {
        errors.push(spec_error(
            at("prefixLength"),
            format!("/{} prefixes do not fit in {range}", r.prefix_length),
        ));
    }
    let mut reserved = Vec::new();
    let outside = |field: String, text: &str| {
        spec_error(field, format!("'{text}' is outside the range {range}"))
    };
    for (j, text) in r.reserved.iter().enumerate() {
        let field = at(&format!("reserved[{j}]"));
        match parse_reserved(&field, text) {
            Ok((first, last)) if range.contains(&first) && range.contains(&last) => {
                reserved.push((first, last))
            }
            Ok(_) => errors.push(outside(field, text)),
            Err(e) => errors.push(e),
        }
    }
    if let Some(text) = &r.gateway {
        match parse_ip(&at("gateway"), text) {
            Ok(std::net::IpAddr::V6(gw)) if range.contains(&gw) => reserved.push((gw, gw)),
            Ok(std::net::IpAddr::V6(_)) => errors.push(outside(at("gateway"), text)),
            Ok(_) => errors.push(spec_error(at("gateway"), format!("'{text}' is not IPv6"))),
            Err(e) => errors.push(spec_error(at("gateway"), e.problem_with_value())),
        }
    }
    if errors.is_empty() {
        Ok(PlannedRange {
            range,
            zone: r.zone.clone().filter(|z| !z.is_empty()),
            prefix_length: r.prefix_length,
            reserved,
        })
    } else {
        Err(errors)
    }
}

/// A reserved entry: `prefix/len`, `address`, or `first-last` (BOSH's form; IPv6
/// addresses contain no `-`, so the split is unambiguous).
fn parse_reserved(field: &str, text: &str) -> Result<(Ipv6Addr, Ipv6Addr), SpecError> {
    let v6 = |t: &str| match parse_ip(field, t) {
        Ok(std::net::IpAddr::V6(a)) => Ok(a),
        Ok(_) => Err(spec_error(field, format!("'{t}' is not IPv6"))),
        Err(e) => Err(spec_error(field, e.problem_with_value())),
    };
    if let Some((first, last)) = text.split_once('-') {
        let (first, last) = (v6(first.trim())?, v6(last.trim())?);
        if first > last {
            return Err(spec_error(field, format!("'{text}' ends before it starts")));
        }
        Ok((first, last))
    } else if text.contains('/') {
        let net = parse_ipv6_prefix(field, text, 0..=128)
            .map_err(|e| spec_error(field, e.problem_with_value()))?;
        Ok((net.network(), net.broadcast()))
    } else {
        let a = v6(text)?;
        Ok((a, a))
    }
}
