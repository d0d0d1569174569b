//! What every benchmark report starts with: the machine it ran on and how busy it was,
//! before and after.

use crate::read_trimmed;
use std::fmt::Write as _;
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

/// All CPUs' time since boot, from the first line of /proc/stat, in ticks (USER_HZ).
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineTicks {
    /// user, nice, system, irq and softirq (guest time is inside user).
    pub busy: u64,
    /// Time the hypervisor took from this machine.
    pub steal: u64,
    /// idle and iowait.
    pub idle: u64,
}

impl MachineTicks {
    /// The ticks so far (zeros if /proc/stat cannot be read).
    pub fn read() -> MachineTicks {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal guest guest_nice
        let sum = |fields: &[usize]| fields.iter().filter_map(|&i| ticks.get(i)).sum::<u64>();
        MachineTicks {
            busy: sum(&[0, 1, 2, 5, 6]),
            steal: sum(&[7]),
            idle: sum(&[3, 4]),
        }
    }

    /// Every tick: busy, stolen and idle.
    pub fn total(&self) -> u64 {
        self.busy + self.steal + self.idle
    }
}

/// Busy CPU time of the whole machine so far, every core summed, steal left out
/// ([`MachineTicks::busy`]). The difference of two readings is what the work between
/// them cost, on a machine that does nothing else; its unit is USER_HZ (10 ms), so
/// measure spans of seconds.
pub fn busy_cpu() -> std::time::Duration {
    const MS_PER_TICK: u64 = 10; // USER_HZ is 100 on Linux
    std::time::Duration::from_millis(MachineTicks::read().busy * MS_PER_TICK)
}

/// CPU time (user + system) of every child process this process has waited for so far,
/// and of their waited-for descendants (getrusage RUSAGE_CHILDREN).
pub fn children_cpu() -> std::time::Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(std::time::Duration::ZERO, |usage| {
        let time = |t: nix::sys::time::TimeVal| {
            std::time::Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000)
        };
        time(usage.user_time()) + time(usage.system_time())
    })
}
