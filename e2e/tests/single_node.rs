//! One node, real kernel: what ADD builds, pod-to-pod and pod-to-host reachability over
//! both families, and the CNI lifecycle (ADD twice, DEL twice, CHECK, GC, STATUS).
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::{Duration, Instant};
use weft_e2e::{Netns, Node, NodeOptions, HOST_V4, HOST_V6};

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn add_wires_both_families_and_pods_reach_each_other_and_the_host() {
    let node = Node::start(NodeOptions::default());
    let (p1, p2) = (Netns::new("p"), Netns::new("p"));
    let r1 = node.add("pod-one", &p1).expect_ok();
    let r2 = node.add("pod-two", &p2).expect_ok();

    // The result: both IPs on the CNI_IFNAME interface, which carries the sandbox.
    let pod_if = r1["ips"][0]["interface"].as_u64().unwrap() as usize;
    assert_eq!(r1["interfaces"][pod_if]["name"], "eth0");
    assert_eq!(r1["interfaces"][pod_if]["sandbox"], p1.path());
    assert_eq!(r1["interfaces"][pod_if]["mtu"], 1500);
    let v6 = r1["ips"][0]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/128")
        .to_owned();
    let v4 = r1["ips"][1]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/32")
        .to_owned();
    assert!(v6.starts_with("2001:db8:1000:1::"), "{v6}");
    assert!(v4.starts_with("10.255.1."), "{v4}");
    let v6_2 = r2["ips"][0]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/128")
        .to_owned();
    let v4_2 = r2["ips"][1]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/32")
        .to_owned();

    // Inside the pod: /128 and /32, DAD-free, default routes via link-local gateways
    // with permanent neighbours, RA and SLAAC off.
    let addrs = p1.ip(&["-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("inet {v4}/32")), "{addrs}");
    assert!(addrs.contains(&format!("inet6 {v6}/128")), "{addrs}");
    assert!(
        !addrs.contains("tentative"),
        "an address is still doing DAD: {addrs}"
    );
    let routes4 = p1.ip(&["-4", "route"]);
    assert!(
        routes4.contains("default via 169.254.1.1 dev eth0") && routes4.contains("mtu 1450"),
        "{routes4}"
    );
    assert!(p1
        .ip(&["-6", "route"])
        .contains("default via fe80::1 dev eth0"));
    let neigh = p1.ip(&["neigh", "show", "dev", "eth0"]);
    assert!(
        neigh.contains("169.254.1.1 lladdr ee:ee:ee:ee:ee:ee PERMANENT"),
        "{neigh}"
    );
    assert!(
        neigh.contains("fe80::1 lladdr ee:ee:ee:ee:ee:ee PERMANENT"),
        "{neigh}"
    );
    for key in ["accept_dad", "accept_ra", "autoconf"] {
        assert_eq!(
            p1.sysctl(&format!("net/ipv6/conf/eth0/{key}")),
            "0",
            "pod {key}"
        );
    }

    // On the host: /128 and /32 routes to the pod via its veth, forwarding on, RAs off.
    let host_if = r1["interfaces"][0]["name"].as_str().unwrap();
    assert!(host_if.starts_with("weft") && host_if.len() <= 15);
    assert!(node
        .netns
        .ip(&["-4", "route"])
        .contains(&format!("{v4} dev {host_if}")));
    assert!(node
        .netns
        .ip(&["-6", "route"])
        .contains(&format!("{v6} dev {host_if}")));
    assert_eq!(
        node.netns
            .sysctl(&format!("net/ipv6/conf/{host_if}/accept_ra")),
        "0"
    );
    assert_eq!(
        node.netns
            .sysctl(&format!("net/ipv6/conf/{host_if}/accept_dad")),
        "0"
    );
    assert_eq!(
        node.netns
            .sysctl(&format!("net/ipv6/conf/{host_if}/forwarding")),
        "1"
    );
    assert_eq!(
        node.netns
            .sysctl(&format!("net/ipv4/conf/{host_if}/forwarding")),
        "1"
    );
    // One queue each way per end, not one per CPU (cheaper to register).
    for details in [
        node.netns.ip(&["-d", "link", "show", "dev", host_if]),
        p1.ip(&["-d", "link", "show", "dev", "eth0"]),
    ] {
        assert!(details.contains("numtxqueues 1 numrxqueues 1"), "{details}");
    }

    // IPv6 is usable the instant ADD returned: these are the first packets.
    assert!(p1.ping(&v6_2), "pod to pod over IPv6");
    assert!(p1.ping(&v4_2), "pod to pod over IPv4");
    assert!(p2.ping(&v6), "pod to pod over IPv6, other way");
    assert!(p1.ping(HOST_V4), "pod to host over IPv4");
    assert!(p1.ping(HOST_V6), "pod to host over IPv6");
    assert!(node.netns.ping(&v4) && node.netns.ping(&v6), "host to pod");
}

#[test]
fn add_twice_fails_del_twice_succeeds_and_del_needs_no_netns() {
    let node = Node::start(NodeOptions::default());
    let pod = Netns::new("p");
    node.add("twice", &pod).expect_ok();
    let again = node.add("twice", &pod);
    assert_eq!(again.error_code(), Some(101), "{again:?}");
    // The refused second ADD must not have torn down the first.
    assert!(pod
        .ip(&["-o", "addr", "show", "dev", "eth0"])
        .contains("10.255.1.1/32"));
    // A different container into a netns that already has eth0: interface exists.
    let clash = node.add("other", &pod);
    assert_eq!(clash.error_code(), Some(102), "{clash:?}");
    assert_eq!(
        node.allocation_records(),
        vec!["twice@eth0".to_string()],
        "the failed ADD left an allocation"
    );

    node.del("twice", None).expect_ok();
    node.del("twice", None).expect_ok();
    node.del("never-added", Some(&pod)).expect_ok();
    wait_until("the host veth to go", || node.weft_veths().is_empty());
    assert!(node.allocation_records().is_empty());
    let links = pod.ip(&["-o", "link"]);
    assert!(!links.contains("eth0"), "pod side still present: {links}");
}

#[test]
fn check_passes_then_catches_a_deleted_route_and_a_missing_address() {
    let node = Node::start(NodeOptions::default());
    let pod = Netns::new("p");
    let result = node.add("checked", &pod).expect_ok();
    node.check("checked", &pod, &result).expect_ok();

    pod.ip(&["-4", "route", "del", "default"]);
    let drift = node.check("checked", &pod, &result);
    assert_eq!(drift.error_code(), Some(104), "{drift:?}");
    assert!(
        drift.json()["msg"]
            .as_str()
            .unwrap()
            .contains("0.0.0.0/0 via 169.254.1.1"),
        "{drift:?}"
    );

    let pod2 = Netns::new("p");
    let result2 = node.add("checked2", &pod2).expect_ok();
    let v6 = result2["ips"][0]["address"].as_str().unwrap().to_owned();
    pod2.ip(&["-6", "addr", "del", &v6, "dev", "eth0"]);
    let drift = node.check("checked2", &pod2, &result2);
    assert_eq!(drift.error_code(), Some(104));
    assert!(
        drift.json()["msg"].as_str().unwrap().contains(&v6),
        "{drift:?}"
    );

    let unknown = node.check("not-added", &pod2, &result2);
    assert_eq!(unknown.error_code(), Some(104), "{unknown:?}");
}

#[test]
fn gc_releases_stale_allocations_and_removes_leftover_veths() {
    let node = Node::start(NodeOptions::default());
    let pods: Vec<Netns> = (0..3).map(|_| Netns::new("p")).collect();
    for (i, pod) in pods.iter().enumerate() {
        node.add(&format!("gc-{i}"), pod).expect_ok();
    }
    let mut config = node.plugin_config("1.1.0");
    config["cni.dev/valid-attachments"] =
        serde_json::json!([{"containerID": "gc-1", "ifname": "eth0"}]);
    node.plugin().call("GC", "", None, "", &config).expect_ok();
    assert_eq!(node.allocation_records(), vec!["gc-1@eth0".to_string()]);
    assert_eq!(node.weft_veths().len(), 1);
    assert!(pods[1].ping(HOST_V4), "the valid pod keeps its network");
    assert_eq!(
        node.metric(r#"weft_ipam_addresses_in_use{family="ipv4"}"#),
        Some(1.0)
    );
}

#[test]
fn status_reports_50_when_weftd_is_stopped() {
    let mut node = Node::start(NodeOptions::default());
    let status = |node: &Node| {
        node.plugin()
            .call("STATUS", "", None, "", &node.plugin_config("1.1.0"))
    };
    status(&node).expect_ok();
    node.stop();
    let out = status(&node);
    assert_eq!(out.error_code(), Some(50), "{out:?}");
    assert!(
        out.json()["msg"].as_str().unwrap().contains("weftd"),
        "{out:?}"
    );
    // Older configs do not know STATUS.
    node.restart();
    let old = node
        .plugin()
        .call("STATUS", "", None, "", &node.plugin_config("1.0.0"));
    assert_eq!(old.error_code(), Some(1), "{old:?}");
}

#[test]
fn kill_9_between_adds_loses_and_duplicates_nothing() {
    let mut node = Node::start(NodeOptions::default());
    let pods: Vec<Netns> = (0..8).map(|_| Netns::new("p")).collect();
    let mut seen = std::collections::HashSet::new();
    for (i, pod) in pods.iter().enumerate() {
        let r = node.add(&format!("k9-{i}"), pod).expect_ok();
        for ip in r["ips"].as_array().unwrap() {
            assert!(
                seen.insert(ip["address"].as_str().unwrap().to_owned()),
                "address handed out twice: {ip}"
            );
        }
        if i % 2 == 1 {
            node.kill9();
            node.restart();
        }
    }
    assert_eq!(node.allocation_records().len(), 8);
    assert_eq!(
        node.metric(r#"weft_ipam_addresses_in_use{family="ipv6"}"#),
        Some(8.0)
    );
    // Every pod still reaches every other after the restarts.
    assert!(pods[0].ping("10.255.1.8") && pods[7].ping("2001:db8:1000:1::1"));
}

#[test]
fn ipv6_only_and_ipv4_only_modes_work_alone() {
    let v6 = Node::start(NodeOptions {
        mode: "ipv6",
        ipv4_subnet: None,
        ..NodeOptions::default()
    });
    let (a, b) = (Netns::new("p"), Netns::new("p"));
    let r = v6.add("six-a", &a).expect_ok();
    v6.add("six-b", &b).expect_ok();
    assert_eq!(r["ips"].as_array().unwrap().len(), 1);
    assert!(r["ips"][0]["address"].as_str().unwrap().ends_with("/128"));
    assert!(!a.ip(&["-4", "addr"]).contains("10.255"));
    assert!(a.ping("2001:db8:1000:1::2") && a.ping(HOST_V6));

    let v4 = Node::start(NodeOptions {
        mode: "ipv4",
        ipv6_prefix: None,
        ..NodeOptions::default()
    });
    let (c, d) = (Netns::new("p"), Netns::new("p"));
    let r = v4.add("four-c", &c).expect_ok();
    v4.add("four-d", &d).expect_ok();
    assert_eq!(r["ips"].as_array().unwrap().len(), 1);
    assert_eq!(r["ips"][0]["address"], "10.255.1.1/32");
    assert_eq!(
        r["interfaces"][1]["mtu"], 1450,
        "IPv4-only pods get the VXLAN-sized link MTU"
    );
    assert!(c.ping("10.255.1.2") && c.ping(HOST_V4));
    assert_eq!(
        c.sysctl("net/ipv6/conf/eth0/accept_ra"),
        "0",
        "no stray SLAAC even without IPv6 service"
    );
}

#[test]
fn mtu_follows_the_uplink_and_the_underlay_family() {
    let jumbo = Node::start(NodeOptions {
        uplink_mtu: 9000,
        ..NodeOptions::default()
    });
    let pod = Netns::new("p");
    let r = jumbo.add("jumbo", &pod).expect_ok();
    assert_eq!(r["interfaces"][1]["mtu"], 9000);
    assert_eq!(
        r["routes"][1]["mtu"], 8950,
        "IPv4 over VXLAN over IPv4 costs 50 bytes"
    );
    // Largest unfragmented payloads: IPv6 9000-40-8, IPv4 (route MTU 8950)-20-8.
    assert!(pod.ping_sized(HOST_V6, Some(9000 - 48)));
    assert!(pod.ping_sized(HOST_V4, Some(8950 - 28)));

    let v6_underlay = Node::start(NodeOptions {
        ipv6_underlay: true,
        ..NodeOptions::default()
    });
    let pod = Netns::new("p");
    let r = v6_underlay.add("under6", &pod).expect_ok();
    assert_eq!(
        r["routes"][1]["mtu"], 1430,
        "IPv4 over VXLAN over IPv6 costs 70 bytes"
    );
}

#[test]
fn metrics_count_requests_by_operation_and_result_and_health_endpoints_answer() {
    let node = Node::start(NodeOptions::default());
    let pod = Netns::new("p");
    node.add("m1", &pod).expect_ok();
    let _ = node.add("m1", &pod);
    node.del("m1", Some(&pod)).expect_ok();
    wait_until("the reports", || {
        node.metric(r#"weft_cni_requests_total{operation="del",result="ok"}"#) == Some(1.0)
    });
    assert_eq!(
        node.metric(r#"weft_cni_requests_total{operation="add",result="ok"}"#),
        Some(1.0)
    );
    assert_eq!(
        node.metric(r#"weft_cni_requests_total{operation="add",result="already_allocated"}"#),
        Some(1.0)
    );
    assert_eq!(
        node.metric(r#"weft_cni_request_duration_seconds_count{operation="add"}"#),
        Some(2.0)
    );
    assert_eq!(
        node.metric(r#"weft_ipam_addresses_capacity{family="ipv4"}"#),
        Some(254.0)
    );
    assert_eq!(
        node.metric(r#"weft_ipam_addresses_capacity{family="ipv6"}"#),
        Some(((1u64 << 48) - 1) as f64)
    );
    assert_eq!(
        node.metric(r#"weft_ipam_addresses_cooling{family="ipv4"}"#),
        Some(1.0)
    );
    assert_eq!(node.http_get("/healthz").0, 200);
    // The default [::]:9641 listens on both families.
    assert_eq!(node.netns.http_get("127.0.0.1:9641", "/healthz").0, 200);
    assert_eq!(
        node.netns
            .http_get(&format!("[{HOST_V6}]:9641"), "/readyz")
            .0,
        200
    );
    assert_eq!(node.http_get("/readyz").0, 200);
    assert_eq!(node.http_get("/nope").0, 404);
}

#[test]
fn re_add_right_after_del_waits_for_the_old_veth_instead_of_clashing() {
    let node = Node::start(NodeOptions::default());
    let mut names = std::collections::HashSet::new();
    for round in 0..5 {
        let pod = Netns::new("p");
        let r = node.add("again", &pod).expect_ok();
        assert!(pod.ping(HOST_V6), "round {round}");
        names.insert(r["interfaces"][0]["name"].as_str().unwrap().to_owned());
        assert_eq!(
            names.len(),
            1,
            "the host veth name is derived, so every round reuses it"
        );
        // DEL returns before weftd has removed the veth; the next ADD of the same
        // attachment reuses the name and must not fail on it.
        node.del("again", Some(&pod)).expect_ok();
    }
    wait_until("the last veth to go", || node.weft_veths().is_empty());
}

/// ADD reports a pod ready only once the kernel carries its first packets both ways.
/// Two steps of the kernel's own run on its workers, after the request that causes
/// them, and so possibly after ADD: the host veth's transmit queue is attached by the
/// link-watch work (which also sets the link's operational state UP; until then the
/// host end drops every packet, the answers to the pod included), and the pod's IPv6
/// address becomes local when the address worker adds its local route (until then
/// packets to the pod are dropped in the pod). Both are read right after ADD with
/// dumps, which leave pending kernel work alone. Each round deletes the previous
/// round's namespace first, as pods come and go on a node: its teardown holds the RTNL
/// lock those workers need, which widens the window this test looks into.
#[test]
fn a_pod_exchanges_packets_the_moment_add_returns() {
    let node = Node::start(NodeOptions::default());
    let mut previous: Option<(String, Netns)> = None;
    for round in 0..16 {
        let id = format!("ready{round}");
        let pod = Netns::new("p");
        if let Some((old_id, old_pod)) = previous.take() {
            node.del(&old_id, Some(&old_pod)).expect_ok();
            drop(old_pod);
        }
        let r = node.add(&id, &pod).expect_ok();
        let host_veth = r["interfaces"][0]["name"].as_str().unwrap().to_owned();
        let links = node.netns.ip(&["-o", "link", "show"]);
        let line = links
            .lines()
            .find(|l| l.contains(&format!(" {host_veth}@")))
            .unwrap_or_else(|| panic!("round {round}: no {host_veth} in {links}"));
        assert!(
            line.contains("state UP"),
            "round {round}: the host veth's carrier is not handled yet: {line}"
        );
        let v6 = r["ips"][0]["address"].as_str().unwrap();
        let v6 = v6.split('/').next().unwrap();
        let local = pod.ip(&["-6", "route", "show", "table", "local"]);
        assert!(
            local
                .lines()
                .any(|l| l.starts_with(&format!("local {v6} "))),
            "round {round}: {v6} is not local in the pod yet:\n{local}"
        );
        assert!(pod.ping(HOST_V6), "round {round}");
        assert!(pod.ping(HOST_V4), "round {round}");
        previous = Some((id, pod));
    }
}

/// ADD checks the host veth's settings in the kernel's echo of the veth's creation
/// instead of reading /proc/sys: the echo must report what /proc/sys holds, here with
/// namespace defaults that differ from the kernel's.
#[test]
fn a_veth_create_echo_reports_the_host_ends_settings() {
    let (host, pod) = (Netns::new("echo"), Netns::new("echo"));
    host.set_sysctls(&[
        "net.ipv6.conf.default.accept_ra=0",
        "net.ipv4.conf.default.forwarding=1",
    ]);
    let open = |ns: &Netns| weft_netlink::Netns::open(std::path::Path::new(&ns.path())).unwrap();
    let (host_ns, pod_ns) = (open(&host), open(&pod));
    let mut nl = weft_netlink::Netlink::connect_in(&host_ns).unwrap();
    let echoed = nl
        .create_veth(&weft_netlink::VethSpec {
            host_name: "echo0",
            host_mac: [0xee; 6],
            pod_name: "eth0",
            pod_mac: [0x02, 0, 0, 0, 0, 1],
            pod_netns: &pod_ns,
        })
        .unwrap()
        .expect("the kernel echoes the create");
    for (family, name) in [
        ("ipv4", "forwarding"),
        ("ipv6", "forwarding"),
        ("ipv6", "accept_ra"),
        ("ipv6", "accept_dad"),
    ] {
        let on_file = host.sysctl(&format!("net/{family}/conf/echo0/{name}"));
        let reported = echoed.conf.get(family, name).map(|v| v.to_string());
        assert_eq!(reported, Some(on_file), "{family} {name}");
    }
    assert_eq!(
        (echoed.conf.ipv6_accept_ra, echoed.conf.ipv4_forwarding),
        (Some(0), Some(1))
    );
}

/// A batch asks only its last request for an ack; a request failing before it, or the
/// last one failing, is still reported with its index, and the requests around a
/// failure are still carried out.
#[test]
fn a_batch_reports_each_failed_request_with_only_the_last_acked() {
    let ns = Netns::new("batch");
    let handle = weft_netlink::Netns::open(std::path::Path::new(&ns.path())).unwrap();
    let mut nl = weft_netlink::Netlink::connect_in(&handle).unwrap();
    let (lo, missing) = (1, 999_999);
    let up = |index| weft_netlink::messages::bring_up(index, "test", None);
    let mtu = |index, mtu| weft_netlink::messages::bring_up(index, "test", Some(mtu));
    let failures = nl
        .execute_all(&[up(missing), mtu(lo, 9000), up(missing), up(lo)])
        .unwrap();
    let indexes: Vec<usize> = failures.iter().map(|(i, _)| *i).collect();
    assert_eq!(indexes, [0, 2], "{failures:?}");
    assert!(failures
        .iter()
        .all(|(_, e)| e.errno() == Some(weft_netlink::Errno::NotFound)));
    assert!(ns.ip(&["link", "show", "lo"]).contains("mtu 9000"));
    let failures = nl.execute_all(&[up(lo), up(missing)]).unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, 1);
    assert!(nl.execute_all(&[up(lo), up(lo)]).unwrap().is_empty());
    // The socket is still in step: a lone request gets its own answer.
    assert!(nl.execute_one(up(missing)).is_err());
    assert!(nl.execute_one(up(lo)).is_ok());
}
