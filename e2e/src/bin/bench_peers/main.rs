//! Peer-scale convergence of weftd next to the same kernel state installed by `ip -batch`
//! and `bridge -batch`, side by side in one run on one machine (issue 3: "converging
//! 5,000 peers from empty completes in <= 10 s with weftd RSS <= 40 MiB; one peer change
//! costs O(1) netlink work, not a full resync").
//!
//! Each scenario is one node namespace with an uplink veth (`uplink`, up, its peer end
//! up too) and a peers file of N synthetic peers (5,000 by default). Peer i (1..=N):
//! `ipv6Prefix` 2001:db8:1000:<i hex>::/80, `ipv4Subnet` 10.<i / 256>.<i % 256>.0/24,
//! `underlayIPv6` 2001:db8:ffff::1:<i hex>. The node itself holds 2001:db8:1000::/80 and
//! 10.0.0.0/24. Two underlays:
//!
//! - `ipv4`: the uplink has 192.0.2.10/24 and 2001:db8:ffff::10/64, so the VXLAN runs over
//!   IPv4. Peers also carry an `underlayIPv4`; the documentation prefix has room for only
//!   240 of them, so peer i gets 192.0.2.(11 + (i - 1) % 240): several peers share an
//!   underlay address, which is fine for the kernel (FDB entries are keyed by VTEP MAC,
//!   neighbours by overlay gateway).
//! - `ipv6`: the uplink has only 2001:db8:ffff::10/64; VXLAN over IPv6, every peer's FDB
//!   destination is its own `underlayIPv6`.
//!
//! weftd runs `--mode dual --ipv6-routing direct`, so per peer it owns 4 kernel objects:
//! the IPv4 route via the peer's overlay gateway on `weft-vxlan`, the permanent neighbour
//! of that gateway, the permanent FDB entry of the peer's VTEP MAC, and the IPv6 route to
//! the peer's prefix via its underlay address; plus one nftables set element per subnet.
//!
//! Measured, per round (rounds interleave weft and the anchor, A B B A ...):
//!
//! - weft, from empty: the wall time from spawning weftd (`ip netns exec`, so the
//!   process and its start-up are included) until its /metrics show
//!   `weft_peers_programmed == N`, polled from inside the namespace every 20 ms (the
//!   time resolution). Then, untimed, the kernel is checked: `ip -4/-6 route show proto
//!   119`, `ip neigh show dev weft-vxlan nud permanent`, `bridge fdb show dev weft-vxlan`
//!   must each hold N entries. weftd's own `weft_convergence_duration_seconds{kind="full"}`
//!   is reported beside the wall time, and its peak RSS (`VmHWM`) after everything.
//! - weft, one peer change: one peer's `ipv4Subnet` moves to a fresh /24 and the file is
//!   rewritten atomically (temp file + rename). Timed from the rename until the
//!   incremental-convergence histogram counts one more pass (wall time, so it includes
//!   weftd's file poll, up to ~250 ms), beside weftd's own duration of that pass. The
//!   kernel is then checked: the new route, neighbour and FDB entry present, the old ones
//!   gone, every count still N. `ip monitor` and `bridge monitor` run through all changes:
//!   the kernel change events per peer change are the O(1) evidence on the kernel's side;
//!   a last, untimed change runs under `strace` and counts weftd's netlink syscalls and
//!   bytes, beside the bytes a dump of the same state costs (the O(1) evidence on
//!   weftd's side).
//! - anchor, from empty: in a fresh namespace with the same uplink, one `ip -batch` file
//!   (create `weft-vxlan` as the contract describes, its address, then per peer the IPv4
//!   route, the neighbour and the IPv6 route) and one `bridge -batch` file (the FDB
//!   entries), timed together from the first spawn until both exited; `nft -f` of the
//!   same nftables table is timed separately and shown in its own column.
//! - anchor, one peer change: the same change as `ip -batch` (delete + add route and
//!   neighbour) and `bridge -batch` (delete + add FDB entry); `nft` separately.
//!
//! weftd runs with `--resync-seconds 3600` so that no periodic full resync falls into a
//! measurement. Addresses are documentation prefixes and 10.0.0.0/8, only inside the
//! namespaces this program creates; everything is removed on exit (a panic hook removes
//! the namespaces too, since release builds abort on panic; e2e/bench-peers.sh also
//! cleans up on Ctrl-C).
//!
//! ```text
//! e2e/bench-peers.sh [--peers 5000] [--rounds 3] [--changes 5] [--underlay ipv4|ipv6|both]
//!                    [--anchor-only] [--out PATH]
//! ```
#![allow(clippy::unwrap_used)]

use clap::builder::RangedU64ValueParser as Ranged;
use clap::Parser as _;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weft_e2e::{
    binary, install_namespace_cleanup_hook, log_tail, proc_status_kib, report_header, spawn_logged,
    tool_version, unique_name, Netns, TempDir,
};

/// The issue's targets.
const TARGET_CONVERGENCE: Duration = Duration::from_secs(10);
const TARGET_RSS_KIB: u64 = 40 * 1024;

/// The node's own ranges and uplink addresses.
const NODE_PREFIX: &str = "2001:db8:1000::/80";
const NODE_SUBNET: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 0);
const NODE_V4: &str = "192.0.2.10";
const NODE_V6: &str = "2001:db8:ffff::10";
/// weftd's metrics listener inside the node namespace.
const METRICS_ADDR: &str = "[::1]:9641";
/// weftd's default VXLAN parameters (the contract's defaults; the anchor uses the same).
const VNI: u32 = 1;
const VXLAN_PORT: u16 = 4789;
/// How often /metrics is polled while waiting.
const POLL: Duration = Duration::from_millis(20);
/// How long convergence may take before the round is reported as failed (3x the target).
const CONVERGENCE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one peer change may take (the file poll is ~250 ms).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    let args = Args::parse();
    install_namespace_cleanup_hook();
    let facts = machine_facts(&args);
    let mut results = Vec::new();
    for underlay in args.underlay.list() {
        results.push(run_scenario(&args, underlay));
    }
    let report = render(&args, &facts, &results);
    print!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).unwrap();
        eprintln!("bench_peers: wrote {}", out.display());
    }
}

