use super::*;
use std::sync::atomic::{AtomicU32, Ordering};

struct TempDir(PathBuf);
impl TempDir {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "weft-ipam-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
use std::fs;

fn config(dir: &TempDir, v4: &str, cooldown: Duration) -> IpamConfig {
    IpamConfig {
        ipv6_prefix: Some("2001:db8:1000:1::/80".parse().unwrap()),
        ipv4_subnet: Some(v4.parse().unwrap()),
        cooldown,
        state_dir: dir.0.clone(),
    }
}

fn att(id: &str) -> Attachment {
    Attachment::new(id, "eth0").unwrap()
}

#[test]
fn allocates_both_families_and_skips_reserved_offsets() {
    let dir = TempDir::new();
    let (mut ipam, _) = Ipam::open(config(&dir, "10.255.1.0/24", Duration::from_secs(30))).unwrap();
    let a = ipam.allocate(&att("c1"), PodRef::default(), None).unwrap();
    assert_eq!(a.ipv6, Some("2001:db8:1000:1::1".parse().unwrap()));
    assert_eq!(a.ipv4, Some("10.255.1.1".parse().unwrap()));
    assert!(matches!(
        ipam.allocate(&att("c1"), PodRef::default(), None),
        Err(IpamError::AlreadyAllocated { .. })
    ));
}

#[test]
fn exhausted_ipv4_is_a_clear_error_and_rolls_back_ipv6() {
    let dir = TempDir::new();
    let (mut ipam, _) = Ipam::open(config(&dir, "10.255.1.0/28", Duration::from_secs(30))).unwrap();
    for i in 0..14 {
        let a = ipam
            .allocate(&att(&format!("c{i}")), PodRef::default(), None)
            .unwrap();
        assert_ne!(
            a.ipv4,
            Some("10.255.1.15".parse().unwrap()),
            "broadcast handed out"
        );
    }
    let e = ipam
        .allocate(&att("c99"), PodRef::default(), None)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Exhausted);
    assert!(
        e.to_string().contains("10.255.1.0/28") && e.to_string().contains("14"),
        "{e}"
    );
    let usage = ipam.usage();
    assert_eq!(
        usage[0].in_use, 14,
        "the IPv6 address of the failed ADD was not returned"
    );
}

#[test]
fn release_cools_down_then_reuses() {
    let dir = TempDir::new();
    let (mut ipam, _) = Ipam::open(config(&dir, "10.255.1.0/28", Duration::from_secs(30))).unwrap();
    let t0 = Instant::now();
    let wall = SystemTime::now();
    let mut first = None;
    for i in 0..14 {
        let a = ipam
            .allocate_at(
                &att(&format!("c{i}")),
                PodRef::default(),
                None,
                None,
                t0,
                wall,
            )
            .unwrap();
        first.get_or_insert(a);
    }
    ipam.release_at(&att("c0"), t0, wall).unwrap().unwrap();
    assert_eq!(
        ipam.release_at(&att("c0"), t0, wall).unwrap(),
        None,
        "second release is a no-op"
    );
    let e = ipam
        .allocate_at(
            &att("new"),
            PodRef::default(),
            None,
            None,
            t0 + Duration::from_secs(1),
            wall,
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CoolingDown);
    let a = ipam
        .allocate_at(
            &att("new"),
            PodRef::default(),
            None,
            None,
            t0 + Duration::from_secs(30),
            wall,
        )
        .unwrap();
    assert_eq!(a.ipv4, first.unwrap().ipv4);
}

#[test]
fn state_survives_reopen_without_duplicates_or_losses() {
    let dir = TempDir::new();
    let cfg = config(&dir, "10.255.1.0/24", Duration::from_secs(30));
    let mut seen = HashSet::new();
    {
        let (mut ipam, _) = Ipam::open(cfg.clone()).unwrap();
        for i in 0..10 {
            let a = ipam
                .allocate(&att(&format!("c{i}")), PodRef::default(), None)
                .unwrap();
            seen.insert(a.ipv4.unwrap());
        }
        ipam.release(&att("c3")).unwrap();
    }
    let (mut ipam, report) = Ipam::open(cfg).unwrap();
    assert_eq!(report.restored, 9);
    assert_eq!(
        report.cooling, 2,
        "both addresses of c3 still cool down after restart"
    );
    assert!(ipam.lookup(&att("c5")).is_some());
    for i in 10..20 {
        let a = ipam
            .allocate(&att(&format!("c{i}")), PodRef::default(), None)
            .unwrap();
        assert!(
            seen.insert(a.ipv4.unwrap()),
            "address {:?} handed out twice",
            a.ipv4
        );
    }
}

