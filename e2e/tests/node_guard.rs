//! The node against its pods and its underlay, attacked on real namespaces: VXLAN frames
//! injected into the overlay port (from a pod of the node, a pod of another node, a pod
//! through the overlay itself, a non-peer underlay host, an old peer), packets to unused
//! addresses of the node's ranges (they die on the node with ICMP unreachable instead of
//! reaching the fabric), ARP for the pods' gateway on the uplink, and what a pod reaches
//! on its own node with `--pod-host-access` accept (the default) and drop. Each attack
//! follows proof that the same path carries legitimate packets. Topology as in
//! multi_node.rs: node N at 192.0.2.(10+N) / 2001:db8:ffff::(10+N), pods from
//! 2001:db8:1000:N::/80 and 10.255.N.0/24.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::process::Output;
use std::thread;
use std::time::Duration;
use weft_e2e::{
    pod_address, wait_until, Netns, Node, NodeOptions, Topology, TopologyOptions, Underlay,
    HOST_V4, HOST_V6,
};

const CONVERGE: Duration = Duration::from_secs(20);
const VXLAN_PORT: &str = "4789";
const VNI: &str = "1";
/// The UDP port the target pod listens on for injected inner packets.
const INNER_PORT: &str = "7777";

/// Sends one VXLAN packet over UDP to `argv[1]:argv[2]`: VNI `argv[3]`, an inner
/// Ethernet frame `argv[4]` <- `argv[5]` carrying IPv4/UDP `argv[6]` -> `argv[7]`:`argv[8]`
/// with payload `argv[9]`. Three copies, 50 ms apart, so one loss proves nothing.
const SEND_VXLAN: &str = r#"
import socket, struct, sys, time
dst, port, vni, dmac, smac, isrc, idst, iport, marker = sys.argv[1:]
mac = lambda m: bytes(int(x, 16) for x in m.split(':'))
def checksum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    return ~(s + (s >> 16)) & 0xffff
payload = marker.encode()
udp = struct.pack('!HHHH', 40000, int(iport), 8 + len(payload), 0) + payload
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                 socket.inet_aton(isrc), socket.inet_aton(idst))
ip = ip[:10] + struct.pack('!H', checksum(ip)) + ip[12:]
frame = struct.pack('!II', 0x08000000, int(vni) << 8) + mac(dmac) + mac(smac) + b'\x08\x00' + ip + udp
family = socket.AF_INET6 if ':' in dst else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
for _ in range(3):
    try:
        s.sendto(frame, (dst, int(port)))
    except OSError as e:
        print(e, file=sys.stderr)
    time.sleep(0.05)
"#;

/// Prints every UDP payload arriving on port `argv[1]`, one a line, for `argv[2]` seconds
/// or until the payload `argv[3]` arrives.
const RECEIVE: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', int(sys.argv[1])))
end = time.time() + float(sys.argv[2])
while time.time() < end:
    s.settimeout(max(0.01, end - time.time()))
    try:
        payload = s.recv(2048).decode()
        print(payload, flush=True)
        if payload == sys.argv[3]:
            break
    except socket.timeout:
        pass
"#;

/// Serves TCP on `[::]:argv[1]` (both families), answering each connection with
/// "hello", for `argv[2]` seconds.
const SERVE_TCP: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('::', int(sys.argv[1])))
s.listen(16)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    s.settimeout(max(0.01, end - time.time()))
    try:
        c, _ = s.accept()
        c.sendall(b'hello')
        c.close()
    except socket.timeout:
        pass
"#;

/// Connects to `argv[1]` port `argv[2]` with a 2 s timeout, sends an HTTP GET of
/// /healthz, prints the first line it reads ("failed: ..." when nothing answers).
const CONNECT_TCP: &str = r#"
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    c.sendall(b'GET /healthz HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n')
    print(c.recv(64).decode().splitlines()[0])
except (OSError, IndexError) as e:
    print('failed:', e)
"#;