// ---- command line -----------------------------------------------------------------

/// Converging thousands of peers: weftd beside `ip -batch` and `bridge -batch` (see the
/// module documentation).
#[derive(Debug, clap::Parser)]
struct Args {
    /// Peers in the synthetic cluster (subnets 10.0.1.0/24 .. stay below 10.200.0.0,
    /// where changed subnets go; prefixes need an index up to 0xffff).
    #[arg(long, default_value_t = 5000, value_parser = Ranged::<u32>::new().range(1..=50_000))]
    peers: u32,
    /// Rounds.
    #[arg(long, default_value_t = 3, value_parser = Ranged::<usize>::new().range(1..))]
    rounds: usize,
    /// Single-peer changes timed per round.
    #[arg(long, default_value_t = 5, value_parser = Ranged::<u32>::new().range(1..=200))]
    changes: u32,
    /// The underlays measured.
    #[arg(long = "underlay", value_enum, default_value_t = Underlays::Both)]
    underlay: Underlays,
    /// Only the `ip -batch` anchor.
    #[arg(long)]
    anchor_only: bool,
    /// Also write the report here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `--underlay`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Underlays {
    Ipv4,
    Ipv6,
    Both,
}

impl Underlays {
    fn list(self) -> Vec<Underlay> {
        match self {
            Underlays::Ipv4 => vec![Underlay::Ipv4],
            Underlays::Ipv6 => vec![Underlay::Ipv6],
            Underlays::Both => vec![Underlay::Ipv4, Underlay::Ipv6],
        }
    }
}

// ---- cleanup ----------------------------------------------------------------------

// ---- the synthetic cluster --------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Underlay {
    /// The uplink has IPv4 and IPv6: VXLAN over IPv4.
    Ipv4,
    /// The uplink has only IPv6: VXLAN over IPv6.
    Ipv6,
}

impl Underlay {
    fn label(self) -> &'static str {
        match self {
            Underlay::Ipv4 => "IPv4 underlay",
            Underlay::Ipv6 => "IPv6 underlay",
        }
    }

    /// The VXLAN source address and the IPv4 routes' MTU (1500 - 50 or - 70).
    fn local(self) -> (&'static str, u32) {
        match self {
            Underlay::Ipv4 => (NODE_V4, 1450),
            Underlay::Ipv6 => (NODE_V6, 1430),
        }
    }
}

/// One synthetic peer.
#[derive(Debug, Clone)]
struct Peer {
    index: u32,
    subnet: Ipv4Addr,
    underlay_v4: Option<Ipv4Addr>,
    underlay_v6: Ipv6Addr,
    prefix: Ipv6Addr,
}

impl Peer {
    fn new(i: u32, underlay: Underlay) -> Peer {
        let [hi, lo] = (i as u16).to_be_bytes();
        Peer {
            index: i,
            subnet: Ipv4Addr::new(10, hi, lo, 0),
            underlay_v4: (underlay == Underlay::Ipv4)
                .then(|| Ipv4Addr::new(192, 0, 2, 11 + ((i - 1) % 240) as u8)),
            underlay_v6: Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 1, i as u16),
            prefix: Ipv6Addr::new(0x2001, 0xdb8, 0x1000, i as u16, 0, 0, 0, 0),
        }
    }

    fn json(&self) -> Value {
        let mut entry = json!({
            "name": format!("peer-{}", self.index),
            "underlayIPv6": self.underlay_v6.to_string(),
            "ipv6Prefix": format!("{}/80", self.prefix),
            "ipv4Subnet": format!("{}/24", self.subnet),
        });
        if let Some(v4) = self.underlay_v4 {
            entry["underlayIPv4"] = json!(v4.to_string());
        }
        entry
    }

    /// The FDB destination: the peer's underlay address of the node's underlay family.
    fn fdb_dst(&self) -> String {
        match self.underlay_v4 {
            Some(v4) => v4.to_string(),
            None => self.underlay_v6.to_string(),
        }
    }

    /// ip -batch lines that install this peer (as weftd does per the contract).
    fn ip_add(&self) -> String {
        let s = self.subnet;
        format!(
            "route add {s}/24 via {s} dev weft-vxlan onlink src {NODE_SUBNET} proto 119\n\
             neigh add {s} lladdr {} dev weft-vxlan nud permanent\n\
             route add {}/80 via {} dev uplink proto 119\n",
            vtep_mac(s),
            self.prefix,
            self.underlay_v6
        )
    }

    fn bridge_add(&self) -> String {
        format!(
            "fdb add {} dev weft-vxlan dst {} self permanent\n",
            vtep_mac(self.subnet),
            self.fdb_dst()
        )
    }
}

