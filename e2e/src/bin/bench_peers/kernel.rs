//! What the kernel holds of weft's peers in a node, and the change events it emits.

use crate::cluster::{vtep_mac, Peer};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use weft_e2e::Netns;

/// weft's kernel objects in a node, counted the way an operator would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counts {
    pub(crate) routes_v4: usize,
    routes_v6: usize,
    neighbours: usize,
    fdb: usize,
}

impl Counts {
    pub(crate) fn of(ns: &Netns) -> Counts {
        let lines = |program: &str, args: &[&str]| {
            let out = ns.run(program, args);
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .filter(|l| program != "bridge" || l.contains(" dst "))
                .count()
        };
        Counts {
            routes_v4: lines("ip", &["-4", "route", "show", "proto", "119"]),
            routes_v6: lines("ip", &["-6", "route", "show", "proto", "119"]),
            neighbours: lines(
                "ip",
                &["neigh", "show", "dev", "weft-vxlan", "nud", "permanent"],
            ),
            fdb: lines("bridge", &["fdb", "show", "dev", "weft-vxlan"]),
        }
    }

    pub(crate) fn all(n: usize) -> Counts {
        Counts {
            routes_v4: n,
            routes_v6: n,
            neighbours: n,
            fdb: n,
        }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} IPv4 routes, {} IPv6 routes, {} neighbours, {} FDB entries",
            self.routes_v4, self.routes_v6, self.neighbours, self.fdb
        )
    }
}

/// Whether the kernel holds peer `peer` with subnet `subnet` (route, neighbour, FDB).
pub(crate) fn holds(ns: &Netns, subnet: Ipv4Addr, peer: &Peer) -> [bool; 3] {
    let text = |program: &str, args: &[&str]| {
        String::from_utf8_lossy(&ns.run(program, args).stdout).into_owned()
    };
    let mac = vtep_mac(subnet);
    let route = text(
        "ip",
        &[
            "-4",
            "route",
            "show",
            &format!("{subnet}/24"),
            "proto",
            "119",
        ],
    );
    let neigh = text(
        "ip",
        &["neigh", "show", &subnet.to_string(), "dev", "weft-vxlan"],
    );
    let fdb = text("bridge", &["fdb", "show", "dev", "weft-vxlan"]);
    [
        route.contains(&format!("via {subnet} dev weft-vxlan")),
        neigh.contains(&mac) && neigh.contains("PERMANENT"),
        fdb.lines()
            .any(|l| l.starts_with(&mac) && l.contains(&format!("dst {} ", peer.fdb_dst()))),
    ]
}

/// Counts kernel change notifications (routes, neighbours, FDB) while alive.
#[derive(Debug)]
pub(crate) struct Monitors {
    children: Vec<Child>,
    files: Vec<PathBuf>,
}

impl Monitors {
    pub(crate) fn start(ns: &Netns, dir: &Path) -> Monitors {
        let mut children = Vec::new();
        let mut files = Vec::new();
        for (program, args) in [
            ("ip", &["-o", "monitor", "route", "neigh"][..]),
            ("bridge", &["monitor", "fdb"][..]),
        ] {
            let file = dir.join(format!("{program}.monitor"));
            let out = std::fs::File::create(&file).unwrap();
            let child = Command::new(program)
                .args(["-n", ns.name()])
                .args(args)
                .stdout(out)
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            children.push(child);
            files.push(file);
        }
        // Let both subscribe before anything changes.
        std::thread::sleep(Duration::from_millis(300));
        Monitors { children, files }
    }

    /// Stops them; the events they saw.
    pub(crate) fn finish(mut self) -> usize {
        std::thread::sleep(Duration::from_millis(300));
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.files
            .iter()
            .map(|f| {
                std::fs::read_to_string(f)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .count()
            })
            .sum()
    }
}