#[test]
fn corrupt_records_are_quarantined_with_their_addresses_reserved() {
    let dir = TempDir::new();
    let cfg = config(&dir, "10.255.1.0/24", Duration::from_secs(30));
    drop(Ipam::open(cfg.clone()).unwrap());
    // A torn record: its addresses are readable, its JSON is not.
    fs::write(
        dir.0.join("allocations/c1@eth0"),
        br#"{"containerId":"c1","ifname":"eth0","ipv6":"2001:db8:1000:1::1","ipv4":"10.255.1.1","#,
    )
    .unwrap();
    fs::write(dir.0.join("tmp/123.4"), b"half").unwrap();
    let (mut ipam, report) = Ipam::open(cfg.clone()).unwrap();
    assert_eq!(report.quarantined, vec!["c1@eth0".to_string()]);
    assert_eq!(report.quarantined_addresses, 2);
    assert!(dir.0.join("corrupt/c1@eth0").exists());
    assert_eq!(fs::read_dir(dir.0.join("tmp")).unwrap().count(), 0);
    let next = ipam.allocate(&att("c2"), PodRef::default(), None).unwrap();
    assert_eq!(
        next.ipv4,
        Some("10.255.1.2".parse().unwrap()),
        "the quarantined address was reused"
    );
    assert_eq!(next.ipv6, Some("2001:db8:1000:1::2".parse().unwrap()));
    drop(ipam);

    // The quarantine survives a restart, and the DEL of the attachment ends it.
    let (mut ipam, report) = Ipam::open(cfg).unwrap();
    assert_eq!(report.quarantined, vec!["c1@eth0".to_string()]);
    assert_eq!(ipam.quarantined(), 1);
    assert_eq!(ipam.release(&att("c1")).unwrap(), None);
    assert_eq!(ipam.quarantined(), 0);
    assert!(!dir.0.join("corrupt/c1@eth0").exists());
    assert!(
        dir.0.join("cooldown/10.255.1.1").exists(),
        "the released address rests first"
    );
    assert_eq!(ipam.usage()[1].cooling, 1);
}

#[test]
fn odd_entries_are_reported_and_skipped_never_followed() {
    use std::os::unix::ffi::OsStrExt;
    let dir = TempDir::new();
    let cfg = config(&dir, "10.255.1.0/24", Duration::from_secs(30));
    {
        let (mut ipam, _) = Ipam::open(cfg.clone()).unwrap();
        ipam.allocate(&att("good"), PodRef::default(), None)
            .unwrap();
    }
    let outside = dir.0.with_extension("outside");
    fs::write(
        &outside,
        br#"{"containerId":"evil","ifname":"eth0","ipv4":"10.255.1.9","allocatedAtMs":0}"#,
    )
    .unwrap();
    std::os::unix::fs::symlink(&outside, dir.0.join("allocations/evil@eth0")).unwrap();
    fs::create_dir(dir.0.join("allocations/a-dir")).unwrap();
    fs::create_dir(dir.0.join("cooldown/10.255.1.7")).unwrap();
    fs::create_dir(dir.0.join("tmp/leftover-dir")).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"bad\xff@eth0");
    fs::write(dir.0.join("allocations").join(odd), b"{}").unwrap();
    let (ipam, report) = Ipam::open(cfg).unwrap();
    assert_eq!(report.restored, 1);
    assert!(ipam.lookup(&att("good")).is_some());
    assert!(
        ipam.lookup(&att("evil")).is_none(),
        "a symlinked record was followed"
    );
    let skipped = report.skipped.join("\n");
    for needle in [
        "allocations/evil@eth0: a symlink",
        "allocations/a-dir: a directory",
        "cooldown/10.255.1.7: a directory",
        "tmp/leftover-dir: a directory",
        "not UTF-8",
    ] {
        assert!(skipped.contains(needle), "{needle} not in {skipped}");
    }
    assert!(outside.exists() && dir.0.join("allocations/a-dir").exists());
    fs::remove_file(outside).unwrap();
}

#[test]
fn settings_that_would_overflow_are_refused_naming_field_and_value() {
    let dir = TempDir::new();
    let mut cfg = config(&dir, "10.255.1.0/24", Duration::from_secs(30));
    cfg.ipv6_prefix = Some("::/0".parse().unwrap());
    let e = Ipam::open(cfg.clone()).unwrap_err().to_string();
    assert!(e.contains("ipv6Prefix") && e.contains("::/0"), "{e}");
    cfg.ipv6_prefix = None;
    cfg.ipv4_subnet = Some("10.255.1.0/31".parse().unwrap());
    let e = Ipam::open(cfg.clone()).unwrap_err().to_string();
    assert!(
        e.contains("ipv4Subnet") && e.contains("10.255.1.0/31"),
        "{e}"
    );
    cfg.ipv4_subnet = Some("10.255.1.0/24".parse().unwrap());
    cfg.cooldown = Duration::from_secs(u64::MAX);
    let e = Ipam::open(cfg).unwrap_err().to_string();
    assert!(
        e.contains("cooldown") && e.contains(&u64::MAX.to_string()),
        "{e}"
    );
}