/// ee:ee + the 4 bytes of the subnet's network address (the contract's VTEP MAC).
fn vtep_mac(subnet: Ipv4Addr) -> String {
    let [a, b, c, d] = subnet.octets();
    format!("ee:ee:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

fn peers(n: u32, underlay: Underlay) -> Vec<Peer> {
    (1..=n).map(|i| Peer::new(i, underlay)).collect()
}

/// Change k (0-based) moves one peer, spread over the list, to 10.200.k.0/24.
fn change(peers: &[Peer], k: u32) -> (usize, Ipv4Addr) {
    let n = peers.len();
    let at = (k as usize * 997 + n / 2) % n;
    (at, Ipv4Addr::new(10, 200, k as u8, 0))
}

/// Writes the peers file atomically (temp file + rename), as the contract asks.
fn write_peers(path: &Path, peers: &[Peer]) {
    let doc = Value::Array(peers.iter().map(Peer::json).collect());
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&doc).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A node namespace with its uplink veth, addressed for the underlay.
fn node_netns(underlay: Underlay) -> Netns {
    let ns = Netns::new("pk");
    ns.ip(&[
        "link",
        "add",
        "uplink",
        "type",
        "veth",
        "peer",
        "name",
        "uplink-peer",
    ]);
    if underlay == Underlay::Ipv4 {
        ns.add_address("uplink", &format!("{NODE_V4}/24"));
    }
    ns.add_address("uplink", &format!("{NODE_V6}/64"));
    ns.ip(&["link", "set", "uplink", "up"]);
    ns.ip(&["link", "set", "uplink-peer", "up"]);
    ns
}

// ---- kernel state -----------------------------------------------------------------

/// weft's kernel objects in a node, counted the way an operator would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Counts {
    routes_v4: usize,
    routes_v6: usize,
    neighbours: usize,
    fdb: usize,
}

impl Counts {
    fn of(ns: &Netns) -> Counts {
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

    fn all(n: usize) -> Counts {
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
fn holds(ns: &Netns, subnet: Ipv4Addr, peer: &Peer) -> [bool; 3] {
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
struct Monitors {
    children: Vec<Child>,
    files: Vec<PathBuf>,
}

impl Monitors {
    fn start(ns: &Netns, dir: &Path) -> Monitors {
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
    fn finish(mut self) -> usize {
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

// ---- weftd --------------------------------------------------------------------------

/// weftd running in a node namespace; killed on drop.
#[derive(Debug)]
struct Weftd {
    child: Child,
    log: PathBuf,
}

impl Weftd {
    fn spawn(ns: &Netns, dir: &Path, peers_file: &Path) -> Weftd {
        let log = dir.join("weftd.log");
        let path = |p: &Path| p.display().to_string();
        let args = [
            ("--node-name", "node-0".to_owned()),
            ("--mode", "dual".to_owned()),
            ("--ipv6-prefix", NODE_PREFIX.to_owned()),
            ("--ipv4-subnet", format!("{NODE_SUBNET}/24")),
            ("--state-dir", path(&dir.join("state"))),
            ("--socket", path(&dir.join("weftd.sock"))),
            ("--metrics-addr", METRICS_ADDR.to_owned()),
            ("--underlay-interface", "uplink".to_owned()),
            ("--ipv6-routing", "direct".to_owned()),
            ("--peers", path(peers_file)),
            ("--resync-seconds", "3600".to_owned()),
            ("--vxlan-vni", VNI.to_string()),
            ("--vxlan-port", VXLAN_PORT.to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value]);
        let child = spawn_logged(ns.name(), &binary("weftd"), args, &log);
        Weftd { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<String> {
        self.child
            .try_wait()
            .ok()
            .flatten()
            .map(|status| status.to_string())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        log_tail(&self.log, 20)
    }

    /// Lines of its log at WARN or ERROR.
    fn complaints(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .map(str::to_owned)
            .collect()
    }

    /// (VmHWM, VmRSS) in KiB.
    fn rss_kib(&self) -> (u64, u64) {
        let pid = self.pid();
        (proc_status_kib(pid, "VmHWM"), proc_status_kib(pid, "VmRSS"))
    }
}

impl Drop for Weftd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One /metrics scrape.
#[derive(Debug, Clone, Default)]
struct Metrics(String);

impl Metrics {
    /// The value of one sample (exact name with labels).
    fn get(&self, sample: &str) -> Option<f64> {
        self.0.lines().find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    fn or0(&self, sample: &str) -> f64 {
        self.get(sample).unwrap_or(0.0)
    }

    fn programmed(&self) -> Option<f64> {
        self.get("weft_peers_programmed")
    }

    /// (count, sum) of the convergence histogram for `kind`.
    fn passes(&self, kind: &str) -> (f64, f64) {
        (
            self.or0(&format!(
                "weft_convergence_duration_seconds_count{{kind=\"{kind}\"}}"
            )),
            self.or0(&format!(
                "weft_convergence_duration_seconds_sum{{kind=\"{kind}\"}}"
            )),
        )
    }
}

/// Scrapes weftd's /metrics from inside its namespace.
#[derive(Debug)]
struct Probe {
    ns: weft_netlink::Netns,
}

impl Probe {
    fn new(ns: &Netns) -> Probe {
        Probe {
            ns: weft_netlink::Netns::open(Path::new(&ns.path())).unwrap(),
        }
    }

    fn scrape(&self) -> Option<Metrics> {
        std::thread::scope(|s| {
            s.spawn(|| {
                let _inside = self.ns.enter().unwrap();
                http_get(METRICS_ADDR, "/metrics").map(Metrics)
            })
            .join()
            .unwrap()
        })
    }

    /// Scrapes every [`POLL`] until `done` holds, `weftd` exits or `deadline` passes;
    /// the instant the satisfying scrape returned, and that scrape.
    fn until(
        &self,
        weftd: &mut Weftd,
        deadline: Instant,
        done: impl Fn(&Metrics) -> bool,
    ) -> Result<(Instant, Metrics), String> {
        let mut last = Metrics::default();
        loop {
            let scraped = self.scrape();
            let now = Instant::now();
            if let Some(m) = scraped {
                if done(&m) {
                    return Ok((now, m));
                }
                last = m;
            }
            if let Some(status) = weftd.exited() {
                return Err(format!("weftd exited ({status}):\n{}", weftd.log_tail()));
            }
            if now > deadline {
                return Err(format!(
                    "timed out; last weft_peers_known {:?}, weft_peers_programmed {:?}; \
                     weftd's log ends:\n{}",
                    last.get("weft_peers_known"),
                    last.programmed(),
                    weftd.log_tail()
                ));
            }
            std::thread::sleep(POLL);
        }
    }
}

/// An HTTP/1.1 GET from the calling thread's namespace; the body on status 200.
fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.split(' ')
        .nth(1)
        .filter(|s| *s == "200")
        .map(|_| body.to_owned())
}

// ---- one scenario -----------------------------------------------------------------

/// What one round of weft measured.
#[derive(Debug, Default)]
struct WeftRound {
    /// Spawn to `weft_peers_programmed == N`.
    converge: Option<Duration>,
    /// weftd's own full passes (count, total seconds) by then.
    full_passes: (f64, f64),
    counts: Counts,
    /// Per change: wall time from the rename, weftd's own incremental pass (or the
    /// full pass it ran instead), and whether the kernel was right afterwards.
    changes: Vec<ChangeSample>,
    /// Kernel change events during all changes.
    events: usize,
    /// Netlink syscalls and bytes of one traced change.
    traced: Option<Traced>,
    rss_hwm_kib: u64,
    rss_kib: u64,
    errors_total: f64,
    complaints: Vec<String>,
    failure: Option<String>,
}

#[derive(Debug, Clone)]
struct ChangeSample {
    wall: Duration,
    pass: Duration,
    kind: &'static str,
    kernel_ok: bool,
}

/// Netlink syscalls and the bytes they moved.
#[derive(Debug, Clone, Copy, Default)]
struct NetlinkIo {
    syscalls: usize,
    sent: u64,
    received: u64,
}

impl NetlinkIo {
    fn bytes(&self) -> u64 {
        self.sent + self.received
    }
}

impl std::fmt::Display for NetlinkIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} syscalls, {} B sent, {} B received",
            self.syscalls, self.sent, self.received
        )
    }
}

/// The netlink traffic of one traced change.
#[derive(Debug, Clone, Copy, Default)]
struct Traced {
    /// weftd's own threads (rtnetlink).
    own: NetlinkIo,
    /// Its child processes (`nft`, nfnetlink).
    children: NetlinkIo,
    /// Bytes a dump of the node's routes, neighbours and FDB receives (what a full
    /// resync reads at least once).
    dump_bytes: u64,
}

/// What one round of the anchor measured.
#[derive(Debug, Default)]
struct AnchorRound {
    install: Duration,
    nft: Duration,
    counts: Counts,
    changes: Vec<Duration>,
    changes_nft: Vec<Duration>,
    events: usize,
}

#[derive(Debug)]
struct ScenarioResult {
    underlay: Underlay,
    weft: Vec<WeftRound>,
    anchor: Vec<AnchorRound>,
    /// One weft round with a tenth of the peers: a change must cost the same there.
    small: Option<WeftRound>,
    small_n: usize,
}

fn run_scenario(args: &Args, underlay: Underlay) -> ScenarioResult {
    let peers = peers(args.peers, underlay);
    let mut result = ScenarioResult {
        underlay,
        weft: Vec::new(),
        anchor: Vec::new(),
        small: None,
        small_n: (args.peers as usize / 10).max(10).min(args.peers as usize),
    };
    // Namespaces stay until the scenario is done: deleting one with 20,000 objects
    // makes the kernel tear it down in the background, which would compete with the
    // next measurement.
    let mut keep = Vec::new();
    for round in 0..args.rounds {
        // A B, B A, A B ...: each side goes first equally often.
        let weft_first = round % 2 == 0;
        for side in 0..2 {
            let is_weft = (side == 0) == weft_first;
            // A weftd that did not converge once is not timed again (each try would
            // cost the whole timeout); the report says so.
            let weft_failed = result.weft.iter().any(|w| w.converge.is_none());
            if is_weft && !args.anchor_only && weft_failed {
                eprintln!("bench_peers: weft round skipped: an earlier round did not converge");
            } else if is_weft && !args.anchor_only {
                eprintln!(
                    "bench_peers: {} round {}/{} weft",
                    underlay.label(),
                    round + 1,
                    args.rounds
                );
                let (ns, r) = weft_round(args, underlay, &peers);
                if let Some(f) = &r.failure {
                    eprintln!("bench_peers: weft failed: {f}");
                }
                result.weft.push(r);
                keep.push(ns);
            } else if !is_weft {
                eprintln!(
                    "bench_peers: {} round {}/{} anchor",
                    underlay.label(),
                    round + 1,
                    args.rounds
                );
                let (ns, r) = anchor_round(args, underlay, &peers);
                result.anchor.push(r);
                keep.push(ns);
            }
            settle();
        }
    }
    if !args.anchor_only {
        eprintln!(
            "bench_peers: {} weft with {} peers (the O(1) comparison)",
            underlay.label(),
            result.small_n
        );
        let small = &peers[..result.small_n];
        let (ns, r) = weft_round(args, underlay, small);
        if let Some(f) = &r.failure {
            eprintln!("bench_peers: weft failed: {f}");
        }
        result.small = Some(r);
        keep.push(ns);
    }
    drop(keep);
    settle();
    result
}

/// Lets background work of the previous step (namespace teardown, page cache) finish.
fn settle() {
    std::thread::sleep(Duration::from_millis(500));
}

fn weft_round(args: &Args, underlay: Underlay, peers: &[Peer]) -> (Netns, WeftRound) {
    let ns = node_netns(underlay);
    let dir = TempDir::new("pk");
    let peers_file = dir.path().join("peers.json");
    let mut current = peers.to_vec();
    write_peers(&peers_file, &current);
    let probe = Probe::new(&ns);
    let n = peers.len();
    let mut round = WeftRound::default();

    let started = Instant::now();
    let mut weftd = Weftd::spawn(&ns, dir.path(), &peers_file);
    let converged = probe.until(&mut weftd, started + CONVERGENCE_TIMEOUT, |m| {
        m.programmed() == Some(n as f64)
    });
    // Whatever fails, the round ends with weftd's memory, errors and log (below).
    'measure: {
        match converged {
            Ok((at, m)) => {
                round.converge = Some(at - started);
                round.full_passes = m.passes("full");
            }
            Err(e) => {
                round.failure = Some(format!("convergence of {n} peers: {e}"));
                round.counts = Counts::of(&ns);
                break 'measure;
            }
        }
        round.counts = Counts::of(&ns);
        if round.counts != Counts::all(n) {
            round.failure = Some(format!(
                "weft_peers_programmed == {n}, but the kernel holds {}",
                round.counts
            ));
        }

        // One peer change at a time, timed; kernel events counted throughout.
        let monitors = Monitors::start(&ns, dir.path());
        for k in 0..args.changes {
            match weft_change(&probe, &mut weftd, &ns, &peers_file, &mut current, k) {
                Ok(sample) => round.changes.push(sample),
                Err(e) => {
                    round.failure.get_or_insert(format!("change {k}: {e}"));
                    break;
                }
            }
        }
        round.events = monitors.finish();
        if round.failure.is_some() {
            break 'measure;
        }
        round.traced = traced_change(&probe, &mut weftd, &ns, &peers_file, &mut current, args)
            .map_err(|e| eprintln!("bench_peers: traced change: {e}"))
            .ok();
        let after = Counts::of(&ns);
        if after != Counts::all(n) {
            round.failure = Some(format!("after the changes the kernel holds {after}"));
        }
    }
    (round.rss_hwm_kib, round.rss_kib) = weftd.rss_kib();
    round.errors_total = probe
        .scrape()
        .map_or(0.0, |m| m.or0("weft_convergence_errors_total"));
    round.complaints = weftd.complaints();
    drop(weftd);
    (ns, round)
}

/// Applies change `k` to `current`, writes the file, waits for weftd's next pass.
fn weft_change(
    probe: &Probe,
    weftd: &mut Weftd,
    ns: &Netns,
    peers_file: &Path,
    current: &mut [Peer],
    k: u32,
) -> Result<ChangeSample, String> {
    let before = probe.scrape().ok_or("no /metrics")?;
    let (inc0, full0) = (before.passes("incremental"), before.passes("full"));
    let (at, subnet) = change(current, k);
    let old = current[at].subnet;
    current[at].subnet = subnet;
    let n = current.len() as f64;
    let started = Instant::now();
    write_peers(peers_file, current);
    let (seen, m) = probe.until(weftd, started + CHANGE_TIMEOUT, |m| {
        (m.passes("incremental").0 > inc0.0 || m.passes("full").0 > full0.0)
            && m.programmed() == Some(n)
    })?;
    let (inc1, full1) = (m.passes("incremental"), m.passes("full"));
    let (kind, pass) = if inc1.0 > inc0.0 {
        ("incremental", (inc1.1 - inc0.1) / (inc1.0 - inc0.0))
    } else {
        ("full", (full1.1 - full0.1) / (full1.0 - full0.0))
    };
    let new_ok = holds(ns, subnet, &current[at]);
    let old_gone = holds(ns, old, &current[at]);
    Ok(ChangeSample {
        wall: seen - started,
        pass: Duration::from_secs_f64(pass.max(0.0)),
        kind,
        kernel_ok: new_ok.iter().all(|&b| b) && old_gone.iter().all(|&b| !b),
    })
}

/// One more change with weftd under `strace`: its netlink syscalls and bytes.
fn traced_change(
    probe: &Probe,
    weftd: &mut Weftd,
    ns: &Netns,
    peers_file: &Path,
    current: &mut [Peer],
    args: &Args,
) -> Result<Traced, String> {
    let out = std::env::temp_dir().join(format!("weft-bench-{}.strace", unique_name("st")));
    // weftd's threads; any other pid in the trace is a child it ran (nft).
    let own: BTreeSet<u32> = std::fs::read_dir(format!("/proc/{}/task", weftd.pid()))
        .map_err(|e| format!("weftd's threads: {e}"))?
        .flatten()
        .filter_map(|t| t.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-yy", "-s", "0", "-e", "signal=none"])
        .args([
            "-e",
            "trace=sendmsg,recvmsg,sendto,recvfrom,sendmmsg,recvmmsg,write,read",
        ])
        .arg("-o")
        .arg(&out)
        .args(["-p", &weftd.pid().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("strace: {e}"))?;
    std::thread::sleep(Duration::from_millis(500));
    let sample = weft_change(probe, weftd, ns, peers_file, current, args.changes);
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status();
    let _ = strace.wait();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    sample?;
    let mut traced = Traced {
        dump_bytes: dump_bytes(ns),
        ..Traced::default()
    };
    for (pid, io) in netlink_io(&text) {
        let side = if own.contains(&pid) {
            &mut traced.own
        } else {
            &mut traced.children
        };
        side.syscalls += 1;
        side.sent += io.sent;
        side.received += io.received;
    }
    Ok(traced)
}

/// Netlink syscalls in `strace -f -yy` output (`-yy` names netlink sockets
/// `NETLINK:`): per syscall, the pid that made it and the bytes it moved.
fn netlink_io(text: &str) -> Vec<(u32, NetlinkIo)> {
    let mut calls = Vec::new();
    for line in text.lines().filter(|l| l.contains("NETLINK")) {
        // "123 call(...", "[pid 123] call(..." or, for a lone process, "call(...".
        let (pid, rest) = match line.strip_prefix("[pid") {
            Some(tail) => tail.split_once(']').unwrap_or(("", tail)),
            None => line.split_once(' ').unwrap_or(("", line)),
        };
        let (pid, rest) = match pid.trim().parse::<u32>() {
            Ok(pid) => (pid, rest.trim_start()),
            Err(_) => (0, line),
        };
        let Some(call) = rest.split('(').next() else {
            continue;
        };
        let bytes: u64 = line
            .rsplit(" = ")
            .next()
            .and_then(|r| r.split_whitespace().next())
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let mut io = NetlinkIo {
            syscalls: 1,
            ..NetlinkIo::default()
        };
        if call.starts_with("send") || call == "write" {
            io.sent = bytes;
        } else {
            io.received = bytes;
        }
        calls.push((pid, io));
    }
    calls
}

/// Bytes that dumping the node's IPv4 and IPv6 routes, neighbours and FDB receives.
fn dump_bytes(ns: &Netns) -> u64 {
    let dumps: [(&str, &[&str]); 4] = [
        ("ip", &["-4", "route", "show"]),
        ("ip", &["-6", "route", "show"]),
        ("ip", &["neigh", "show"]),
        ("bridge", &["fdb", "show"]),
    ];
    let mut total = 0;
    for (program, args) in dumps {
        let out = Command::new("strace")
            .args(["-f", "-qq", "-yy", "-s", "0", "-o", "/dev/stderr"])
            .args(["-e", "trace=recvmsg,recvfrom", program, "-n", ns.name()])
            .args(args)
            .stdout(Stdio::null())
            .output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stderr);
            total += netlink_io(&text)
                .iter()
                .map(|(_, io)| io.received)
                .sum::<u64>();
        }
    }
    total
}

// ---- the anchor -------------------------------------------------------------------

fn anchor_round(args: &Args, underlay: Underlay, peers: &[Peer]) -> (Netns, AnchorRound) {
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
    std::fs::write(&nft_file, nft_table(peers)).unwrap();

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
        let nft = format!(
            "delete element ip weft overlay {{ {o}/24 }}\n\
             add element ip weft overlay {{ {subnet}/24 }}\n"
        );
        std::fs::write(&ip_file, ip).unwrap();
        std::fs::write(&bridge_file, bridge).unwrap();
        std::fs::write(&nft_file, nft).unwrap();
        let started = Instant::now();
        run_batches(&ns, &ip_file, &bridge_file);
        round.changes.push(started.elapsed());
        let started = Instant::now();
        run_ok(
            Command::new("ip")
                .args(["netns", "exec", ns.name(), "nft", "-f"])
                .arg(&nft_file),
        );
        round.changes_nft.push(started.elapsed());
        let ok = holds(&ns, subnet, new);
        assert!(
            ok.iter().all(|&b| b),
            "anchor change {k} incomplete: {ok:?}"
        );
    }
    round.events = monitors.finish();
    (ns, round)
}

/// The nftables table of the contract: the overlay set (own subnet and every peer's)
/// and the masquerade of pod IPv4 leaving the overlay.
fn nft_table(peers: &[Peer]) -> String {
    let mut elements = format!("{NODE_SUBNET}/24");
    for p in peers {
        write!(elements, ", {}/24", p.subnet).unwrap();
    }
    format!(
        "table ip weft {{\n\
         \tset overlay {{ type ipv4_addr; flags interval; elements = {{ {elements} }} }}\n\
         \tchain postrouting {{ type nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {NODE_SUBNET}/24 ip daddr != @overlay masquerade\n\
         \t}}\n\
         }}\n"
    )
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

// ---- report -----------------------------------------------------------------------

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    v.sort();
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    })
}

fn time(d: Option<Duration>) -> String {
    match d {
        None => "—".into(),
        Some(d) if d >= Duration::from_secs(1) => format!("{:.2} s", d.as_secs_f64()),
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1000.0),
    }
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => format!("{:.2}", a.as_secs_f64() / b.as_secs_f64()),
        _ => "—".into(),
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "MET"
    } else {
        "MISSED"
    }
}

