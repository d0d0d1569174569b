//! `--pod-guard`: weft against weft without its pod guard, in the same namespaces and
//! run (issue 16: "the guard costs <= 3 % of pod-to-pod throughput per family against
//! the same build without it, in one run").
//!
//! weftd is stopped on both nodes once converged (the kernel keeps weft's datapath and
//! tables when it exits), so nothing restores the chain behind the benchmark's back.
//! Before each measurement of the unguarded side, the pod guard's chain is deleted
//! from `inet weft` on both nodes (its sets stay); before each measurement of the
//! guarded side, the chain is loaded back exactly as weftd made it (`nft list chain`
//! taken at the start). Everything else (egress NAT, the tunnel's chains, conntrack)
//! stays on both sides.

use weft_e2e::{Netns, Topology};

/// The pod guard's chain, as weftd declares it.
const CHAIN: [&str; 4] = ["inet", "weft", "pod-guard", ""];

/// The guard's chain on each node, removable and restorable.
pub(crate) struct PodGuardAblation<'a> {
    nodes: Vec<(&'a Netns, String)>,
}

impl<'a> PodGuardAblation<'a> {
    /// Keeps each node's listing of the chain; weftd must be stopped.
    pub(crate) fn take(weft: &'a Topology) -> PodGuardAblation<'a> {
        let nodes = weft
            .nodes
            .iter()
            .map(|node| {
                let listing = nft(
                    &node.netns,
                    &["list", "chain", CHAIN[0], CHAIN[1], CHAIN[2]],
                );
                assert!(
                    listing.contains("hook prerouting priority raw - 10"),
                    "no pod guard on {}: {listing}",
                    node.name()
                );
                (&node.netns, listing)
            })
            .collect();
        PodGuardAblation { nodes }
    }

    /// Puts the chain in place (`guarded`) or takes it out on every node.
    pub(crate) fn set(&self, guarded: bool) {
        for (netns, listing) in &self.nodes {
            let present = netns
                .run("nft", &["list", "chain", CHAIN[0], CHAIN[1], CHAIN[2]])
                .status
                .success();
            match (guarded, present) {
                (true, false) => load(netns, listing),
                (false, true) => {
                    nft(netns, &["delete", "chain", CHAIN[0], CHAIN[1], CHAIN[2]]);
                }
                _ => {}
            }
        }
    }

    /// What the report says about the guarded side's chain.
    pub(crate) fn fact(&self) -> String {
        let rules = self.nodes.first().map_or(0, |(_, l)| l.lines().count());
        format!(
            "pod guard: chain inet weft pod-guard ({rules} lines as listed), deleted on both \
             nodes while 'no guard' is measured and loaded back for 'weft'; weftd stopped \
             after convergence on both sides"
        )
    }
}

/// `nft ARGS` in `netns`, asserting success; its stdout.
fn nft(netns: &Netns, args: &[&str]) -> String {
    let out = netns.run("nft", args);
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `nft -f` of a listing, in `netns`.
fn load(netns: &Netns, listing: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", netns.name(), "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(listing.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "loading {listing}");
}
