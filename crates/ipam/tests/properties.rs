//! Property tests: random sequences of ADD, DEL, GC, crashes (the IPAM dropped without
//! any shutdown, possibly in the middle of a write) and restarts from the same state
//! directory, with real time passing, against a model of what the IPAM promised.
//!
//! The contract checked after every step:
//! - no address is held by two live attachments, and none lies outside the served range
//!   or on a reserved offset (IPv6 offset 0, IPv4 offset 0 and the broadcast address);
//! - a released address is not handed out again before its cooldown ends, across
//!   restarts too;
//! - what ADD returned survives any crash: after a restart every attachment holds the
//!   very addresses it was given, and nothing else is held;
//! - a second ADD for a live attachment is refused (`AlreadyAllocated`) and leaves its
//!   addresses as they were; DEL of an unknown attachment is a no-op;
//! - exhaustion and cooldown errors are told only when the model agrees.
//!
//! `PROPTEST_CASES=N` runs N sequences (default 48, a few seconds);
//! `PROPTEST_CASES=5000 cargo test -p weft-ipam --test properties` is a long run.

use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use weft_ipam::{Ipam, IpamConfig};
use weft_wire::{Allocation, Attachment, ErrorKind, Family, PodRef};

const IPV6_PREFIX: &str = "2001:db8:0:7::/120";
/// Small enough that ADDs exhaust it: offsets 1 to 14.
const IPV4_SUBNET: &str = "198.51.100.16/28";
const NETWORK: &str = "weft-properties";
/// Attachments drawn from: more than the IPv4 subnet holds.
const ATTACHMENTS: u8 = 20;
/// Slack between the test's clock and the store's millisecond release stamps.
const CLOCK_SLACK: Duration = Duration::from_millis(3);

#[derive(Debug, Clone)]
enum Op {
    Add(u8),
    Del(u8),
    /// GC keeping the attachments whose bit is set.
    Gc(u32),
    /// Drop the IPAM as a kill -9 would, leave `debris` behind, and open it again.
    Crash(Debris),
    /// Real time passing.
    Wait(Duration),
}

/// What a crash in the middle of a write leaves in the state directory.
#[derive(Debug, Clone)]
enum Debris {
    None,
    /// A record being written, never renamed into place (any prefix of its bytes).
    TempFile(u8, usize),
    /// DEL interrupted between writing the cooldown of an attachment's addresses and
    /// removing its record: the store writes them in that order so that this crash
    /// leaves the addresses in use.
    HalfDel(u8),
}

#[derive(Debug, Clone, Copy)]
enum Families {
    Dual,
    Ipv6,
    Ipv4,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..ATTACHMENTS).prop_map(Op::Add),
        3 => (0..ATTACHMENTS).prop_map(Op::Del),
        1 => any::<u32>().prop_map(Op::Gc),
        2 => prop_oneof![
            Just(Debris::None),
            (0..ATTACHMENTS, any::<usize>()).prop_map(|(a, n)| Debris::TempFile(a, n)),
            (0..ATTACHMENTS).prop_map(Debris::HalfDel),
        ]
        .prop_map(Op::Crash),
        1 => (0u64..25).prop_map(|ms| Op::Wait(Duration::from_millis(ms))),
    ]
}

fn attachment(i: u8) -> Attachment {
    let ifname = ["eth0", "net1"][usize::from(i % 2)];
    Attachment::new(&format!("c{}", i / 2), ifname).expect("valid attachment")
}

fn addresses(a: &Allocation) -> Vec<IpAddr> {
    a.ipv6
        .map(IpAddr::V6)
        .into_iter()
        .chain(a.ipv4.map(IpAddr::V4))
        .collect()
}

fn family_of(ip: &IpAddr) -> Family {
    match ip {
        IpAddr::V6(_) => Family::Ipv6,
        IpAddr::V4(_) => Family::Ipv4,
    }
}

/// A state directory removed when the case ends, pass or fail.
struct StateDir(PathBuf);

