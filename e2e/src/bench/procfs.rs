//! What /proc says of a process and of the whole machine: CPU time, start time, memory.

use std::process::Command;
use std::time::Duration;

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
/// them cost, on a machine that does nothing else; its unit is a tick (10 ms), so
/// measure spans of seconds.
pub fn busy_cpu() -> Duration {
    Duration::from_secs_f64(MachineTicks::read().busy as f64 / ticks_per_second())
}

/// CPU time (user + system) of every child process this process has waited for so far,
/// and of their waited-for descendants (getrusage RUSAGE_CHILDREN).
pub fn children_cpu() -> Duration {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(Duration::ZERO, |usage| {
        let time = |t: nix::sys::time::TimeVal| {
            Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000)
        };
        time(usage.user_time()) + time(usage.system_time())
    })
}

/// A process's CPU times and start time (/proc/PID/stat).
#[derive(Debug)]
pub struct ProcStat {
    /// utime, stime, cutime, cstime in ticks.
    times: [u64; 4],
    /// When it started, in ticks since boot: with the PID, names one process.
    pub start_time: u64,
}

impl ProcStat {
    /// Its own CPU seconds (user + system).
    pub fn cpu_seconds(&self) -> f64 {
        (self.times[0] + self.times[1]) as f64 / ticks_per_second()
    }

    /// CPU seconds of the children it has waited for.
    pub fn children_cpu_seconds(&self) -> f64 {
        (self.times[2] + self.times[3]) as f64 / ticks_per_second()
    }
}

/// /proc/PID/stat, or `None` when the process is gone.
pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "pid (comm) ": field 3 (state) is index 0.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        times: [field(14)?, field(15)?, field(16)?, field(17)?],
        start_time: field(22)?,
    })
}

/// A `kB` line of /proc/PID/status (`VmHWM`, `VmRSS`) in KiB; 0 when unreadable.
pub fn proc_status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Clock ticks per second (USER_HZ, `getconf CLK_TCK`; 100 on Linux).
pub fn ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}
