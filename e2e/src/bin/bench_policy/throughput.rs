//! Pod-to-pod throughput with the server under a profile of 20 policies / 49 rules
//! against none, in one run, alternating (docs/networkpolicy-design.md §4.5).
//!
//! Namespace `bp-tput`: a server pod on node 1, a client on node 1 (same node) and one
//! on node 2 (across nodes), and an `outsider` on node 1 that the profile denies (its
//! verdict shows which profile is in force). The profile: 19 policies with two or three
//! rules each that match nothing of this traffic (ipBlocks of documentation ranges, pod
//! and namespace selectors matching no pod), then one allowing the clients on TCP 5201:
//! the longest first-packet path. Every iperf3 run is TCP, 1 stream, both families.
//!
//! Baselines: `none` is the same pods without policies on the same node. On this fleet
//! every node has isolated pods, so weftd's profile chains (`ct state established`) have
//! turned connection tracking on in every node's namespace: `none` is the tracked
//! baseline. The untracked baseline is a standalone weftd (no policy engine, no
//! conntrack user) with two pods: same node only.

use crate::fleet::{Fleet, PodRef, PodSpec};
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;
use weft_e2e::bench::turns;
use weft_e2e::{wait_until, Background, Netns, Node, NodeOptions};

const NAMESPACE: &str = "bp-tput";
const PORT: u16 = 5201;
const POLICIES: usize = 20;

/// Where a measured path runs: the label, the client's namespace and the server's
/// addresses (IPv4, IPv6).
struct Route<'a> {
    label: &'static str,
    client: &'a Netns,
    addrs: [String; 2],
}

/// Gbit/s samples per (profile, path label, family).
pub(crate) type Rates = Vec<(&'static str, &'static str, &'static str, Vec<f64>)>;

/// Runs `runs` alternations of the profiles; `time` seconds per iperf3 run.
pub(crate) fn run(fleet: &mut Fleet, runs: usize, time: u32) -> Rates {
    fleet.create_all(&[json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NAMESPACE}})]);
    let spec = |name: &str, node: usize, role: &str| PodSpec {
        namespace: NAMESPACE.into(),
        name: name.into(),
        node,
        labels: json!({"role": role}),
    };
    let pods: Vec<PodRef> = fleet.start_pods(&[
        spec("server", 0, "server"),
        spec("client-same", 0, "client"),
        spec("client-cross", 1, "client"),
        spec("outsider", 0, "outsider"),
    ]);
    let sandbox = |i: usize| &fleet.topology.pods[pods[i].index];
    let standalone = Node::start(NodeOptions::default());
    let (plain_server, plain_client) = (Netns::new("p"), Netns::new("p"));
    let plain_result = standalone.add("tput-server", &plain_server).expect_ok();
    standalone.add("tput-client", &plain_client).expect_ok();
    let plain_addrs = crate::fleet::addresses(&plain_result);
    let addrs_of =
        |v4: &Option<String>, v6: &Option<String>| [v4.clone().unwrap(), v6.clone().unwrap()];
    let server_addrs = addrs_of(&sandbox(0).v4, &sandbox(0).v6);
    let fleet_routes = [
        Route {
            label: "same node",
            client: &sandbox(1).netns,
            addrs: server_addrs.clone(),
        },
        Route {
            label: "across nodes",
            client: &sandbox(2).netns,
            addrs: server_addrs.clone(),
        },
    ];
    let plain = Route {
        label: "same node",
        client: &plain_client,
        addrs: addrs_of(&plain_addrs.0, &plain_addrs.1),
    };
    let _servers = [
        Background::spawn(&sandbox(0).netns, "iperf3", &["-s", "-p", "5201"]),
        Background::spawn(&plain_server, "iperf3", &["-s", "-p", "5201"]),
    ];
    for server in [&sandbox(0).netns, &plain_server] {
        wait_until("iperf3 to listen", Duration::from_secs(10), || {
            let out = server.run("ss", &["-Hltn", "sport = :5201"]);
            !String::from_utf8_lossy(&out.stdout).trim().is_empty()
        })
        .unwrap();
    }
    let outsider = &sandbox(3).netns;
    let target = SocketAddr::new(server_addrs[0].parse().unwrap(), PORT);
    let profiles = ["none", "policed", "untracked"];
    let mut rates: Rates = Vec::new();
    for round in 0..runs {
        for p in turns(round, profiles.len()) {
            let profile = profiles[p];
            eprintln!(
                "bench_policy: throughput run {}/{runs} {profile}",
                round + 1
            );
            let routes: Vec<&Route> = match profile {
                "untracked" => vec![&plain],
                _ => {
                    set_profile(fleet, profile == "policed", outsider, target);
                    fleet_routes.iter().collect()
                }
            };
            for path in routes {
                for (f, family) in ["IPv4", "IPv6"].iter().enumerate() {
                    let gbps = iperf(path.client, &path.addrs[f], time);
                    match rates
                        .iter_mut()
                        .find(|r| r.0 == profile && r.1 == path.label && r.2 == *family)
                    {
                        Some(r) => r.3.push(gbps),
                        None => rates.push((profile, path.label, family, vec![gbps])),
                    }
                }
            }
        }
    }
    set_profile(fleet, false, outsider, target);
    rates
}