#[test]
fn a_cooldown_stamped_in_the_far_future_rests_one_cooldown() {
    let dir = TempDir::new();
    let cfg = config(&dir, "10.255.1.0/24", Duration::from_secs(30));
    drop(Ipam::open(cfg.clone()).unwrap());
    fs::write(dir.0.join("cooldown/10.255.1.1"), u64::MAX.to_string()).unwrap();
    let (ipam, report) = Ipam::open(cfg).unwrap();
    assert_eq!(report.cooling, 1);
    assert_eq!(ipam.usage()[1].cooling, 1);
}

#[test]
fn a_failed_write_leaves_no_temp_file() {
    let dir = TempDir::new();
    let cfg = config(&dir, "10.255.1.0/24", Duration::from_secs(30));
    let (mut ipam, _) = Ipam::open(cfg).unwrap();
    // The rename fails: its target is a directory.
    fs::create_dir(dir.0.join("allocations/c1@eth0")).unwrap();
    fs::write(dir.0.join("allocations/c1@eth0/x"), b"").unwrap();
    let e = ipam
        .allocate(&att("c1"), PodRef::default(), None)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
    assert_eq!(fs::read_dir(dir.0.join("tmp")).unwrap().count(), 0);
    assert_eq!(ipam.usage()[0].in_use, 0, "the failed ADD kept its address");
}

#[test]
fn a_different_boot_id_drops_stale_records() {
    let dir = TempDir::new();
    let cfg = config(&dir, "10.255.1.0/24", Duration::from_secs(30));
    {
        let (mut ipam, _) = Ipam::open(cfg.clone()).unwrap();
        ipam.allocate(&att("c1"), PodRef::default(), None).unwrap();
    }
    fs::write(dir.0.join("boot_id"), b"some-other-boot\n").unwrap();
    let (ipam, report) = Ipam::open(cfg).unwrap();
    assert_eq!(report.dropped_after_reboot, 1);
    assert_eq!(ipam.allocations().count(), 0);
}

#[test]
fn gc_releases_only_its_own_networks_allocations_not_listed() {
    let dir = TempDir::new();
    let (mut ipam, _) = Ipam::open(config(&dir, "10.255.1.0/24", Duration::from_secs(30))).unwrap();
    for id in ["keep", "drop1", "drop2"] {
        ipam.allocate(&att(id), PodRef::default(), Some("weft".into()))
            .unwrap();
    }
    ipam.allocate(&att("other"), PodRef::default(), Some("other-net".into()))
        .unwrap();
    ipam.allocate(&att("unnamed"), PodRef::default(), None)
        .unwrap();
    let valid: HashSet<Attachment> = [att("keep")].into();
    let (released, errors) = ipam.gc(Some("weft"), &valid);
    assert!(errors.is_empty());
    let ids: Vec<_> = released
        .iter()
        .map(|a| a.attachment.container_id.as_str())
        .collect();
    assert_eq!(ids, ["drop1", "drop2"]);
    assert_eq!(ipam.allocations().count(), 3);
    assert!(ipam.lookup(&att("other")).is_some() && ipam.lookup(&att("unnamed")).is_some());
    let (released, _) = ipam.gc(None, &HashSet::new());
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].attachment, att("unnamed"));
}

#[test]
fn single_family_configs_allocate_one_family() {
    let dir = TempDir::new();
    let mut cfg = config(&dir, "10.255.1.0/24", Duration::from_secs(30));
    cfg.ipv4_subnet = None;
    let (mut ipam, _) = Ipam::open(cfg).unwrap();
    let a = ipam.allocate(&att("c1"), PodRef::default(), None).unwrap();
    assert!(a.ipv6.is_some() && a.ipv4.is_none());
    assert_eq!(ipam.usage().len(), 1);
}

