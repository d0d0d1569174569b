//! Where the binaries under test and the real CNI tools are.

use std::path::PathBuf;

/// The workspace's target directory (honours CARGO_TARGET_DIR).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// A weft binary (`weft`, `weftd`) built by `cargo build --workspace`; release when
/// `WEFT_PROFILE=release`. `WEFT_PLUGIN` names another plugin binary (the statically
/// linked release build the benchmark uses), `WEFTD` another weftd (an earlier build,
/// to measure before and after).
pub fn binary(name: &str) -> PathBuf {
    let other = match name {
        "weft" => std::env::var_os("WEFT_PLUGIN"),
        "weftd" => std::env::var_os("WEFTD"),
        _ => None,
    };
    if let Some(other) = other {
        return PathBuf::from(other).canonicalize().unwrap();
    }
    let profile = std::env::var("WEFT_PROFILE").unwrap_or_else(|_| "debug".into());
    let path = target_dir().join(profile).join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` (the README's test command does)",
        path.display()
    );
    path.canonicalize().unwrap()
}

/// Where e2e/setup.sh put cnitool (`WEFT_TOOLS_BIN`, default ~/.cache/weft/tools/bin).
pub fn tools_bin() -> PathBuf {
    std::env::var_os("WEFT_TOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("bin"))
}

/// Where e2e/setup.sh put the reference plugins built from Go modules (CNI 1.1.0).
pub fn reference_plugins_dir() -> PathBuf {
    std::env::var_os("WEFT_CNI_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("plugins"))
}

fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    std::env::var_os("WEFT_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache/weft/tools"))
}

/// The real tools, checked to exist.
#[derive(Debug, Clone)]
pub struct Tools {
    /// cnitool (libcni's reference client).
    pub cnitool: PathBuf,
    /// Reference plugins (Go modules, CNI 1.1.0).
    pub plugins: PathBuf,
    /// Debian's containernetworking-plugins (CNI up to 1.0.0).
    pub debian_plugins: PathBuf,
}

impl Tools {
    /// Finds them or fails with the command that installs them.
    pub fn find() -> Tools {
        let tools = Tools {
            cnitool: tools_bin().join("cnitool"),
            plugins: reference_plugins_dir(),
            debian_plugins: PathBuf::from("/usr/lib/cni"),
        };
        for p in [
            &tools.cnitool,
            &tools.plugins.join("bridge"),
            &tools.debian_plugins.join("bridge"),
        ] {
            assert!(p.exists(), "{} is missing: run e2e/setup.sh", p.display());
        }
        tools
    }
}
