//! A state directory made from fuzz input: the layout the IPAM store expects
//! (`allocations/`, `cooldown/`, `tmp/`, `corrupt/`, `boot_id`) filled with whatever a
//! crashed, half-written or tampered-with directory may hold: records and garbage,
//! non-UTF-8 names, directories and symlinks where files belong, files where
//! directories belong.
//!
//! Symlink targets always stay inside the generated root: the store follows them, and a
//! fuzzer must not let it delete or rename anything outside its scratch directory.

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use weft_wire::{Allocation, Attachment};

/// The IPv6 prefix and IPv4 subnet the generated records' offsets are taken from, and
/// the ones the IPAM under test serves.
pub const IPV6_PREFIX: &str = "2001:db8:0:1::/120";
/// See [`IPV6_PREFIX`].
pub const IPV4_SUBNET: &str = "198.51.100.0/24";
/// See [`Tree::short_cooldown`].
pub const SHORT_COOLDOWN: std::time::Duration = std::time::Duration::from_millis(6);

/// Where an entry goes.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Parent {
    /// The state directory itself.
    Root,
    /// `allocations/`.
    Allocations,
    /// `cooldown/`.
    Cooldown,
    /// `tmp/`.
    Tmp,
    /// `corrupt/`.
    Corrupt,
}

impl Parent {
    fn path(self, root: &Path) -> PathBuf {
        match self {
            Parent::Root => root.to_owned(),
            Parent::Allocations => root.join("allocations"),
            Parent::Cooldown => root.join("cooldown"),
            Parent::Tmp => root.join("tmp"),
            Parent::Corrupt => root.join("corrupt"),
        }
    }
}

/// An entry's file name.
#[derive(Arbitrary, Debug, Clone)]
pub enum Name {
    /// `<containerID>@<ifname>`, the record name format (possibly invalid parts).
    Key(String, String),
    /// An address inside the served ranges, as a cooldown entry is named, in one of
    /// the text forms that parse to it.
    Address(Address, TextForm),
    /// One of the names the store itself uses.
    Reserved(Reserved),
    /// Any bytes, non-UTF-8 included ('/' and NUL dropped: no file name holds them).
    Raw(Vec<u8>),
}

/// A name the store gives meaning to.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Reserved {
    /// `allocations`.
    Allocations,
    /// `cooldown`.
    Cooldown,
    /// `tmp`.
    Tmp,
    /// `corrupt`.
    Corrupt,
    /// `boot_id`.
    BootId,
}

/// How an address is spelt: weftd writes the canonical form, a hand or a tool may not.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum TextForm {
    /// `2001:db8::1`, `198.51.100.1`.
    Canonical,
    /// `2001:DB8::1`.
    Upper,
    /// `2001:0db8:0000:0000:0000:0000:0000:0001`.
    Expanded,
}

impl TextForm {
    fn spell(self, ip: std::net::IpAddr) -> String {
        match (self, ip) {
            (TextForm::Upper, ip) => ip.to_string().to_uppercase(),
            (TextForm::Expanded, std::net::IpAddr::V6(ip)) => ip
                .segments()
                .iter()
                .map(|s| format!("{s:04x}"))
                .collect::<Vec<_>>()
                .join(":"),
            (_, ip) => ip.to_string(),
        }
    }
}

/// An address by its offset in the served ranges, or any address.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Address {
    /// Offset in [`IPV6_PREFIX`].
    V6(u8),
    /// Offset in [`IPV4_SUBNET`].
    V4(u8),
    /// Anywhere.
    AnyV6(u128),
    /// Anywhere.
    AnyV4(u32),
}

impl Address {
    fn ip(self) -> std::net::IpAddr {
        let v6: ipnet::Ipv6Net = IPV6_PREFIX.parse().expect("constant prefix");
        let v4: ipnet::Ipv4Net = IPV4_SUBNET.parse().expect("constant subnet");
        match self {
            Address::V6(o) => {
                std::net::Ipv6Addr::from(u128::from(v6.network()) + u128::from(o)).into()
            }
            Address::V4(o) => {
                std::net::Ipv4Addr::from(u32::from(v4.network()) + u32::from(o)).into()
            }
            Address::AnyV6(a) => std::net::Ipv6Addr::from(a).into(),
            Address::AnyV4(a) => std::net::Ipv4Addr::from(a).into(),
        }
    }
}

