use super::*;
use weft_wire::{Attachment, Mode, PodMtus, PodRef};

fn fixture() -> (Allocation, NodeNetwork) {
    let allocation = Allocation {
        attachment: Attachment::new("c1", "eth0").unwrap(),
        ipv6: Some("2001:db8:1000:1::1".parse().unwrap()),
        ipv4: Some("10.255.1.1".parse().unwrap()),
        pod: PodRef::default(),
        network: None,
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
