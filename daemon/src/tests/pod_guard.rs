//! The pod guard's declaration (pure), and its sets kept over nfnetlink against a real
//! kernel, in a network namespace of the test's own.
use super::super::table::{ChainKind, Hook, Priority, Table};
use super::super::{Concern, Firewall, Pass};
use super::*;
use std::process::Command;
use std::sync::Mutex;

fn source(veth: &str, address: &str) -> PodSource {
    PodSource {
        veth: veth.into(),
        address: address.parse().unwrap(),
    }
}

/// A guard whose sources are whatever `sources` holds when a pass reads it.
fn guard(sources: &Arc<Mutex<Vec<PodSource>>>) -> PodGuard {
    let sources = sources.clone();
    PodGuard {
        sets: GuardSets::default(),
        sources: Arc::new(move || sources.lock().unwrap().clone()),
    }
}

#[test]
fn the_chain_runs_first_drops_router_and_dhcp_messages_then_foreign_sources() {
    let pod_guard = guard(&Arc::default());
    let mut tables = Tables::default();
    pod_guard.declare(&mut tables);
    let (declaration, elements) = tables.table(Table::Weft);
    assert!(elements.is_empty(), "elements go over nfnetlink, not nft");
    let kinds: Vec<(&str, &str)> = declaration.sets.iter().map(|s| (s.name, s.kind)).collect();
    assert_eq!(
        kinds,
        [
            (SOURCES_V4, "ifname . ipv4_addr"),
            (SOURCES_V6, "ifname . ipv6_addr")
        ]
    );
    let [chain] = &declaration.chains[..] else {
        panic!("one chain expected");
    };
    assert_eq!(
        (chain.kind, chain.hook),
        (ChainKind::Filter, Hook::Prerouting)
    );
    // Before the tunnel's notrack (raw) and connection tracking (-200).
    assert_eq!(chain.priority, Priority::PodGuard);
    assert!(Priority::PodGuard.value() < Priority::Raw.value());
    let position = |needle: &str| {
        chain
            .rules
            .iter()
            .position(|r| r.contains(needle))
            .unwrap_or_else(|| panic!("no rule with {needle}"))
    };
    let first_accept = position("@pod-sources-v4");
    for drop in [
        "nd-router-advert",
        "nd-redirect",
        "icmp type redirect",
        "udp sport",
    ] {
        assert!(
            position(drop) < first_accept,
            "{drop} must go before any accept"
        );
    }
    assert_eq!(chain.rules.last().map(String::as_str), Some("drop"));
    assert!(chain.rules[0].starts_with("iifname != \"weft*\""));
}

#[test]
fn an_allocation_allows_each_address_on_its_host_veth() {
    let allocation: Allocation = serde_json::from_value(serde_json::json!({
        "containerId": "c1", "ifname": "eth0", "ipv6": "2001:db8:1000:1::5",
        "ipv4": "10.255.1.5", "allocatedAtMs": 0
    }))
    .unwrap();
    assert_eq!(
        sources_of(&allocation),
        [
            source("weftf53f02b3bfe", "2001:db8:1000:1::5"),
            source("weftf53f02b3bfe", "10.255.1.5")
        ]
    );
}

/// `nft -j list set inet weft <set>`'s elements as `veth address` lines, sorted.
fn listed(set: &str) -> Vec<String> {
    let output = Command::new("nft")
        .args(["-j", "list", "set", "inet", "weft", set])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut lines: Vec<String> = json["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["set"]["elem"].as_array())
        .flatten()
        .map(|e| {
            let fields = e["concat"].as_array().unwrap();
            format!(
                "{} {}",
                fields[0].as_str().unwrap(),
                fields[1].as_str().unwrap()
            )
        })
        .collect();
    lines.sort();
    lines
}

/// Runs `test` on a thread in a network namespace of its own (and `nft`, which it
/// starts, with it); the namespace goes with the thread.
fn in_own_netns(test: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        test();
    })
    .join()
    .unwrap();
}

#[test]
fn passes_fill_repair_and_keep_the_sets_and_pods_change_them_between() {
    in_own_netns(|| {
        let sources = Arc::new(Mutex::new(vec![
            source("weft00000000001", "10.255.1.2"),
            source("weft00000000001", "2001:db8:1000:1::2"),
        ]));
        let pod_guard = guard(&sources);
        let firewall = Firewall::new(vec![Concern::PodGuard(pod_guard.clone())]);
        assert_eq!(firewall.sync().unwrap(), [(Table::Weft, Pass::Created)]);
        assert_eq!(listed(SOURCES_V4), ["weft00000000001 10.255.1.2"]);
        assert_eq!(listed(SOURCES_V6), ["weft00000000001 2001:db8:1000:1::2"]);
        // The listing matches the declaration (concatenated types, priority -310).
        assert_eq!(firewall.sync().unwrap(), [(Table::Weft, Pass::Elements(0))]);

        // A pod's ADD and DEL between passes; a second DEL finds nothing and is fine.
        let added = [source("weft00000000002", "10.255.1.3")];
        pod_guard.sets.admit(&added).unwrap();
        pod_guard.sets.admit(&added).unwrap();
        assert_eq!(
            listed(SOURCES_V4),
            ["weft00000000001 10.255.1.2", "weft00000000002 10.255.1.3"]
        );
        pod_guard.sets.forget(&added).unwrap();
        pod_guard.sets.forget(&added).unwrap();
        assert_eq!(listed(SOURCES_V4), ["weft00000000001 10.255.1.2"]);

        // Drift: a stray element by hand, a lost one; the next pass puts back exactly
        // the sources.
        let script = "add element inet weft pod-sources-v4 { \"weft00000000009\" . 192.0.2.9 }\n\
                      delete element inet weft pod-sources-v6 { \"weft00000000001\" . 2001:db8:1000:1::2 }\n";
        let mut nft = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        nft.stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(nft.wait().unwrap().success());
        assert_eq!(listed(SOURCES_V4).len(), 2);
        assert_eq!(firewall.sync().unwrap(), [(Table::Weft, Pass::Elements(0))]);
        assert_eq!(listed(SOURCES_V4), ["weft00000000001 10.255.1.2"]);
        assert_eq!(listed(SOURCES_V6), ["weft00000000001 2001:db8:1000:1::2"]);

        // A table deleted by hand comes back filled in the same pass.
        sources
            .lock()
            .unwrap()
            .push(source("weft00000000003", "10.255.1.4"));
        assert!(Command::new("nft")
            .args(["delete", "table", "inet", "weft"])
            .status()
            .unwrap()
            .success());
        assert_eq!(firewall.sync().unwrap(), [(Table::Weft, Pass::Created)]);
        assert_eq!(
            listed(SOURCES_V4),
            ["weft00000000001 10.255.1.2", "weft00000000003 10.255.1.4"]
        );
    });
}