impl Name {
    /// The bytes of the name, `None` when no file can carry it.
    fn bytes(&self) -> Option<Vec<u8>> {
        let bytes = match self {
            Name::Key(id, ifname) => format!("{id}@{ifname}").into_bytes(),
            Name::Address(a, form) => form.spell(a.ip()).into_bytes(),
            Name::Reserved(r) => match r {
                Reserved::Allocations => "allocations",
                Reserved::Cooldown => "cooldown",
                Reserved::Tmp => "tmp",
                Reserved::Corrupt => "corrupt",
                Reserved::BootId => "boot_id",
            }
            .as_bytes()
            .to_vec(),
            Name::Raw(raw) => raw
                .iter()
                .copied()
                .filter(|b| *b != b'/' && *b != 0)
                .collect(),
        };
        let usable = !bytes.is_empty() && bytes != b"." && bytes != b".." && bytes.len() <= 255;
        usable.then_some(bytes)
    }
}

/// What an entry is.
#[derive(Arbitrary, Debug, Clone)]
pub enum Kind {
    /// A regular file.
    File(Contents),
    /// An empty directory.
    Dir,
    /// A symlink into the tree.
    Symlink(Target),
}

/// A file's bytes.
#[derive(Arbitrary, Debug, Clone)]
pub enum Contents {
    /// A well-formed allocation record for the entry's own name when that is a record
    /// name, else for `fallback`.
    Record {
        /// Offset of the IPv6 address, if any.
        ipv6: Option<Address>,
        /// Offset of the IPv4 address, if any.
        ipv4: Option<Address>,
        /// `allocatedAtMs`.
        allocated_at_ms: u64,
        /// The attachment when the name is none.
        fallback: (String, String),
    },
    /// A release time, as a cooldown entry holds.
    Millis(u64),
    /// A release time this many milliseconds ago (modulo the short cooldown), so that with
    /// [`Tree::short_cooldown`] the rest ends while the target runs.
    RecentMillis(u8),
    /// Any text.
    Text(String),
    /// Any bytes.
    Bytes(Vec<u8>),
}

/// Where a symlink points, always inside the root.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Target {
    /// An entry made earlier (by index, modulo their count).
    Earlier(u8),
    /// A subdirectory of the layout.
    Layout(Parent),
    /// A path inside the root that does not exist.
    Missing,
    /// The link itself (a loop).
    Itself,
}

/// One entry.
#[derive(Arbitrary, Debug, Clone)]
pub struct Entry {
    /// Its directory.
    pub parent: Parent,
    /// Its name.
    pub name: Name,
    /// What it is.
    pub kind: Kind,
}

/// `boot_id`'s contents.
#[derive(Arbitrary, Debug, Clone)]
pub enum BootId {
    /// No file.
    Absent,
    /// This boot's ID: records are kept.
    Current,
    /// Anything else: records are dropped as from a previous boot.
    Other(Vec<u8>),
}

/// A whole state directory.
#[derive(Arbitrary, Debug, Clone)]
pub struct Tree {
    /// Whether the layout's subdirectories exist before the entries are made.
    pub with_layout: bool,
    /// `boot_id`.
    pub boot_id: BootId,
    /// A cooldown of [`SHORT_COOLDOWN`] instead of 30 s, which ends while the target
    /// runs: what was cooling is then handed out again.
    pub short_cooldown: bool,
    /// The entries, made in order (a failing one, e.g. a name taken, is skipped).
    pub entries: Vec<Entry>,
    /// Cooldown entries released moments ago, written after the entries: an address
    /// offset in [`IPV6_PREFIX`], its spelling and how many milliseconds ago.
    pub recent_releases: Vec<(u8, TextForm, u8)>,
}