fn machine_facts(args: &Args) -> Vec<String> {
    let (mut facts, profile) = weft_e2e::machine_facts("bench_peers");
    facts.extend([
        format!(
            "weftd build profile: {profile}; anchor: {}, {}",
            tool_version("ip", "-V"),
            tool_version("nft", "--version")
        ),
        format!(
            "{} peers, {} rounds (weft and anchor interleaved), {} timed changes per round; \
             weftd --mode dual --ipv6-routing direct --resync-seconds 3600; state under {}",
            args.peers,
            args.rounds,
            args.changes,
            std::env::temp_dir().display()
        ),
    ]);
    facts
}

fn render(args: &Args, facts: &[String], results: &[ScenarioResult]) -> String {
    let n = args.peers;
    let mut out = report_header(
        &format!("Peer-scale convergence: weftd vs ip -batch + bridge -batch ({n} peers)"),
        facts,
    );
    writeln!(
        out,
        "- per peer: IPv4 route + permanent neighbour + permanent FDB entry on weft-vxlan, \
         IPv6 route via the peer's underlay (4 kernel objects), one nftables set element\n"
    )
    .unwrap();
    writeln!(
        out,
        "| scenario | weft | anchor (ip -batch + bridge -batch) | ratio | anchor + nft -f | ratio |"
    )
    .unwrap();
    writeln!(out, "|---|---|---|---|---|---|").unwrap();
    let mut verdicts = Vec::new();
    let mut notes = String::new();
    for r in results {
        render_rows(&mut out, n, r);
        render_notes(&mut notes, r);
        if !args.anchor_only {
            verdicts.extend(scenario_verdicts(n, r));
        }
    }
    writeln!(
        out,
        "\nweft's times are wall-clock from the outside, resolved to the {} ms /metrics poll; \
         ratios are weft / anchor (lower is better for weft).\n",
        POLL.as_millis()
    )
    .unwrap();
    writeln!(out, "Notes:\n\n{notes}").unwrap();
    if !verdicts.is_empty() {
        writeln!(out, "Targets:\n").unwrap();
        for v in verdicts {
            writeln!(out, "- {v}").unwrap();
        }
    }
    out
}

