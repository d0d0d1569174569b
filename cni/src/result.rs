//! The ADD result (CNI spec 1.1 "Success"), rendered for the config's cniVersion and
//! merged into `prevResult` when weft is chained after another plugin.
//!
//! Results are built as JSON values rather than fixed structs so that fields weft does
//! not know, in a `prevResult` from another plugin, pass through untouched.

use ipnet::IpNet;
use serde_json::{json, Map, Value};
use std::net::IpAddr;
use weft_wire::{Allocation, NodeNetwork, GATEWAY_V4, GATEWAY_V6, HOST_VETH_MAC};

/// What ADD built, to be reported.
#[derive(Debug)]
pub struct Wired<'a> {
    /// Host veth name (its MAC is always [`HOST_VETH_MAC`]).
    pub host_name: &'a str,
    /// Pod interface name.
    pub pod_name: &'a str,
    /// Pod interface MAC.
    pub pod_mac: [u8; 6],
    /// Pod namespace path.
    pub sandbox: &'a str,
    /// Addresses.
    pub allocation: &'a Allocation,
    /// MTUs and mode.
    pub network: &'a NodeNetwork,
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A route weft installs in the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRoute {
    /// Destination.
    pub destination: IpNet,
    /// The link-local gateway.
    pub gateway: IpAddr,
    /// Route MTU, when the family's MTU differs from the link's.
    pub mtu: Option<u32>,
    /// The gateway is on the link without a covering address (IPv4's 169.254.1.1 for a
    /// /32 pod); IPv6 link-local gateways need no flag.
    pub onlink: bool,
}

/// The pod's default routes: one per family, via the link-local gateways.
pub fn pod_routes(allocation: &Allocation, network: &NodeNetwork) -> Vec<PodRoute> {
    let route_mtu = |family_mtu: Option<u32>| family_mtu.filter(|m| *m != network.mtu.link);
    let v6 = allocation.ipv6.map(|_| PodRoute {
        destination: IpNet::V6(Default::default()),
        gateway: GATEWAY_V6.into(),
        mtu: route_mtu(network.mtu.ipv6),
        onlink: false,
    });
    let v4 = allocation.ipv4.map(|_| PodRoute {
        destination: IpNet::V4(Default::default()),
        gateway: GATEWAY_V4.into(),
        mtu: route_mtu(network.mtu.ipv4),
        onlink: true,
    });
    v6.into_iter().chain(v4).collect()
}

/// Builds the result for `cni_version`, appended to `prev` when chained.
pub fn build(wired: &Wired<'_>, cni_version: &str, prev: Option<&Map<String, Value>>) -> Value {
    let mut result = prev.cloned().unwrap_or_default();
    let with_1_1 = crate::config::version_at_least(cni_version, "1.1.0");
    let with_ip_version = !crate::config::version_at_least(cni_version, "1.0.0");

    let interfaces = array(&mut result, "interfaces");
    let mut host = json!({"name": wired.host_name, "mac": mac_text(&HOST_VETH_MAC)});
    let mut pod =
        json!({"name": wired.pod_name, "mac": mac_text(&wired.pod_mac), "sandbox": wired.sandbox});
    if with_1_1 {
        host["mtu"] = json!(wired.network.mtu.link);
        pod["mtu"] = json!(wired.network.mtu.link);
    }
    interfaces.push(host);
    interfaces.push(pod);
    let pod_index = interfaces.len() - 1;

    let ips = array(&mut result, "ips");
    let a = wired.allocation;
    for (address, gateway, version) in [
        (
            a.ipv6.map(|ip| format!("{ip}/128")),
            GATEWAY_V6.to_string(),
            "6",
        ),
        (
            a.ipv4.map(|ip| format!("{ip}/32")),
            GATEWAY_V4.to_string(),
            "4",
        ),
    ] {
        if let Some(address) = address {
            let mut ip = json!({"address": address, "gateway": gateway, "interface": pod_index});
            if with_ip_version {
                ip["version"] = json!(version);
            }
            ips.push(ip);
        }
    }

    let routes = array(&mut result, "routes");
    for route in pod_routes(a, wired.network) {
        let mut entry =
            json!({"dst": route.destination.to_string(), "gw": route.gateway.to_string()});
        if let (true, Some(mtu)) = (with_1_1, route.mtu) {
            entry["mtu"] = json!(mtu);
        }
        routes.push(entry);
    }
    result.insert("cniVersion".into(), json!(cni_version));
    Value::Object(result)
}

fn array<'m>(obj: &'m mut Map<String, Value>, key: &str) -> &'m mut Vec<Value> {
    let slot = obj.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut().expect("just made an array")
}

#[cfg(test)]
#[path = "tests/result.rs"]
mod tests;