/// Creates (or deletes) the profile's policies and waits until the outsider's verdict
/// shows it in force.
fn set_profile(fleet: &Fleet, on: bool, outsider: &Netns, target: SocketAddr) {
    let policies: Vec<Value> = (0..POLICIES).map(profile_policy).collect();
    let present = !fleet
        .kubectl(&["get", "networkpolicies", "-n", NAMESPACE, "-o", "name"])
        .trim()
        .is_empty();
    if on && !present {
        fleet.create_all(&policies);
    }
    if !on && present {
        fleet.kubectl(&["delete", "networkpolicies", "--all", "-n", NAMESPACE]);
    }
    let path = outsider.path();
    wait_until(
        "the throughput profile in force",
        Duration::from_secs(60),
        || {
            let ns = weft_netlink::Netns::open(Path::new(&path)).unwrap();
            let connects = std::thread::spawn(move || {
                let _inside = ns.enter().unwrap();
                TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok()
            });
            connects.join().unwrap() != on
        },
    )
    .unwrap();
}

/// Policy `i` of the profile: 19 that match none of the measured traffic, then the one
/// allowing the clients.
fn profile_policy(i: usize) -> Value {
    let tcp = |port: usize| json!([{"protocol": "TCP", "port": port}]);
    let ingress = if i + 1 == POLICIES {
        json!([{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                "ports": tcp(PORT.into())}])
    } else {
        let mut rules = vec![
            json!({"from": [{"ipBlock": {"cidr": format!("198.51.100.{}/29", i * 8)}},
                            {"ipBlock": {"cidr": format!("2001:db8:ffff:{i:x}::/64")}}],
                   "ports": tcp(1000 + i)}),
            json!({"from": [{"podSelector": {"matchLabels": {"app": format!("none-{i}")}}}],
                   "ports": tcp(2000 + i)}),
        ];
        if i.is_multiple_of(2) {
            rules.push(json!({"from": [{"namespaceSelector":
                {"matchLabels": {"team": format!("none-{i}")}}}]}));
        }
        Value::Array(rules)
    };
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": format!("tput-{i:02}"), "namespace": NAMESPACE},
        "spec": {"podSelector": {"matchLabels": {"role": "server"}},
                 "policyTypes": ["Ingress"], "ingress": ingress}})
}

/// One iperf3 run (TCP, 1 stream, 1 s omitted): the receiver's Gbit/s.
fn iperf(client: &Netns, addr: &str, time: u32) -> f64 {
    let time = time.to_string();
    let out = client.run(
        "iperf3",
        &[
            "-c",
            addr,
            "-p",
            "5201",
            "-t",
            &time,
            "-O",
            "1",
            "-J",
            "--connect-timeout",
            "3000",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("iperf3 to {addr}: output is not JSON ({e}): {text}"));
    json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("iperf3 to {addr}: no receiver rate: {text}"))
        / 1e9
}
