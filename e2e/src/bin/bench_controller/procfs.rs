//! What /proc says of a process and of the machine: CPU time and start time.

use std::process::Command;

#[derive(Debug)]
pub(crate) struct ProcStat {
    /// utime, stime, cutime, cstime in ticks.
    times: [u64; 4],
    pub(crate) start_time: u64,
}

impl ProcStat {
    pub(crate) fn cpu_seconds(&self) -> f64 {
        (self.times[0] + self.times[1]) as f64 / ticks_per_second()
    }
    pub(crate) fn children_cpu_seconds(&self) -> f64 {
        (self.times[2] + self.times[3]) as f64 / ticks_per_second()
    }
}

pub(crate) fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "pid (comm) ": field 3 (state) is index 0.
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        times: [field(14)?, field(15)?, field(16)?, field(17)?],
        start_time: field(22)?,
    })
}

pub(crate) fn ticks_per_second() -> f64 {
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

/// (busy, total) ticks of all CPUs since boot; busy includes steal.
pub(crate) fn machine_ticks() -> (u64, u64) {
    let ticks = weft_e2e::MachineTicks::read();
    (ticks.busy + ticks.steal, ticks.total())
}