fn python(ns: &Netns, program: &str, args: &[&str]) -> Output {
    ns.run("python3", &[&["-c", program][..], args].concat())
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `program` in `ns` on a thread (a listener), giving it time to bind.
fn background(ns: &Netns, program: &'static str, args: &[&str]) -> thread::JoinHandle<String> {
    let (name, args): (String, Vec<String>) = (
        ns.name().to_owned(),
        args.iter().map(|a| a.to_string()).collect(),
    );
    let handle = thread::spawn(move || {
        let output = std::process::Command::new("ip")
            .args(["netns", "exec", &name, "python3", "-c", program])
            .args(&args)
            .output()
            .unwrap();
        stdout(&output)
    });
    thread::sleep(Duration::from_millis(500));
    handle
}

/// An injected frame: from `sender` to `dst`'s VXLAN port, inner frame from node 2's
/// VTEP to node 1's, inner packet from an address of node 2's subnet to `pod`.
struct Injection<'a> {
    topology: &'a Topology,
    pod: &'a str,
}

impl Injection<'_> {
    fn send(&self, sender: &Netns, dst: &str, marker: &str) {
        let t = self.topology;
        let (dmac, smac) = (t.vtep_mac(0), t.vtep_mac(1));
        let gateway = t.overlay_gateway(1);
        let source = format!("{}.77", gateway.rsplit_once('.').unwrap().0);
        let args = [
            dst, VXLAN_PORT, VNI, &dmac, &smac, &source, self.pod, INNER_PORT, marker,
        ];
        let out = python(sender, SEND_VXLAN, &args);
        assert!(out.status.success(), "{out:?}");
    }
}

/// The members of one of node i's tunnel guard sets, as `nft` lists them.
fn tunnel_peers(topology: &Topology, i: usize, set: &str) -> String {
    let out = topology.nodes[i]
        .netns
        .run("nft", &["list", "set", "inet", "weft", set]);
    stdout(&out)
}

/// Rule handles of `inet weft`: equal lists mean no rule or chain was re-created.
fn rule_handles(node: &Node) -> Vec<String> {
    let out = node
        .netns
        .run("nft", &["-a", "list", "table", "inet", "weft"]);
    stdout(&out)
        .lines()
        .filter_map(|l| l.split("# handle ").nth(1).map(str::to_owned))
        .collect()
}

