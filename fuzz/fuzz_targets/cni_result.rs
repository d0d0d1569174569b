//! The ADD result, built for any cniVersion on top of any `prevResult` a previous
//! plugin in the chain handed over: never a panic, always a JSON object holding weft's
//! interfaces, addresses and routes after whatever the previous plugin reported.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::net::{Ipv4Addr, Ipv6Addr};
use weft_fuzz::config::SUPPORTED_VERSIONS;
use weft_fuzz::result::{build, Wired};
use weft_wire::{Allocation, Mode, NodeNetwork, PodMtus};

#[derive(Arbitrary, Debug)]
struct Input {
    host_name: String,
    pod_name: String,
    pod_mac: [u8; 6],
    sandbox: String,
    ipv6: Option<u128>,
    ipv4: Option<u32>,
    link_mtu: u32,
    ipv6_mtu: Option<u32>,
    ipv4_mtu: Option<u32>,
    version: Result<u8, String>,
    prev_result: String,
}

fn count(value: &Value, key: &str) -> usize {
    value.get(key).and_then(Value::as_array).map_or(0, Vec::len)
}

fuzz_target!(|input: Input| {
    let cni_version = match &input.version {
        Ok(i) => SUPPORTED_VERSIONS[usize::from(*i) % SUPPORTED_VERSIONS.len()].to_owned(),
        Err(any) => any.clone(),
    };
    let prev = match serde_json::from_str::<Value>(&input.prev_result) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    let allocation: Allocation = serde_json::from_value(serde_json::json!({
        "containerId": "c",
        "ifname": "eth0",
        "ipv6": input.ipv6.map(Ipv6Addr::from),
        "ipv4": input.ipv4.map(Ipv4Addr::from),
        "allocatedAtMs": 0,
    }))
    .expect("a well-formed allocation");
    let network = NodeNetwork {
        node_name: "n".into(),
        mode: Mode::Dual,
        ipv6_prefix: None,
        ipv4_subnet: None,
        mtu: PodMtus {
            link: input.link_mtu,
            ipv6: input.ipv6_mtu,
            ipv4: input.ipv4_mtu,
        },
    };
    let wired = Wired {
        host_name: &input.host_name,
        pod_name: &input.pod_name,
        pod_mac: input.pod_mac,
        sandbox: &input.sandbox,
        allocation: &allocation,
        network: &network,
    };
    let result = build(&wired, &cni_version, prev.as_ref());
    let printed = result.to_string();
    let reread: Value = serde_json::from_str(&printed).expect("the result is JSON");
    assert_eq!(reread["cniVersion"], cni_version.as_str());

    let prev_value = prev.map(Value::Object).unwrap_or(Value::Null);
    let families = usize::from(input.ipv6.is_some()) + usize::from(input.ipv4.is_some());
    let interfaces = reread["interfaces"].as_array().expect("interfaces");
    assert_eq!(interfaces.len(), count(&prev_value, "interfaces") + 2);
    let pod_index = interfaces.len() - 1;
    assert_eq!(interfaces[pod_index]["sandbox"], input.sandbox.as_str());
    let ips = reread["ips"].as_array().expect("ips");
    assert_eq!(ips.len(), count(&prev_value, "ips") + families);
    for ip in &ips[ips.len() - families..] {
        assert_eq!(ip["interface"], pod_index);
    }
    assert_eq!(
        count(&reread, "routes"),
        count(&prev_value, "routes") + families
    );
});