#[test]
fn a_pod_keeping_one_family_gets_only_that_one_and_keeps_it_across_a_restart() {
    let dir = TempDir::new();
    let cfg = config(&dir, "10.255.1.0/24", Duration::from_secs(30));
    let (mut ipam, _) = Ipam::open(cfg.clone()).unwrap();
    let keep = |family| Some(vec![family]);
    let v6_only = ipam
        .allocate_families(
            &att("v6"),
            PodRef::default(),
            None,
            keep(Family::Ipv6).as_deref(),
        )
        .unwrap();
    assert!(
        v6_only.ipv6.is_some() && v6_only.ipv4.is_none(),
        "{v6_only:?}"
    );
    let v4_only = ipam
        .allocate_families(
            &att("v4"),
            PodRef::default(),
            None,
            keep(Family::Ipv4).as_deref(),
        )
        .unwrap();
    assert!(
        v4_only.ipv6.is_none() && v4_only.ipv4.is_some(),
        "{v4_only:?}"
    );
    let both = [Family::Ipv4, Family::Ipv6];
    let dual = ipam
        .allocate_families(&att("both"), PodRef::default(), None, Some(&both))
        .unwrap();
    assert!(dual.ipv6.is_some() && dual.ipv4.is_some(), "{dual:?}");
    // The families left out were not taken from their pools.
    let in_use = |ipam: &Ipam| ipam.usage().iter().map(|u| u.in_use).collect::<Vec<_>>();
    assert_eq!(in_use(&ipam), [2, 2]);
    drop(ipam);

    let (mut ipam, report) = Ipam::open(cfg).unwrap();
    assert_eq!(report.restored, 3);
    assert_eq!(ipam.lookup(&att("v6")), Some(&v6_only));
    assert_eq!(ipam.lookup(&att("v4")), Some(&v4_only));
    assert_eq!(in_use(&ipam), [2, 2]);
    // The restored pools hand out neither single-family pod's address again.
    let next = ipam
        .allocate(&att("next"), PodRef::default(), None)
        .unwrap();
    assert_ne!(next.ipv6, v6_only.ipv6);
    assert_ne!(next.ipv4, v4_only.ipv4);
    ipam.release(&att("v6")).unwrap().unwrap();
    assert_eq!(
        ipam.usage().iter().map(|u| u.cooling).collect::<Vec<_>>(),
        [1, 0],
        "releasing an IPv6-only pod cools one IPv6 address down"
    );
}

#[test]
fn a_family_the_node_does_not_serve_or_none_at_all_is_refused_allocating_nothing() {
    let dir = TempDir::new();
    let mut cfg = config(&dir, "10.255.1.0/24", Duration::from_secs(30));
    cfg.ipv4_subnet = None;
    let (mut ipam, _) = Ipam::open(cfg).unwrap();
    let e = ipam
        .allocate_families(&att("c1"), PodRef::default(), None, Some(&[Family::Ipv4]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadRequest);
    assert_eq!(e.family(), Some(Family::Ipv4));
    assert_eq!(
        e.to_string(),
        "ipv4 is not served on this node, which serves ipv6 only"
    );
    let both = [Family::Ipv6, Family::Ipv4];
    let e = ipam
        .allocate_families(&att("c1"), PodRef::default(), None, Some(&both))
        .unwrap_err();
    assert!(
        matches!(
            e,
            IpamError::FamilyNotServed {
                family: Family::Ipv4,
                ..
            }
        ),
        "{e}"
    );
    let e = ipam
        .allocate_families(&att("c1"), PodRef::default(), None, Some(&[]))
        .unwrap_err();
    assert!(matches!(e, IpamError::NoFamily), "{e}");
    assert_eq!(e.kind(), ErrorKind::BadRequest);
    assert_eq!(ipam.usage()[0].in_use, 0);
    assert_eq!(ipam.allocations().count(), 0);
    assert_eq!(fs::read_dir(dir.0.join("allocations")).unwrap().count(), 0);
}

#[test]
fn a_state_dir_others_can_write_is_refused_before_anything_is_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let cfg = config(&dir, "10.255.1.0/24", Duration::from_secs(30));
    drop(Ipam::open(cfg.clone()).unwrap());
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o777)).unwrap();
    let e = Ipam::open(cfg).unwrap_err();
    assert!(
        matches!(e, IpamError::StateDir(StateDirError::Writable { .. })),
        "{e}"
    );
    assert!(e.to_string().contains(&dir.0.display().to_string()), "{e}");
}

#[test]
fn a_fifo_or_a_huge_file_in_place_of_a_record_neither_blocks_nor_loads_whole() {
    let dir = TempDir::new();
    let cfg = config(&dir, "10.255.1.0/24", Duration::from_secs(30));
    drop(Ipam::open(cfg.clone()).unwrap());
    nix::unistd::mkfifo(
        &dir.0.join("cooldown/10.255.1.3"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    // A sparse 1 GiB file: loading it whole would show in the test's memory and time.
    let huge = fs::File::create(dir.0.join("allocations/huge@eth0")).unwrap();
    huge.set_len(1 << 30).unwrap();
    let started = Instant::now();
    let (_, report) = Ipam::open(cfg).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(report.quarantined, vec!["huge@eth0".to_string()]);
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.contains("cooldown/10.255.1.3")),
        "{:?}",
        report.skipped
    );
}