fn record(name: &[u8], contents: &Contents) -> Vec<u8> {
    let Contents::Record {
        ipv6,
        ipv4,
        allocated_at_ms,
        fallback,
    } = contents
    else {
        unreachable!("called for records only")
    };
    let attachment = std::str::from_utf8(name)
        .ok()
        .and_then(Attachment::from_key)
        .or_else(|| Attachment::new(&fallback.0, &fallback.1).ok())
        .unwrap_or_else(|| Attachment::new("c", "eth0").expect("valid attachment"));
    // Written as the store writes it, through the wire type's own encoding: built from
    // JSON so that fields the type gains (with serde defaults) need no change here.
    let allocation: Allocation = serde_json::from_value(serde_json::json!({
        "containerId": attachment.container_id,
        "ifname": attachment.ifname,
        "ipv6": ipv6.map(Address::ip).filter(std::net::IpAddr::is_ipv6),
        "ipv4": ipv4.map(Address::ip).filter(std::net::IpAddr::is_ipv4),
        "allocatedAtMs": allocated_at_ms,
    }))
    .expect("a well-formed allocation");
    serde_json::to_vec(&allocation).expect("an allocation encodes")
}

impl Tree {
    /// Makes the tree under `root`, which must be an empty directory.
    pub fn build(&self, root: &Path) {
        if self.with_layout {
            for sub in [
                Parent::Allocations,
                Parent::Cooldown,
                Parent::Tmp,
                Parent::Corrupt,
            ] {
                let _ = fs::create_dir(sub.path(root));
            }
        }
        let boot_id = match &self.boot_id {
            BootId::Absent => None,
            BootId::Current => fs::read("/proc/sys/kernel/random/boot_id").ok(),
            BootId::Other(bytes) => Some(bytes.clone()),
        };
        if let Some(bytes) = boot_id {
            let _ = fs::write(root.join("boot_id"), bytes);
        }
        let mut made: Vec<PathBuf> = Vec::new();
        for entry in &self.entries {
            let Some(name) = entry.name.bytes() else {
                continue;
            };
            let path = entry.parent.path(root).join(OsStr::from_bytes(&name));
            let outcome = match &entry.kind {
                Kind::File(contents @ Contents::Record { .. }) => {
                    fs::write(&path, record(&name, contents))
                }
                Kind::File(Contents::Millis(ms)) => fs::write(&path, ms.to_string()),
                Kind::File(Contents::RecentMillis(ago)) => fs::write(&path, recent_ms(*ago)),
                Kind::File(Contents::Text(text)) => fs::write(&path, text),
                Kind::File(Contents::Bytes(bytes)) => fs::write(&path, bytes),
                Kind::Dir => fs::create_dir(&path),
                Kind::Symlink(target) => {
                    let target = match target {
                        Target::Earlier(i) if !made.is_empty() => {
                            made[usize::from(*i) % made.len()].clone()
                        }
                        Target::Earlier(_) | Target::Missing => root.join("no-such-entry"),
                        Target::Layout(parent) => parent.path(root),
                        Target::Itself => path.clone(),
                    };
                    std::os::unix::fs::symlink(target, &path)
                }
            };
            if outcome.is_ok() {
                made.push(path);
            }
        }
        for (offset, form, ago) in &self.recent_releases {
            let name = form.spell(Address::V6(*offset).ip());
            let _ = fs::write(root.join("cooldown").join(name), recent_ms(*ago));
        }
    }
}

/// A release stamp `ago` milliseconds (modulo the short cooldown) before now.
fn recent_ms(ago: u8) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    (now - u128::from(ago) % SHORT_COOLDOWN.as_millis()).to_string()
}

/// A fresh empty scratch directory for this process: under `$WEFT_FUZZ_SCRATCH` (which
/// e2e/fuzz.sh sets and removes afterwards), else on tmpfs when there is one.
pub fn scratch_root() -> PathBuf {
    let base = match std::env::var_os("WEFT_FUZZ_SCRATCH") {
        Some(dir) => PathBuf::from(dir),
        None if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
        None => std::env::temp_dir(),
    };
    let root = base.join(format!("weft-fuzz-store-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).expect("scratch directory");
    root
}
