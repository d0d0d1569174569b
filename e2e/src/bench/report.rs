//! What every benchmark report starts with (the machine it ran on and how busy it was,
//! before and after), and where the report goes.

use crate::read_trimmed;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// The machine: cores and CPU model, kernel, load average now; and the build profile
/// the benchmark script says it measures (`WEFT_PROFILE`), with a warning on stderr when
/// that is not a release build.
pub fn machine_facts(bench: &str) -> (Vec<String>, String) {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let profile = std::env::var("WEFT_PROFILE").unwrap_or_else(|_| "debug".into());
    if profile != "release" {
        eprintln!("{bench}: WEFT_PROFILE is not release: measuring a {profile} build");
    }
    let facts = vec![
        format!("nproc: {nproc}; CPU: {cpu}"),
        format!("kernel: {}", read_trimmed("/proc/sys/kernel/osrelease")),
        format!("load average at start: {}", read_trimmed("/proc/loadavg")),
    ];
    (facts, profile)
}

/// The first line `program flag` prints (its version), or "unknown".
pub fn tool_version(program: impl AsRef<std::ffi::OsStr>, flag: &str) -> String {
    Command::new(program)
        .arg(flag)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The report's title, its facts as a list, and the load average at the end.
pub fn report_header(title: &str, facts: &[String]) -> String {
    let mut out = format!("## {title}\n\n");
    for fact in facts {
        let _ = writeln!(out, "- {fact}");
    }
    let _ = writeln!(
        out,
        "- load average at end: {}",
        read_trimmed("/proc/loadavg")
    );
    out
}

/// Prints the report and, with `--out`, writes it there too.
pub fn publish(bench: &str, report: &str, out: Option<&Path>) {
    print!("{report}");
    if let Some(out) = out {
        std::fs::write(out, report)
            .unwrap_or_else(|e| panic!("{bench}: cannot write {}: {e}", out.display()));
        eprintln!("{bench}: wrote {}", out.display());
    }
}
