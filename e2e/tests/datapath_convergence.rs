//! weftd's convergence against the real kernel, on one namespace node with synthetic
//! peers (no traffic is sent to them): drift is repaired, a restart changes nothing, one
//! peer change costs a constant number of entries, bad input keeps the last good state,
//! SIGHUP forces a re-read, and the VXLAN flags are honoured.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use std::fs;
use std::path::PathBuf;
use std::time::Duration;
use weft_e2e::{wait_until, Node, NodeOptions, TempDir};

/// A peers file in its own directory, removed on drop.
struct PeersFile {
    dir: TempDir,
}

impl PeersFile {
    fn new() -> PeersFile {
        PeersFile {
            dir: TempDir::new("pf"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("peers.json")
    }

    /// Atomic replacement, as the README asks of writers.
    fn write(&self, peers: &Value) {
        self.write_raw(&serde_json::to_vec(peers).unwrap());
    }

    fn write_raw(&self, bytes: &[u8]) {
        let tmp = self.dir.path().join("peers.tmp");
        fs::write(&tmp, bytes).unwrap();
        fs::rename(&tmp, self.path()).unwrap();
    }
}

/// Peer n (2..): underlay 198.51.100.n on the node's uplink subnet, prefix and subnet n.
fn peer(n: u32) -> Value {
    json!({"name": format!("peer-{n}"), "underlayIPv4": format!("198.51.100.{}", n % 250 + 2),
        "underlayIPv6": format!("2001:db8:ffff::{n:x}"),
        "ipv6Prefix": format!("2001:db8:1000:{n:x}::/80"),
        "ipv4Subnet": format!("10.{}.{}.0/24", 100 + n / 256, n % 256)})
}

fn peers(range: std::ops::RangeInclusive<u32>) -> Value {
    Value::Array(range.map(peer).collect())
}

fn start(file: &PeersFile, extra: &[&str]) -> Node {
    let mut args: Vec<String> = vec![
        "--peers".into(),
        file.path().display().to_string(),
        "--ipv6-routing".into(),
        "direct".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Node::start(NodeOptions {
        node_name: Some("node-1".into()),
        extra_args: args,
        ..NodeOptions::default()
    })
}

fn metric(node: &Node, sample: &str) -> f64 {
    node.metric(sample).unwrap_or(-1.0)
}

fn wait_programmed(node: &Node, known: f64, programmed: f64) {
    wait_until("convergence", Duration::from_secs(10), || {
        metric(node, "weft_peers_known") == known
            && metric(node, "weft_peers_programmed") == programmed
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", node.log()));
}

/// weft's peer routes (both families; its ranges' unreachable routes aside),
/// neighbours and FDB entries, one per line, sorted.
fn state(node: &Node) -> Vec<String> {
    let peer_routes = ["route", "show", "proto", "119", "type", "unicast"];
    let mut lines: Vec<String> = [
        node.netns.ip(&peer_routes),
        node.netns.ip(&[&["-6"][..], &peer_routes].concat()),
        node.netns.ip(&["neigh", "show", "dev", "weft-vxlan"]),
        String::from_utf8_lossy(
            &node
                .netns
                .run("bridge", &["fdb", "show", "dev", "weft-vxlan"])
                .stdout,
        )
        .into_owned(),
    ]
    .iter()
    .flat_map(|s| s.lines().map(str::to_owned).collect::<Vec<_>>())
    .collect();
    lines.sort();
    lines
}

/// weft's IPv4 NAT table (`ip weft-nat`) and its table of both families (`inet
/// weft`, the tunnel's notrack).
const NAT_TABLE: [&str; 2] = ["ip", "weft-nat"];
const INET_TABLE: [&str; 2] = ["inet", "weft"];

/// One of weft's tables as `nft` lists it.
fn nft_table(node: &Node, table: [&str; 2]) -> String {
    let listing = node
        .netns
        .run("nft", &[&["list", "table"][..], &table].concat());
    String::from_utf8_lossy(&listing.stdout).into_owned()
}

/// The kernel's handle of one of weft's tables: a table created again gets a new one.
fn nft_table_handle(node: &Node, table: [&str; 2]) -> u64 {
    let listing = node
        .netns
        .run("nft", &[&["-j", "list", "table"][..], &table].concat());
    let json: Value = serde_json::from_slice(&listing.stdout).unwrap_or(Value::Null);
    json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|o| o["table"]["handle"].as_u64())
        .unwrap_or_else(|| panic!("no {table:?} table:\n{}\n{}", json, node.log()))
}

fn changes(node: &Node) -> (f64, f64) {
    (
        metric(node, "weft_datapath_changes_total{operation=\"upsert\"}"),
        metric(node, "weft_datapath_changes_total{operation=\"removal\"}"),
    )
}

#[test]
fn a_restart_changes_nothing_and_one_peer_change_costs_a_constant() {
    let file = PeersFile::new();
    file.write(&peers(2..=201));
    let mut node = start(&file, &[]);
    wait_programmed(&node, 200.0, 200.0);
    let handles = [NAT_TABLE, INET_TABLE].map(|t| nft_table_handle(&node, t));
    // Per peer: IPv4 route, IPv6 route, neighbour, FDB entry.
    let before = state(&node);
    assert_eq!(before.len(), 800, "{before:#?}");
    assert_eq!(changes(&node), (800.0, 0.0));

    node.restart();
    wait_programmed(&node, 200.0, 200.0);
    assert_eq!(changes(&node), (0.0, 0.0), "{}", node.log());
    assert_eq!(state(&node), before);

    // One peer moves to another underlay address: one FDB entry is replaced.
    let mut list = peers(2..=201);
    list[7]["underlayIPv4"] = "198.51.100.254".into();
    file.write(&list);
    wait_until("the move", Duration::from_secs(5), || {
        changes(&node) == (1.0, 0.0)
    })
    .unwrap_or_else(|e| panic!("{e} {:?}\n{}", changes(&node), node.log()));
    // One peer leaves: its four entries go, nothing else is touched.
    list.as_array_mut().unwrap().remove(3);
    file.write(&list);
    wait_programmed(&node, 199.0, 199.0);
    assert_eq!(changes(&node), (1.0, 4.0));
    assert_eq!(state(&node).len(), 796);
    // No rule names a peer: neither peer changes nor the restart touched the tables
    // (the pod subnet, the tunnel port and the peers' underlay addresses are set
    // elements).
    assert_eq!(
        [NAT_TABLE, INET_TABLE].map(|t| nft_table_handle(&node, t)),
        handles,
        "a table was created again"
    );
    let nat = nft_table(&node, NAT_TABLE);
    assert!(
        nat.contains("ip saddr @pod-subnets-v4 oifname != \"weft*\" masquerade"),
        "{nat}"
    );
    assert!(nat.contains("elements = { 10.255.1.0/24 }"), "{nat}");
    let inet = nft_table(&node, INET_TABLE);
    assert!(inet.contains("udp dport @tunnel-ports notrack"), "{inet}");
    assert!(inet.contains("elements = { 4789 }"), "{inet}");
    assert!(
        !nat.contains("10.100.") && !inet.contains("10.100."),
        "{nat}{inet}"
    );
    // IPv6 is never NATed, nor tracked for NAT: the one NAT rule is in the `ip` table
    // (NAT in an `inet` table turns on IPv6 connection tracking).
    assert_eq!(nat.matches("masquerade").count(), 1, "{nat}");
    assert!(
        !inet.contains("masquerade") && !inet.contains("type nat"),
        "{inet}"
    );
    // `inet weft` filters IPv6 (the guards' `ip6 saddr`), never NATs it.
    assert!(!nat.contains("ip6"), "{nat}");
}

#[test]
fn drift_is_repaired_by_the_periodic_full_pass() {
    let file = PeersFile::new();
    file.write(&peers(2..=4));
    let node = start(&file, &["--resync-seconds", "1"]);
    wait_programmed(&node, 3.0, 3.0);
    let before = state(&node);
    node.netns
        .ip(&["route", "del", "10.100.3.0/24", "proto", "119"]);
    node.netns
        .ip(&["-6", "route", "del", "2001:db8:1000:4::/80", "proto", "119"]);
    node.netns.ip(&[
        "neigh",
        "replace",
        "10.100.2.0",
        "lladdr",
        "02:00:00:00:00:01",
        "dev",
        "weft-vxlan",
    ]);
    node.netns.run(
        "bridge",
        &[
            "fdb",
            "del",
            "ee:ee:0a:64:04:00",
            "dev",
            "weft-vxlan",
            "dst",
            "198.51.100.6",
        ],
    );
    // A route of weft's protocol that no peer wants is weft's to remove.
    node.netns.ip(&[
        "route",
        "add",
        "10.99.0.0/24",
        "dev",
        "weft-vxlan",
        "proto",
        "119",
    ]);
    assert_ne!(state(&node), before);
    wait_until("drift repair", Duration::from_secs(5), || {
        state(&node) == before
    })
    .unwrap_or_else(|e| panic!("{e}\n{:#?}\n{}", state(&node), node.log()));
    assert_eq!(metric(&node, "weft_convergence_errors_total"), 0.0);

    // nftables drift: an element deleted by hand is added back without re-creating the
    // table; a rule deleted by hand makes the table be created again.
    let table = nft_table_handle(&node, NAT_TABLE);
    let inet = nft_table_handle(&node, INET_TABLE);
    let element = ["pod-subnets-v4", "{", "10.255.1.0/24", "}"];
    let deleted = node.netns.run(
        "nft",
        &[&["delete", "element"][..], &NAT_TABLE, &element].concat(),
    );
    assert!(deleted.status.success(), "{deleted:?}");
    assert!(!nft_table(&node, NAT_TABLE).contains("10.255.1.0/24"));
    wait_until("element repair", Duration::from_secs(5), || {
        nft_table(&node, NAT_TABLE).contains("elements = { 10.255.1.0/24 }")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", nft_table(&node, NAT_TABLE), node.log()));
    assert_eq!(
        nft_table_handle(&node, NAT_TABLE),
        table,
        "an element repair re-created the table"
    );
    let flushed = node.netns.run(
        "nft",
        &[&["flush", "chain"][..], &NAT_TABLE, &["postrouting"]].concat(),
    );
    assert!(flushed.status.success(), "{flushed:?}");
    wait_until("rule repair", Duration::from_secs(5), || {
        nft_table(&node, NAT_TABLE).contains("masquerade")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", nft_table(&node, NAT_TABLE), node.log()));
    assert_ne!(nft_table_handle(&node, NAT_TABLE), table);
    // Each table is kept on its own: repairing one leaves the other as it was.
    assert_eq!(nft_table_handle(&node, INET_TABLE), inet);
    assert!(nft_table(&node, NAT_TABLE).contains("elements = { 10.255.1.0/24 }"));
    assert_eq!(metric(&node, "weft_convergence_errors_total"), 0.0);

    // Routes of other protocols are never touched.
    node.netns
        .ip(&["route", "add", "10.98.0.0/24", "dev", "weft-vxlan"]);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(node.netns.ip(&["route"]).contains("10.98.0.0/24"));
}

#[test]
fn bad_input_keeps_the_last_good_state_and_bad_entries_are_skipped() {
    let file = PeersFile::new();
    file.write(&peers(2..=3));
    let node = start(&file, &[]);
    wait_programmed(&node, 2.0, 2.0);
    let good = state(&node);

    // Half-written and missing files keep the last good list in force.
    file.write_raw(b"[{\"name\": \"peer-2\", \"underlayIPv4\": ");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(state(&node), good);
    fs::remove_file(file.path()).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(state(&node), good);
    assert!(
        node.log().contains("keeping the last good peer list"),
        "{}",
        node.log()
    );

    // Bad entries are reported with their field and value, the good ones still apply.
    let mut list = peers(2..=3).as_array().unwrap().clone();
    list.push(
        json!({"name": "typo", "underlayIPv4": "198.51.100.300", "ipv4Subnet": "10.100.9.0/24"}),
    );
    list.push(json!({"name": "overlap", "underlayIPv4": "198.51.100.40", "ipv4Subnet": "10.255.1.128/25"}));
    list.push(peer(4));
    file.write(&Value::Array(list));
    // typo is dropped while parsing; overlap is known but cannot be programmed.
    wait_programmed(&node, 4.0, 3.0);
    let log = node.log();
    assert!(log.contains("underlayIPv4: '198.51.100.300'"), "{log}");
    assert!(
        log.contains("10.255.1.128/25 overlaps this node's"),
        "{log}"
    );
    assert_eq!(state(&node).len(), good.len() + 4);
}

#[test]
fn sighup_rereads_a_change_the_poll_cannot_see() {
    let file = PeersFile::new();
    file.write(&peers(2..=3));
    let node = start(&file, &[]);
    wait_programmed(&node, 2.0, 2.0);
    // Same inode, same size, same modification time: invisible to the stat poll.
    let path = file.path();
    let text = fs::read_to_string(&path).unwrap();
    let changed = text.replace("198.51.100.4", "198.51.100.9");
    assert_eq!(text.len(), changed.len());
    let stamp = file.dir.path().join("stamp");
    fs::write(&stamp, b"").unwrap();
    node.netns.run(
        "touch",
        &["-r", path.to_str().unwrap(), stamp.to_str().unwrap()],
    );
    fs::write(&path, changed).unwrap();
    node.netns.run(
        "touch",
        &["-r", stamp.to_str().unwrap(), path.to_str().unwrap()],
    );
    std::thread::sleep(Duration::from_millis(800));
    let fdb = |node: &Node| {
        String::from_utf8_lossy(
            &node
                .netns
                .run("bridge", &["fdb", "show", "dev", "weft-vxlan"])
                .stdout,
        )
        .into_owned()
    };
    assert!(fdb(&node).contains("dst 198.51.100.4"), "{}", fdb(&node));
    let pid = node.weftd_pid().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    wait_until("the re-read", Duration::from_secs(5), || {
        fdb(&node).contains("dst 198.51.100.9")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", fdb(&node), node.log()));
}

#[test]
fn vxlan_flags_are_honoured_and_a_changed_vni_replaces_the_device() {
    let file = PeersFile::new();
    file.write(&peers(2..=2));
    let mut node = start(&file, &["--vxlan-vni", "4242", "--vxlan-port", "8472"]);
    wait_programmed(&node, 1.0, 1.0);
    let link = node.netns.ip(&["-d", "link", "show", "weft-vxlan"]);
    for want in [
        "vxlan id 4242 ",
        "local 198.51.100.1 ",
        "dstport 8472 ",
        "nolearning",
        "mtu 1450",
        "ee:ee:0a:ff:01:00",
    ] {
        assert!(link.contains(want), "{want}: {link}");
    }
    assert!(node
        .netns
        .ip(&["-4", "addr", "show", "weft-vxlan"])
        .contains("10.255.1.0/32"));

    // A restart with other tunnel parameters replaces the device and re-adds its entries.
    let before = state(&node);
    let args = &mut node.options_mut().extra_args;
    let vni = args.iter().position(|a| a == "4242").unwrap();
    args[vni] = "7".into();
    node.restart();
    wait_programmed(&node, 1.0, 1.0);
    let link = node.netns.ip(&["-d", "link", "show", "weft-vxlan"]);
    assert!(link.contains("vxlan id 7 "), "{link}");
    assert_eq!(state(&node), before);
}