/// Median of weftd's own incremental passes over `rounds`.
fn median_pass<'a>(rounds: impl Iterator<Item = &'a WeftRound>) -> Option<Duration> {
    median(rounds.flat_map(|w| &w.changes).map(|c| c.pass).collect())
}

/// Kernel change events per peer change.
fn per_change(events: usize, changes: usize) -> String {
    if changes == 0 {
        "—".to_owned()
    } else {
        format!("{:.1}", events as f64 / changes as f64)
    }
}

fn render_rows(out: &mut String, n: u32, r: &ScenarioResult) {
    let label = r.underlay.label();
    let converge = median(r.weft.iter().filter_map(|w| w.converge).collect());
    let full_pass = median(
        r.weft
            .iter()
            .filter(|w| w.converge.is_some() && w.full_passes.0 > 0.0)
            .map(|w| Duration::from_secs_f64(w.full_passes.1 / w.full_passes.0))
            .collect(),
    );
    let install = median(r.anchor.iter().map(|a| a.install).collect());
    let install_nft = median(r.anchor.iter().map(|a| a.install + a.nft).collect());
    let rounds = r.weft.len().max(r.anchor.len());
    let mut row = |cells: [String; 6]| writeln!(out, "| {} |", cells.join(" | ")).unwrap();
    let blank = String::new;
    row([
        format!("{n} peers from empty, {label}: spawn to all programmed (median of {rounds})"),
        time(converge),
        time(install),
        ratio(converge, install),
        time(install_nft),
        ratio(converge, install_nft),
    ]);
    row([
        "… of which weftd's full convergence pass (its metric)".into(),
        time(full_pass),
        blank(),
        blank(),
        blank(),
        blank(),
    ]);
    let samples: Vec<&ChangeSample> = r.weft.iter().flat_map(|w| &w.changes).collect();
    let wall = median(samples.iter().map(|s| s.wall).collect());
    let pass = median_pass(r.weft.iter());
    let a_change = median(r.anchor.iter().flat_map(|a| a.changes.clone()).collect());
    let a_change_nft = median(
        r.anchor
            .iter()
            .flat_map(|a| a.changes.iter().zip(&a.changes_nft).map(|(x, y)| *x + *y))
            .collect(),
    );
    row([
        format!(
            "one peer change, {label}: rename to converged (incl. weftd's ~250 ms file poll; \
             median of {})",
            samples.len()
        ),
        time(wall),
        blank(),
        blank(),
        blank(),
        blank(),
    ]);
    row([
        "… of which weftd's incremental pass (its metric) vs the same change as batches".into(),
        time(pass),
        time(a_change),
        ratio(pass, a_change),
        time(a_change_nft),
        ratio(pass, a_change_nft),
    ]);
    if let Some(small) = &r.small {
        row([
            format!(
                "… weftd's incremental pass with {} peers instead (O(1): about the same)",
                r.small_n
            ),
            time(median_pass(std::iter::once(small))),
            blank(),
            blank(),
            blank(),
            blank(),
        ]);
    }
    let weft_changes: usize = r.weft.iter().map(|w| w.changes.len()).sum();
    let weft_events: usize = r.weft.iter().map(|w| w.events).sum();
    let anchor_changes: usize = r.anchor.iter().map(|a| a.changes.len()).sum();
    let anchor_events: usize = r.anchor.iter().map(|a| a.events).sum();
    row([
        format!("kernel change events per peer change, {label}"),
        per_change(weft_events, weft_changes),
        per_change(anchor_events, anchor_changes),
        blank(),
        blank(),
        blank(),
    ]);
    let hwm = r.weft.iter().map(|w| w.rss_hwm_kib).max().unwrap_or(0);
    row([
        format!("weftd peak RSS (VmHWM, max over rounds), {label}"),
        mib(hwm),
        format!("target {}", mib(TARGET_RSS_KIB)),
        blank(),
        blank(),
        blank(),
    ]);
}