/// `changes=N` of weftd's last log line about `inet weft`'s set elements.
fn last_element_changes(node: &Node) -> Option<usize> {
    node.log()
        .lines()
        .rev()
        .find(|l| l.contains("set elements") && l.contains("inet weft"))
        .and_then(|l| l.split("changes=").nth(1))
        .and_then(|n| n.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn vxlan_injection(underlay: Underlay) {
    let mut topology = Topology::start(TopologyOptions {
        nodes: 2,
        underlay,
        pods_per_node: 1,
        ..TopologyOptions::default()
    });
    topology.add_pod(0);
    topology.wait_converged(CONVERGE);
    let v6_underlay = underlay == Underlay::Ipv6;
    let node1 = if v6_underlay {
        topology.underlay_v6(0).unwrap()
    } else {
        topology.underlay_v4(0).unwrap()
    };
    let target = topology.pods_of(0)[0].v4.clone().unwrap();
    // The firewall takes the peers from the datapath: it follows it by a pass.
    let (set, peer) = if v6_underlay {
        ("tunnel-peers-v6", topology.underlay_v6(1).unwrap())
    } else {
        ("tunnel-peers-v4", topology.underlay_v4(1).unwrap())
    };
    wait_until("node 2 in node 1's guard", Duration::from_secs(10), || {
        tunnel_peers(&topology, 0, set).contains(&peer)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", topology.nodes[0].log()));

    // The legitimate path: node 2 itself, from its underlay address, reaches the pod.
    assert_eq!(
        from_node2(&topology, &node1, &target, "from-peer"),
        "from-peer",
        "a peer's frame must reach the pod\n{}",
        topology.nodes[0].log()
    );

    // Every attack in one window, then the peer again: only the peer's frame arrives.
    let received = attacks(&topology, &node1, &target);
    assert_eq!(
        received.iter().collect::<Vec<_>>(),
        ["from-peer-again"],
        "only the peer's frame may arrive\n{}",
        topology.nodes[0].log()
    );

    // The peer leaves node 1's list: its addresses leave the sets by element deletes,
    // the table's rules untouched, and its frames are dropped from then on.
    let handles = rule_handles(&topology.nodes[0]);
    let changed = std::time::Instant::now();
    topology.remove_peer(0, 1);
    wait_until(
        "the old peer out of the set",
        Duration::from_secs(10),
        || !tunnel_peers(&topology, 0, set).contains(&peer),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", topology.nodes[0].log()));
    let took = changed.elapsed();
    assert_eq!(
        rule_handles(&topology.nodes[0]),
        handles,
        "no rule re-created"
    );
    let changes = last_element_changes(&topology.nodes[0]);
    let families = [topology.underlay_v4(1), topology.underlay_v6(1)]
        .iter()
        .flatten()
        .count();
    println!(
        "one peer removed: {changes:?} nft statements (one delete per family's set), \
         out of the set {took:?} after the file changed (polled every 50 ms)"
    );
    assert_eq!(changes, Some(families), "{}", topology.nodes[0].log());
    assert_eq!(
        from_node2(&topology, &node1, &target, "from-old-peer"),
        "",
        "an old peer's frame is dropped"
    );

    // The attacks are real: node 2 a peer again, and without the guard's chains on
    // either node, every one of them reaches the pod (but the one inside the overlay on
    // an IPv6 underlay: the overlay carries IPv4, and that VXLAN socket is IPv6).
    topology.write_peers_json(0, &serde_json::Value::Array(topology.peer_entries(1)));
    wait_until("the peer back in the set", Duration::from_secs(10), || {
        tunnel_peers(&topology, 0, set).contains(&peer)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", topology.nodes[0].log()));
    for node in &topology.nodes {
        for chain in ["tunnel-guard", "tunnel-guard-forward"] {
            node.netns
                .run("nft", &["flush", "chain", "inet", "weft", chain]);
        }
    }
    let received = attacks(&topology, &node1, &target);
    println!("without the guard the pod received: {received:?}");
    let inside_the_overlay = ATTACKS[4];
    let expected: BTreeSet<String> = ATTACKS
        .iter()
        .filter(|a| !v6_underlay || **a != inside_the_overlay)
        .chain(&["from-peer-again"])
        .map(|a| a.to_string())
        .collect();
    assert_eq!(received, expected);
}

/// Node 2 sends `marker` to node 1 (`node1`) for the pod at `target`; what the pod
/// received in 3 s (the first copy), empty when nothing.
fn from_node2(topology: &Topology, node1: &str, target: &str, marker: &str) -> String {
    let listening = background(
        &topology.pods_of(0)[0].netns,
        RECEIVE,
        &[INNER_PORT, "3", marker],
    );
    let injection = Injection {
        topology,
        pod: target,
    };
    injection.send(&topology.nodes[1].netns, node1, marker);
    listening.join().unwrap().trim().to_owned()
}

/// Kubernetes mode: the peers come from the WeftNodes, and so do the guard's addresses.
#[test]
fn in_kubernetes_mode_the_guard_follows_the_weftnodes() {
    let mut topology = Topology::start(TopologyOptions {
        nodes: 2,
        kubernetes: true,
        ..TopologyOptions::default()
    });
    topology.wait_converged(Duration::from_secs(30));
    let (v4, v6) = (
        topology.underlay_v4(1).unwrap(),
        topology.underlay_v6(1).unwrap(),
    );
    let trusted = |topology: &Topology| {
        (
            tunnel_peers(topology, 0, "tunnel-peers-v4").contains(&v4),
            tunnel_peers(topology, 0, "tunnel-peers-v6").contains(&v6),
        )
    };
    wait_until(
        "node-2's addresses in the guard",
        Duration::from_secs(10),
        || trusted(&topology) == (true, true),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", topology.nodes[0].log()));
    topology.delete_node(1);
    wait_until(
        "node-2's addresses out of the guard",
        Duration::from_secs(15),
        || trusted(&topology) == (false, false),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", topology.nodes[0].log()));
}

/// What [`attacks`] sends, by sender: the fabric router and the external host (not
/// peers), a pod of node 1 and a pod of node 2 (to node 1's underlay address), and a
/// pod of node 2 through the overlay (to node 1's overlay gateway).
const ATTACKS: [&str; 5] = [
    "from-non-peer-underlay-host",
    "from-external-host",
    "from-a-pod-of-the-node",
    "from-a-pod-of-a-peer",
    "inside-the-overlay",
];

/// Sends every attack at node 1 (`node1`, its underlay address), then node 2's own frame,
/// to the pod at `target` on node 1 (its first pod); what the pod received.
fn attacks(topology: &Topology, node1: &str, target: &str) -> BTreeSet<String> {
    let injection = Injection {
        topology,
        pod: target,
    };
    let (local_pod, remote_pod) = (&topology.pods_of(0)[1].netns, &topology.pods_of(1)[0].netns);
    let listening = background(
        &topology.pods_of(0)[0].netns,
        RECEIVE,
        &[INNER_PORT, "10", "from-peer-again"],
    );
    let overlay_gateway = topology.overlay_gateway(0);
    let senders = [
        (&topology.fabric, node1),
        (&topology.external, node1),
        (local_pod, node1),
        (remote_pod, node1),
        (remote_pod, overlay_gateway.as_str()),
    ];
    for ((sender, dst), marker) in senders.into_iter().zip(ATTACKS) {
        injection.send(sender, dst, marker);
    }
    thread::sleep(Duration::from_millis(500));
    injection.send(&topology.nodes[1].netns, node1, "from-peer-again");
    listening
        .join()
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn vxlan_is_accepted_only_from_current_peers_over_an_ipv4_underlay() {
    vxlan_injection(Underlay::Dual);
}

#[test]
fn vxlan_is_accepted_only_from_current_peers_over_an_ipv6_underlay() {
    vxlan_injection(Underlay::Ipv6);
}

/// Counts, in the fabric, packets node 1 sends it (by its uplink's MAC) to `addresses`.
fn count_in_fabric(topology: &Topology, addresses: &[&str]) {
    let fabric = &topology.fabric;
    let link = topology.nodes[0].netns.ip(&["link", "show", "uplink"]);
    let mac = link
        .split("link/ether ")
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap();
    let mut script = String::from(
        "table inet leak-count {\n chain pre { type filter hook prerouting priority -400;\n",
    );
    for a in addresses {
        let family = if a.contains(':') { "ip6" } else { "ip" };
        script.push_str(&format!(
            "  iifname \"fabric0\" ether saddr {mac} {family} daddr {a} counter\n"
        ));
    }
    script.push_str(" }\n}\n");
    let path = std::env::temp_dir().join(format!("{}-count.nft", fabric.name()));
    std::fs::write(&path, script).unwrap();
    let out = fabric.run("nft", &["-f", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "{out:?}");
}

/// The packets counted towards each address, in order.
fn fabric_counts(topology: &Topology) -> Vec<u64> {
    let out = topology
        .fabric
        .run("nft", &["list", "table", "inet", "leak-count"]);
    stdout(&out)
        .lines()
        .filter_map(|l| l.split("counter packets ").nth(1))
        .map(|n| n.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

/// One ping: whether it was answered, and its output (to see "Unreachable").
fn ping(ns: &Netns, addr: &str) -> (bool, String) {
    let out = ns.run("ping", &["-c", "1", "-W", "2", "-n", addr]);
    (out.status.success(), stdout(&out))
}

fn assert_unreachable(ns: &Netns, addr: &str, from: &str) {
    let (answered, text) = ping(ns, addr);
    assert!(
        !answered && text.to_lowercase().contains("unreachable"),
        "{from} to {addr}: the node must answer ICMP unreachable:\n{text}"
    );
}

#[test]
fn unused_and_cooling_addresses_die_on_the_node() {
    let mut topology = Topology::start(TopologyOptions {
        nodes: 2,
        pods_per_node: 1,
        ..TopologyOptions::default()
    });
    topology.add_pod(0);
    topology.wait_converged(CONVERGE);
    let node1 = &topology.nodes[0].netns;
    let unreachable = node1.ip(&["route", "show", "proto", "119", "type", "unreachable"])
        + &node1.ip(&["-6", "route", "show", "proto", "119", "type", "unreachable"]);
    for range in ["10.255.1.0/24", "2001:db8:1000:1::/80"] {
        assert!(
            unreachable.contains(&format!("unreachable {range}"))
                && unreachable.contains("metric 4294967295"),
            "{range}:\n{unreachable}"
        );
    }

    // A pod of node 1, DELeted: its addresses cool down, owned by no pod.
    let cooling = topology.pods.pop().unwrap();
    topology.nodes[0]
        .del(&cooling.id, Some(&cooling.netns))
        .expect_ok();
    let (cooling_v4, cooling_v6) = (cooling.v4.unwrap(), cooling.v6.unwrap());
    let (unused_v4, unused_v6) = ("10.255.1.200", "2001:db8:1000:1::ffff");
    count_in_fabric(&topology, &[unused_v4, unused_v6, &cooling_v4, &cooling_v6]);

    // The legitimate path: node 2's pod reaches node 1's pod on both families, the
    // external host reaches it over IPv6 through the fabric.
    let (pod1, pod2) = (&topology.pods_of(0)[0], &topology.pods_of(1)[0]);
    for addr in pod1.addrs() {
        assert!(pod2.ping(addr), "pod 2 to pod 1 at {addr}");
    }
    assert!(topology.external.ping(pod1.v6.as_deref().unwrap()));

    for addr in [
        unused_v4,
        unused_v6,
        cooling_v4.as_str(),
        cooling_v6.as_str(),
    ] {
        assert_unreachable(&pod1.netns, addr, "a pod of the node");
        assert_unreachable(&pod2.netns, addr, "a pod of another node");
    }
    for addr in [unused_v6, cooling_v6.as_str()] {
        assert_unreachable(&topology.external, addr, "the external host");
    }
    // The underlay itself: node 2 routes node 1's subnet into the overlay.
    assert_unreachable(&topology.nodes[1].netns, unused_v4, "node 2");
    let counts = fabric_counts(&topology);
    println!("packets the fabric got back from the nodes for unused/cooling addresses: {counts:?}");
    assert_eq!(counts, [0, 0, 0, 0], "nothing may bounce to the fabric");

    // The counters see a leak: without the routes (until weftd's next full pass, a
    // minute away) the same packets leave node 1 by its default route.
    let node1 = &topology.nodes[0].netns;
    for (family, range) in [("-4", "10.255.1.0/24"), ("-6", "2001:db8:1000:1::/80")] {
        node1.ip(&[family, "route", "del", "unreachable", range, "proto", "119"]);
    }
    let _ = ping(&pod1.netns, unused_v4);
    let _ = ping(&topology.external, unused_v6);
    let leaked = fabric_counts(&topology);
    println!("without the routes: {leaked:?}");
    assert!(leaked[0] > 0 && leaked[1] > 0, "{leaked:?}");
}

#[test]
fn the_unreachable_routes_are_restored_and_left_alone_by_peer_convergence() {
    let node = Node::start(NodeOptions {
        extra_args: vec!["--resync-seconds".into(), "1".into()],
        ..NodeOptions::default()
    });
    let show = || {
        node.netns
            .ip(&["route", "show", "proto", "119", "type", "unreachable"])
    };
    assert!(show().contains("unreachable 10.255.1.0/24"), "{}", show());
    // Full passes run every second: they must not take it for a stray peer route.
    thread::sleep(Duration::from_millis(2500));
    assert!(
        show().contains("unreachable 10.255.1.0/24"),
        "{}",
        node.log()
    );
    node.netns.ip(&[
        "route",
        "del",
        "unreachable",
        "10.255.1.0/24",
        "proto",
        "119",
        "metric",
        "4294967295",
    ]);
    wait_until(
        "the unreachable route restored",
        Duration::from_secs(5),
        || show().contains("unreachable 10.255.1.0/24"),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", node.log()));
}

#[test]
fn the_pods_gateway_answers_arp_on_pod_veths_only() {
    let topology = Topology::start(TopologyOptions {
        nodes: 1,
        pods_per_node: 1,
        ..TopologyOptions::default()
    });
    let fabric = &topology.fabric;
    let pod = &topology.pods[0].netns;
    // The legitimate paths: the node answers ARP for its own uplink address on the
    // underlay, and for the gateway on the pod's veth once the pod forgets it.
    assert!(fabric.ping("192.0.2.11"));
    pod.ip(&["neigh", "del", "169.254.1.1", "dev", "eth0"]);
    assert!(pod.ping("169.254.1.1"), "the pod resolves its gateway");
    let neighbour = pod.ip(&["neigh", "show", "169.254.1.1", "dev", "eth0"]);
    assert!(neighbour.contains("ee:ee:ee:ee:ee:ee"), "{neighbour}");

    // The underlay asks who has 169.254.1.1: nobody answers.
    fabric.ip(&["route", "add", "169.254.1.1/32", "dev", "fabric0"]);
    assert!(!fabric.ping("169.254.1.1"));
    let neighbour = fabric.ip(&["neigh", "show", "169.254.1.1"]);
    assert!(!neighbour.contains("lladdr"), "{neighbour}");

    // The rule is what stops it: without it the node claims the address on the underlay.
    let node = &topology.nodes[0].netns;
    let flushed = node.run("nft", &["flush", "chain", "arp", "weft", "input"]);
    assert!(flushed.status.success(), "{flushed:?}");
    fabric.ip(&["neigh", "flush", "dev", "fabric0"]);
    assert!(
        fabric.ping("169.254.1.1"),
        "without the rule the uplink answers"
    );
}

/// A node with a TCP listener on port `port`, and one pod.
fn host_access(access: Option<&str>, port: &str) {
    let mut extra_args = Vec::new();
    if let Some(access) = access {
        extra_args = vec!["--pod-host-access".into(), access.into()];
    }
    let node = Node::start(NodeOptions {
        extra_args,
        ..NodeOptions::default()
    });
    let pod = Netns::new("hp");
    let result = node.add("host-access", &pod).expect_ok();
    let pod_v4 = pod_address(&result, false);
    let drop = access == Some("drop");

    // Always: the pod pings its node, and the node (kubelet's probes) connects to it.
    assert!(pod.ping(HOST_V4) && pod.ping(HOST_V6), "ICMP to the node");
    let serving = background(&pod, SERVE_TCP, &[port, "4"]);
    let probe = stdout(&python(&node.netns, CONNECT_TCP, &[&pod_v4, port]));
    assert_eq!(probe.trim(), "hello", "the node reaches the pod: {probe}");
    serving.join().unwrap();

    // The node's own ports: weftd's metrics and a listener of the node.
    let metrics = stdout(&python(&pod, CONNECT_TCP, &[HOST_V4, "9641"]));
    let metrics_v6 = stdout(&python(&pod, CONNECT_TCP, &[HOST_V6, "9641"]));
    let serving = background(&node.netns, SERVE_TCP, &[port, "3"]);
    let listener = stdout(&python(&pod, CONNECT_TCP, &[HOST_V4, port]));
    serving.join().unwrap();
    println!(
        "--pod-host-access {access:?}: metrics {} / {}, listener {}",
        metrics.trim(),
        metrics_v6.trim(),
        listener.trim()
    );
    if drop {
        for refused in [&metrics, &metrics_v6, &listener] {
            assert!(refused.starts_with("failed"), "{refused}\n{}", node.log());
        }
        // DNS on the node stays open (a node-local resolver).
        let serving = background(&node.netns, SERVE_TCP, &["53", "3"]);
        let dns = stdout(&python(&pod, CONNECT_TCP, &[HOST_V4, "53"]));
        serving.join().unwrap();
        assert_eq!(dns.trim(), "hello", "{dns}");
    } else {
        for answer in [&metrics, &metrics_v6] {
            assert!(
                answer.starts_with("HTTP/1.1 200"),
                "{answer}\n{}",
                node.log()
            );
        }
        assert_eq!(listener.trim(), "hello", "{listener}");
    }
    node.del("host-access", Some(&pod)).expect_ok();
}

#[test]
fn by_default_a_pod_reaches_every_port_of_its_node() {
    host_access(None, "7801");
}

#[test]
fn with_drop_a_pod_reaches_only_icmp_replies_and_dns_on_its_node() {
    host_access(Some("drop"), "7802");
}

/// The tunnel guard's chains on every node of `topology`, as `nft` lists them.
fn guard_chains(topology: &Topology) -> Vec<Vec<String>> {
    topology
        .nodes
        .iter()
        .map(|node| {
            ["tunnel-guard", "tunnel-guard-forward"]
                .iter()
                .map(|chain| {
                    stdout(
                        &node
                            .netns
                            .run("nft", &["list", "chain", "inet", "weft", chain]),
                    )
                })
                .collect()
        })
        .collect()
}

/// Puts the saved chains back (`guarded`) or deletes them, on every node.
fn set_guard(topology: &Topology, saved: &[Vec<String>], guarded: bool) {
    for (node, chains) in topology.nodes.iter().zip(saved) {
        for (chain, listing) in ["tunnel-guard", "tunnel-guard-forward"].iter().zip(chains) {
            let _ = node
                .netns
                .run("nft", &["delete", "chain", "inet", "weft", chain]);
            if guarded {
                let path = std::env::temp_dir().join(format!("{}-{chain}.nft", node.netns.name()));
                std::fs::write(&path, listing).unwrap();
                let out = node.netns.run("nft", &["-f", path.to_str().unwrap()]);
                let _ = std::fs::remove_file(&path);
                assert!(out.status.success(), "{out:?}");
            }
        }
    }
}

/// What the tunnel guard costs pod-to-pod across nodes, per family: iperf3 with the
/// guard's chains and without them, alternating in the same namespaces and run (weftd
/// stopped once converged, so nothing restores them). Target: >= 0.97 per family.
#[test]
#[ignore = "a measurement: cargo test -p weft-e2e --test node_guard -- --ignored --nocapture"]
fn the_tunnel_guard_costs_little_pod_to_pod_throughput() {
    let mut topology = Topology::start(TopologyOptions {
        nodes: 2,
        pods_per_node: 1,
        ..TopologyOptions::default()
    });
    topology.wait_converged(CONVERGE);
    for node in &mut topology.nodes {
        node.stop();
    }
    let saved = guard_chains(&topology);
    let (client, server) = (&topology.pods_of(0)[0], &topology.pods_of(1)[0]);
    let mut rates: std::collections::BTreeMap<(&str, bool), Vec<f64>> = Default::default();
    for _round in 0..5 {
        for guarded in [true, false] {
            set_guard(&topology, &saved, guarded);
            for addr in server.addrs() {
                let family = if addr.contains(':') { "IPv6" } else { "IPv4" };
                let listening = weft_e2e::iperf3_server(&server.netns, 5201);
                let report = weft_e2e::iperf3_client(&client.netns, addr, &["-t", "3"])
                    .finish_json(Duration::from_secs(20));
                let _ = listening.finish(Duration::from_secs(5));
                let bps = report["end"]["sum_received"]["bits_per_second"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{report}"));
                rates.entry((family, guarded)).or_default().push(bps / 1e9);
            }
        }
    }
    set_guard(&topology, &saved, true);
    let median = |v: &Vec<f64>| {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut ratios = Vec::new();
    for family in ["IPv4", "IPv6"] {
        let (with, without) = (
            median(&rates[&(family, true)]),
            median(&rates[&(family, false)]),
        );
        println!(
            "{family}: guarded {with:.2} Gbit/s, unguarded {without:.2} Gbit/s, ratio {:.3} (runs {:?} / {:?})",
            with / without,
            rates[&(family, true)],
            rates[&(family, false)]
        );
        ratios.push((family, with / without));
    }
    assert!(ratios.iter().all(|(_, r)| *r >= 0.97), "{ratios:?}");
}
