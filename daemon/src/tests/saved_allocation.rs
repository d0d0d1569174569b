//! The saved allocation is trusted only within the limits the apiserver's is held to.

use super::{load, save};
use crate::allocation::fixture::allocation;
use weft_wire::Mode;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weftd-saved-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_valid_saved_allocation_loads_as_saved() {
    let dir = scratch("valid");
    let saved = allocation(Mode::Dual);
    save(&dir, &saved).unwrap();
    assert_eq!(load(&dir), Some(saved));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_invalid_saved_allocation_is_set_aside_not_loaded() {
    let mut too_long = allocation(Mode::Dual);
    too_long.ipv6_prefix = Some("2001:db8:1000:1::/128".parse().unwrap());
    let mut too_short = allocation(Mode::Dual);
    too_short.ipv4_subnet = Some("10.0.0.0/8".parse().unwrap());
    let mut wide_vni = allocation(Mode::Dual);
    wide_vni.vxlan_vni = 1 << 24;
    let mut no_port = allocation(Mode::Dual);
    no_port.vxlan_port = 0;
    let mut missing = allocation(Mode::Dual);
    missing.ipv4_subnet = None;
    for (name, bad) in [
        ("v6len", too_long),
        ("v4len", too_short),
        ("vni", wide_vni),
        ("port", no_port),
        ("mode", missing),
    ] {
        let dir = scratch(name);
        save(&dir, &bad).unwrap();
        assert_eq!(load(&dir), None, "{name}: {bad:?} loaded");
        assert!(
            dir.join("kubernetes-allocation.json.invalid").exists(),
            "{name}: not set aside"
        );
        assert!(
            !dir.join("kubernetes-allocation.json").exists(),
            "{name}: still in place"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn unparsable_bytes_are_set_aside() {
    let dir = scratch("bytes");
    std::fs::write(dir.join("kubernetes-allocation.json"), b"{\"mode\":").unwrap();
    assert_eq!(load(&dir), None);
    assert!(dir.join("kubernetes-allocation.json.invalid").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
