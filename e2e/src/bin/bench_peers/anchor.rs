//! The anchor: the same kernel state weftd installs, by one `ip -batch`, one
//! `bridge -batch` and one `nft -f` of weftd's own table, in a fresh node.

use crate::cluster::{change, node_netns, vtep_mac, Peer, Underlay};
use crate::kernel::{holds, Counts, Monitors};
use crate::{Args, NODE_SUBNET, VNI, VXLAN_PORT};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use weft_e2e::{Netns, TempDir};

/// What one round of the anchor measured.
#[derive(Debug, Default)]
pub(crate) struct AnchorRound {
    /// `ip -batch` + `bridge -batch` of every peer.
    pub(crate) install: Duration,
    /// `nft -f` of weftd's table.
    pub(crate) nft: Duration,
    pub(crate) counts: Counts,
    /// Per change: its `ip -batch` + `bridge -batch`.
    pub(crate) changes: Vec<Duration>,
    /// Kernel change events during all changes.
    pub(crate) events: usize,
    /// `nft list ruleset` after the install.
    pub(crate) ruleset: String,
}

/// The same kernel state as weftd's, installed by batches in a fresh node; then the
/// same single changes.
pub(crate) fn anchor_round(
    args: &Args,
    underlay: Underlay,
    peers: &[Peer],
) -> (Netns, AnchorRound) {
    let ns = node_netns(underlay);
    let dir = TempDir::new("pa");
    let (local, mtu) = underlay.local();
    let mut ip = format!(
        "link add weft-vxlan type vxlan id {VNI} dstport {VXLAN_PORT} local {local} \
         nolearning dev uplink\n\
         link set weft-vxlan mtu {mtu} address {} up\n\
         addr add {NODE_SUBNET}/32 dev weft-vxlan\n",
        vtep_mac(NODE_SUBNET)
    );
    let mut bridge = String::new();
    for p in peers {
        ip.push_str(&p.ip_add());
        bridge.push_str(&p.bridge_add());
    }
    let (ip_file, bridge_file, nft_file) = (
        dir.path().join("ip.batch"),
        dir.path().join("bridge.batch"),
        dir.path().join("table.nft"),
    );
    std::fs::write(&ip_file, ip).unwrap();
    std::fs::write(&bridge_file, bridge).unwrap();
    std::fs::write(&nft_file, weftd_table()).unwrap();

    let mut round = AnchorRound::default();
    let started = Instant::now();
    run_batches(&ns, &ip_file, &bridge_file);
    round.install = started.elapsed();
    let started = Instant::now();
    run_ok(
        Command::new("ip")
            .args(["netns", "exec", ns.name(), "nft", "-f"])
            .arg(&nft_file),
    );
    round.nft = started.elapsed();
    round.ruleset = ruleset(&ns);
    round.counts = Counts::of(&ns);
    assert_eq!(
        round.counts,
        Counts::all(peers.len()),
        "the anchor's batch did not install every peer"
    );

    let monitors = Monitors::start(&ns, dir.path());
    let mut current = peers.to_vec();
    for k in 0..args.changes {
        let (at, subnet) = change(&current, k);
        let old = current[at].clone();
        current[at].subnet = subnet;
        let new = &current[at];
        let o = old.subnet;
        let ip = format!(
            "route del {o}/24 via {o} dev weft-vxlan proto 119\n\
             neigh del {o} dev weft-vxlan\n\
             route add {subnet}/24 via {subnet} dev weft-vxlan onlink src {NODE_SUBNET} proto 119\n\
             neigh add {subnet} lladdr {} dev weft-vxlan nud permanent\n",
            vtep_mac(subnet)
        );
        let bridge = format!(
            "fdb del {} dev weft-vxlan self\n{}",
            vtep_mac(o),
            new.bridge_add()
        );
        std::fs::write(&ip_file, ip).unwrap();
        std::fs::write(&bridge_file, bridge).unwrap();
        let started = Instant::now();
        run_batches(&ns, &ip_file, &bridge_file);
        round.changes.push(started.elapsed());
        let ok = holds(&ns, subnet, new);
        assert!(
            ok.iter().all(|&b| b),
            "anchor change {k} incomplete: {ok:?}"
        );
    }
    round.events = monitors.finish();
    (ns, round)
}

/// The scripts weftd's first firewall pass runs on this node (daemon/src/firewall:
/// `Declaration::creation_script` with the egress NAT concern), as one: its `inet weft`
/// table with the tunnel-port set and the tunnel's packets untracked both ways, its `ip
/// weft-nat` table with the pod-subnet set and the masquerade of pods' IPv4 leaving
/// through a non-weft interface, and each rule's marker comment. They name no peer, so
/// a peer change leaves them alone, on both sides.
pub(crate) fn weftd_table() -> String {
    let mut script = String::from("add table ip weft\ndelete table ip weft\n");
    script += &table_script(
        "inet weft",
        "set tunnel-ports { type inet_service; }",
        &[
            (
                "tunnel-in",
                "type filter hook prerouting priority raw",
                "iifname \"uplink\" udp dport @tunnel-ports notrack",
            ),
            (
                "tunnel-out",
                "type filter hook output priority raw",
                "udp dport @tunnel-ports notrack",
            ),
        ],
        &format!("tunnel-ports {{ {VXLAN_PORT} }}"),
    );
    script += &table_script(
        "ip weft-nat",
        "set pod-subnets-v4 { type ipv4_addr; flags interval; }",
        &[(
            "postrouting",
            "type nat hook postrouting priority srcnat",
            "ip saddr @pod-subnets-v4 oifname != \"weft*\" masquerade",
        )],
        &format!("pod-subnets-v4 {{ {NODE_SUBNET}/24 }}"),
    );
    script
}

/// One table created again whole: its set, its base chains (name, type and hook, the
/// one rule) and the set's element.
fn table_script(table: &str, set: &str, chains: &[(&str, &str, &str)], element: &str) -> String {
    let mut script =
        format!("add table {table}\ndelete table {table}\ntable {table} {{\n\t{set}\n");
    for (chain, base, rule) in chains {
        let marker = rule_marker(chain, 0, rule);
        script.push_str(&format!(
            "\tchain {chain} {{\n\t\t{base}; policy accept;\n\t\t{rule} comment \"{marker}\"\n\t}}\n"
        ));
    }
    script.push_str(&format!("}}\nadd element {table} {element}\n"));
    script
}

/// weftd's marker of a declared rule (daemon/src/firewall/table.rs, `rule_marker`): the
/// chain, the rule's position and the FNV-1a hash of its text.
fn rule_marker(chain: &str, index: usize, rule: &str) -> String {
    let hash = rule.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("weft {chain}#{index} {hash:08x}")
}

/// `nft list ruleset` in `ns`: the two sides' nftables state, to compare.
pub(crate) fn ruleset(ns: &Netns) -> String {
    String::from_utf8_lossy(&ns.run("nft", &["list", "ruleset"]).stdout).into_owned()
}

/// The anchor's install: `ip -batch` then `bridge -batch` in `ns`.
fn run_batches(ns: &Netns, ip_file: &Path, bridge_file: &Path) {
    run_ok(
        Command::new("ip")
            .args(["-n", ns.name(), "-batch"])
            .arg(ip_file),
    );
    run_ok(
        Command::new("bridge")
            .args(["-n", ns.name(), "-batch"])
            .arg(bridge_file),
    );
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