fn render_notes(notes: &mut String, r: &ScenarioResult) {
    let label = r.underlay.label();
    let rounds = r
        .weft
        .iter()
        .enumerate()
        .map(|(i, w)| (format!("weft round {}", i + 1), w))
        .chain(
            r.small
                .iter()
                .map(|w| (format!("weft with {} peers", r.small_n), w)),
        );
    for (name, w) in rounds {
        let kinds: Vec<&str> = w.changes.iter().map(|c| c.kind).collect();
        let kernel_ok = w.changes.iter().all(|c| c.kernel_ok);
        writeln!(
            notes,
            "- {label}, {name}: converged in {}; kernel: {}; full passes {} ({:.3} s total); \
             {} changes, passes of kind {:?}, kernel right after each: {}; VmHWM {}, VmRSS {}; \
             weft_convergence_errors_total {}; {} WARN/ERROR log lines{}",
            time(w.converge),
            w.counts,
            w.full_passes.0,
            w.full_passes.1,
            w.changes.len(),
            kinds,
            kernel_ok,
            mib(w.rss_hwm_kib),
            mib(w.rss_kib),
            w.errors_total,
            w.complaints.len(),
            w.complaints
                .first()
                .map(|c| format!(" (first: {c})"))
                .unwrap_or_default()
        )
        .unwrap();
        if let Some(f) = &w.failure {
            writeln!(notes, "  - FAILURE: {}", f.replace('\n', "\n    ")).unwrap();
        }
        if let Some(t) = w.traced {
            writeln!(
                notes,
                "  - one more change under strace: weftd's rtnetlink: {}; its children (nft): \
                 {}; a dump of this node's routes, neighbours and FDB receives {} B",
                t.own, t.children, t.dump_bytes
            )
            .unwrap();
        }
    }
    for (i, a) in r.anchor.iter().enumerate() {
        writeln!(
            notes,
            "- {label}, anchor round {}: ip + bridge batches {}, nft -f {}; kernel: {}",
            i + 1,
            time(Some(a.install)),
            time(Some(a.nft)),
            a.counts
        )
        .unwrap();
    }
}