impl StateDir {
    fn new() -> StateDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("weft-ipam-properties-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        StateDir(dir)
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What the IPAM has promised so far.
struct Model {
    families: Families,
    cooldown: Duration,
    live: HashMap<Attachment, Allocation>,
    /// Released addresses and the window in which their cooldown ends: from the instant
    /// before DEL began plus the cooldown to the instant after it returned plus it.
    cooling: HashMap<IpAddr, (Instant, Instant)>,
}

impl Model {
    fn capacity(&self, family: Family) -> usize {
        match family {
            Family::Ipv6 => 255,
            Family::Ipv4 => 14,
        }
    }

    fn held(&self, family: Family) -> usize {
        self.live
            .values()
            .flat_map(addresses)
            .filter(|ip| family_of(ip) == family)
            .count()
    }

    /// Addresses of `family` that are free but may still be cooling down at `now`.
    fn maybe_cooling(&self, family: Family, now: Instant) -> usize {
        let live: HashSet<IpAddr> = self.live.values().flat_map(addresses).collect();
        self.cooling
            .iter()
            .filter(|(ip, (_, latest))| {
                family_of(ip) == family && !live.contains(ip) && *latest + CLOCK_SLACK > now
            })
            .count()
    }

    fn serves(&self, family: Family) -> bool {
        matches!(
            (self.families, family),
            (Families::Dual, _) | (Families::Ipv6, Family::Ipv6) | (Families::Ipv4, Family::Ipv4)
        )
    }

    fn config(&self, dir: &Path) -> IpamConfig {
        IpamConfig {
            ipv6_prefix: self
                .serves(Family::Ipv6)
                .then(|| IPV6_PREFIX.parse().expect("constant prefix")),
            ipv4_subnet: self
                .serves(Family::Ipv4)
                .then(|| IPV4_SUBNET.parse().expect("constant subnet")),
            cooldown: self.cooldown,
            state_dir: dir.to_owned(),
        }
    }

    /// Checks an allocation just handed out against everything promised before it.
    fn check_new(&self, a: &Allocation, before: Instant) -> Result<(), TestCaseError> {
        let v6: ipnet::Ipv6Net = IPV6_PREFIX.parse().expect("constant prefix");
        let v4: ipnet::Ipv4Net = IPV4_SUBNET.parse().expect("constant subnet");
        prop_assert_eq!(a.ipv6.is_some(), self.serves(Family::Ipv6), "{:?}", a);
        prop_assert_eq!(a.ipv4.is_some(), self.serves(Family::Ipv4), "{:?}", a);
        if let Some(ip) = a.ipv6 {
            prop_assert!(v6.contains(&ip) && ip != v6.network(), "{} off range", ip);
        }
        if let Some(ip) = a.ipv4 {
            prop_assert!(
                v4.contains(&ip) && ip != v4.network() && ip != v4.broadcast(),
                "{} off range",
                ip
            );
        }
        for ip in addresses(a) {
            let holder = self.live.values().find(|b| addresses(b).contains(&ip));
            prop_assert!(holder.is_none(), "{} handed out twice: {:?}", ip, holder);
            if let Some((earliest, _)) = self.cooling.get(&ip) {
                prop_assert!(
                    before + CLOCK_SLACK >= *earliest,
                    "{} reused {:?} before its cooldown ended",
                    ip,
                    *earliest - before
                );
            }
        }
        Ok(())
    }

    fn released(&mut self, a: &Allocation, before: Instant, after: Instant) {
        for ip in addresses(a) {
            self.cooling
                .insert(ip, (before + self.cooldown, after + self.cooldown));
        }
    }
}

fn add(ipam: &mut Ipam, model: &mut Model, i: u8) -> Result<(), TestCaseError> {
    let who = attachment(i);
    let before = Instant::now();
    let outcome = ipam.allocate(&who, PodRef::default(), Some(NETWORK.into()));
    match (outcome, model.live.get(&who)) {
        (Err(e), Some(existing)) => {
            prop_assert_eq!(e.kind(), ErrorKind::AlreadyAllocated, "{}", e);
            prop_assert_eq!(ipam.lookup(&who), Some(existing));
        }
        (Ok(a), Some(existing)) => {
            prop_assert!(
                false,
                "second ADD of {} gave {:?} over {:?}",
                who,
                a,
                existing
            );
        }
        (Ok(a), None) => {
            model.check_new(&a, before)?;
            prop_assert_eq!(&a.attachment, &who);
            model.live.insert(who, a);
        }
        (Err(e), None) => {
            let family = e.family();
            prop_assert!(family.is_some(), "ADD of {} failed: {}", who, e);
            let family = family.expect("checked");
            let (held, capacity) = (model.held(family), model.capacity(family));
            match e.kind() {
                ErrorKind::Exhausted => {
                    prop_assert_eq!(held, capacity, "{}", e);
                }
                ErrorKind::CoolingDown => {
                    let cooling = model.maybe_cooling(family, before);
                    prop_assert!(held < capacity && held + cooling >= capacity, "{}", e);
                }
                other => prop_assert!(false, "ADD of {} failed with {:?}: {}", who, other, e),
            }
            prop_assert_eq!(ipam.lookup(&who), None);
        }
    }
    Ok(())
}

fn del(ipam: &mut Ipam, model: &mut Model, who: &Attachment) -> Result<(), TestCaseError> {
    let before = Instant::now();
    let released = ipam
        .release(who)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let after = Instant::now();
    prop_assert_eq!(released.as_ref(), model.live.get(who));
    if let Some(a) = model.live.remove(who) {
        model.released(&a, before, after);
    }
    prop_assert_eq!(ipam.lookup(who), None);
    Ok(())
}

fn gc(ipam: &mut Ipam, model: &mut Model, keep: u32) -> Result<(), TestCaseError> {
    let valid: HashSet<Attachment> = (0..ATTACHMENTS)
        .filter(|i| keep & (1 << i) != 0)
        .map(attachment)
        .collect();
    let before = Instant::now();
    let (released, errors) = ipam.gc(Some(NETWORK), &valid);
    let after = Instant::now();
    prop_assert!(errors.is_empty(), "{:?}", errors);
    let mut expected: Vec<Allocation> = model
        .live
        .values()
        .filter(|a| !valid.contains(&a.attachment))
        .cloned()
        .collect();
    expected.sort_by(|a, b| a.attachment.cmp(&b.attachment));
    prop_assert_eq!(&released, &expected);
    for a in expected {
        model.live.remove(&a.attachment);
        model.released(&a, before, after);
    }
    Ok(())
}

/// Leaves what a crash in the middle of a write would.
fn scatter(dir: &Path, model: &Model, debris: &Debris) {
    match debris {
        Debris::None => {}
        Debris::TempFile(i, cut) => {
            let record = format!(
                r#"{{"containerId":"{}","ifname":"{}","ipv6":"2001:db8:0:7::1","allocatedAtMs":1}}"#,
                attachment(*i).container_id,
                attachment(*i).ifname
            );
            let cut = cut % (record.len() + 1);
            let _ = fs::write(dir.join("tmp").join("4242.0"), &record.as_bytes()[..cut]);
        }
        Debris::HalfDel(i) => {
            let Some(a) = model.live.get(&attachment(*i)) else {
                return;
            };
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_millis();
            for ip in addresses(a) {
                let _ = fs::write(
                    dir.join("cooldown").join(ip.to_string()),
                    now_ms.to_string(),
                );
            }
        }
    }
}

fn restart(dir: &Path, model: &Model) -> Result<Ipam, TestCaseError> {
    let (ipam, report) =
        Ipam::open(model.config(dir)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(report.quarantined.is_empty(), "{:?}", report);
    let mut restored: Vec<&Allocation> = ipam.allocations().collect();
    restored.sort_by(|a, b| a.attachment.cmp(&b.attachment));
    let mut promised: Vec<&Allocation> = model.live.values().collect();
    promised.sort_by(|a, b| a.attachment.cmp(&b.attachment));
    prop_assert_eq!(restored, promised);
    Ok(ipam)
}

fn check_no_address_twice(ipam: &Ipam) -> Result<(), TestCaseError> {
    let mut seen = HashMap::new();
    for a in ipam.allocations() {
        for ip in addresses(a) {
            if let Some(other) = seen.insert(ip, a.attachment.clone()) {
                prop_assert!(false, "{} held by {} and {}", ip, other, a.attachment);
            }
        }
    }
    Ok(())
}

fn run(families: Families, cooldown: Duration, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = StateDir::new();
    let mut model = Model {
        families,
        cooldown,
        live: HashMap::new(),
        cooling: HashMap::new(),
    };
    let mut ipam = restart(&dir.0, &model)?;
    for op in ops {
        match op {
            Op::Add(i) => add(&mut ipam, &mut model, i)?,
            Op::Del(i) => del(&mut ipam, &mut model, &attachment(i))?,
            Op::Gc(keep) => gc(&mut ipam, &mut model, keep)?,
            Op::Crash(debris) => {
                drop(ipam);
                scatter(&dir.0, &model, &debris);
                ipam = restart(&dir.0, &model)?;
            }
            Op::Wait(pause) => std::thread::sleep(pause),
        }
        check_no_address_twice(&ipam)?;
    }
    Ok(())
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(48);
    ProptestConfig::with_cases(cases)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn no_address_is_ever_held_twice_across_crashes_and_restarts(
        families in prop_oneof![Just(Families::Dual), Just(Families::Ipv6), Just(Families::Ipv4)],
        cooldown in prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::from_millis(15)),
            Just(Duration::from_secs(3600)),
        ],
        ops in prop::collection::vec(op(), 1..80),
    ) {
        run(families, cooldown, ops)?;
    }
}
