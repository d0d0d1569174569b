//! The ADD result (CNI spec 1.1 "Success"), rendered for the config's cniVersion and
//! merged into `prevResult` when weft is chained after another plugin.
//!
//! Results are built as JSON values rather than fixed structs so that fields weft does
//! not know, in a `prevResult` from another plugin, pass through untouched.

use ipnet::IpNet;
use serde_json::{json, Map, Value};
use std::net::IpAddr;
use weft_wire::{Allocation, NodeNetwork, GATEWAY_V4, GATEWAY_V6};

/// What ADD built, to be reported.
#[derive(Debug)]
pub struct Wired<'a> {
    /// Host veth name.
    pub host_name: &'a str,
    /// Host veth MAC.
    pub host_mac: [u8; 6],
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
    let mut host = json!({"name": wired.host_name, "mac": mac_text(&wired.host_mac)});
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
mod tests {
    use super::*;
    use weft_wire::{Attachment, Mode, PodMtus, PodRef};

    fn fixture() -> (Allocation, NodeNetwork) {
        let allocation = Allocation {
            attachment: Attachment::new("c1", "eth0").unwrap(),
            ipv6: Some("2001:db8:1000:1::1".parse().unwrap()),
            ipv4: Some("10.255.1.1".parse().unwrap()),
            pod: PodRef::default(),
            allocated_at_ms: 0,
        };
        let network = NodeNetwork {
            node_name: "n".into(),
            mode: Mode::Dual,
            ipv6_prefix: None,
            ipv4_subnet: None,
            mtu: PodMtus {
                link: 1500,
                ipv6: Some(1500),
                ipv4: Some(1450),
            },
        };
        (allocation, network)
    }

    fn wired<'a>(a: &'a Allocation, n: &'a NodeNetwork) -> Wired<'a> {
        Wired {
            host_name: "weft0",
            host_mac: [0xee; 6],
            pod_name: "eth0",
            pod_mac: [0x0a, 1, 2, 3, 4, 5],
            sandbox: "/run/netns/p",
            allocation: a,
            network: n,
        }
    }

    #[test]
    fn v1_1_result_has_both_ips_on_the_pod_interface_and_route_mtus() {
        let (a, n) = fixture();
        let r = build(&wired(&a, &n), "1.1.0", None);
        assert_eq!(r["cniVersion"], "1.1.0");
        assert_eq!(r["interfaces"][1]["name"], "eth0");
        assert_eq!(r["interfaces"][1]["sandbox"], "/run/netns/p");
        assert_eq!(r["interfaces"][1]["mtu"], 1500);
        assert_eq!(r["ips"][0]["address"], "2001:db8:1000:1::1/128");
        assert_eq!(r["ips"][0]["gateway"], "fe80::1");
        assert_eq!(r["ips"][1]["address"], "10.255.1.1/32");
        assert_eq!(r["ips"][1]["interface"], 1);
        let routes = r["routes"].as_array().unwrap();
        assert_eq!(routes[0], json!({"dst": "::/0", "gw": "fe80::1"}));
        assert_eq!(
            routes[1],
            json!({"dst": "0.0.0.0/0", "gw": "169.254.1.1", "mtu": 1450})
        );
        assert_eq!(routes.len(), 2);
    }

    #[test]
    fn older_versions_drop_1_1_fields_and_0_4_adds_ip_version() {
        let (a, n) = fixture();
        let r = build(&wired(&a, &n), "1.0.0", None);
        assert!(r["interfaces"][1].get("mtu").is_none());
        assert!(r["routes"][1].get("mtu").is_none());
        assert!(r["ips"][0].get("version").is_none());
        let r = build(&wired(&a, &n), "0.4.0", None);
        assert_eq!(r["ips"][0]["version"], "6");
        assert_eq!(r["ips"][1]["version"], "4");
    }

    #[test]
    fn chained_results_append_and_keep_unknown_fields() {
        let (a, n) = fixture();
        let prev = json!({"cniVersion": "1.1.0", "interfaces": [{"name": "lo0", "x-vendor": 7}],
            "ips": [{"address": "192.0.2.5/24", "interface": 0}], "dns": {"nameservers": ["192.0.2.53"]}, "custom": true});
        let r = build(&wired(&a, &n), "1.1.0", prev.as_object());
        assert_eq!(r["interfaces"][0]["x-vendor"], 7);
        assert_eq!(r["interfaces"][2]["name"], "eth0");
        assert_eq!(r["ips"][1]["interface"], 2);
        assert_eq!(r["ips"].as_array().unwrap().len(), 3);
        assert_eq!(r["dns"]["nameservers"][0], "192.0.2.53");
        assert_eq!(r["custom"], true);
    }

    #[test]
    fn single_family_results_have_one_ip() {
        let (mut a, n) = fixture();
        a.ipv4 = None;
        let r = build(&wired(&a, &n), "1.1.0", None);
        assert_eq!(r["ips"].as_array().unwrap().len(), 1);
        assert_eq!(r["routes"].as_array().unwrap().len(), 1);
    }
}