/// Twice the small cluster's, plus slack for a longer name or address.
fn same_order(large: u64, small: u64) -> bool {
    large <= 2 * small + 4096
}

fn scenario_verdicts(n: u32, r: &ScenarioResult) -> Vec<String> {
    let label = r.underlay.label();
    let all_converged = !r.weft.is_empty() && r.weft.iter().all(|w| w.converge.is_some());
    let worst = r.weft.iter().filter_map(|w| w.converge).max();
    let hwm = r.weft.iter().map(|w| w.rss_hwm_kib).max().unwrap_or(0);
    let mut verdicts = vec![
        format!(
            "{label}: {n} peers from empty <= {}: worst of {} rounds {}{} -> {}",
            time(Some(TARGET_CONVERGENCE)),
            r.weft.len(),
            time(worst),
            if all_converged {
                String::new()
            } else {
                format!(
                    " (a round did not converge within {} s; later rounds were not run)",
                    CONVERGENCE_TIMEOUT.as_secs()
                )
            },
            verdict(all_converged && worst.is_some_and(|w| w <= TARGET_CONVERGENCE))
        ),
        format!(
            "{label}: weftd RSS <= {}: peak {} -> {}",
            mib(TARGET_RSS_KIB),
            mib(hwm),
            verdict(hwm > 0 && hwm <= TARGET_RSS_KIB)
        ),
    ];
    let samples: Vec<&ChangeSample> = r.weft.iter().flat_map(|w| &w.changes).collect();
    let incremental = !samples.is_empty() && samples.iter().all(|s| s.kind == "incremental");
    let kernel_ok = !samples.is_empty() && samples.iter().all(|s| s.kernel_ok);
    // The same change made by hand emits a handful of events; a resync would emit
    // thousands. Allow twice the anchor's (weftd may replace where the anchor adds).
    let weft_changes: usize = r.weft.iter().map(|w| w.changes.len()).sum();
    let weft_events: usize = r.weft.iter().map(|w| w.events).sum();
    let anchor_changes: usize = r.anchor.iter().map(|a| a.changes.len()).sum();
    let anchor_events: usize = r.anchor.iter().map(|a| a.events).sum();
    let few_events = weft_changes > 0
        && anchor_changes > 0
        && weft_events * anchor_changes <= 2 * anchor_events * weft_changes;
    // Netlink bytes of one change with N peers against N/10 peers.
    let large: Vec<Traced> = r.weft.iter().filter_map(|w| w.traced).collect();
    let small = r.small.as_ref().and_then(|w| w.traced);
    let (own_same, children_same, bytes) = match (large.first(), small) {
        (Some(l), Some(s)) => (
            large
                .iter()
                .all(|l| same_order(l.own.bytes(), s.own.bytes())),
            large
                .iter()
                .all(|l| same_order(l.children.bytes(), s.children.bytes())),
            format!(
                "weftd's rtnetlink {} B at {n} vs {} B at {}; nft's {} B vs {} B",
                l.own.bytes(),
                s.own.bytes(),
                r.small_n,
                l.children.bytes(),
                s.children.bytes()
            ),
        ),
        _ => (false, false, "no traced change to compare".to_owned()),
    };
    // weftd's own incremental pass with N peers against N/10 (plus slack for noise).
    let pass_large = median_pass(r.weft.iter());
    let pass_small = r
        .small
        .as_ref()
        .and_then(|w| median_pass(std::iter::once(w)));
    let pass_same = match (pass_large, pass_small) {
        (Some(l), Some(s)) => l <= s * 2 + Duration::from_millis(10),
        _ => false,
    };
    verdicts.push(format!(
        "{label}: one peer change is O(1) work: incremental passes only ({incremental}), \
         kernel right after each ({kernel_ok}), {} kernel events per change vs the anchor's {} \
         ({few_events}); independent of the peer count: netlink bytes of weftd itself \
         ({own_same}) and of nft ({children_same}) [{bytes}], weftd's incremental pass \
         ({pass_same}) [{} at {n} vs {} at {}] -> {}",
        per_change(weft_events, weft_changes),
        per_change(anchor_events, anchor_changes),
        time(pass_large),
        time(pass_small),
        r.small_n,
        verdict(incremental && kernel_ok && few_events && own_same && children_same && pass_same)
    ));
    verdicts
}
