//! What every benchmark binary shares: the machine's facts and the report's header,
//! what /proc says of processes and of the machine, statistics and their formatting,
//! markdown tables, the order in which the sides of a comparison take turns, and
//! publishing the report.

mod order;
mod procfs;
mod report;
mod stats;
mod table;

pub use order::turns;
pub use procfs::{
    busy_cpu, children_cpu, proc_stat, proc_status_kib, ticks_per_second, MachineTicks, ProcStat,
};
pub use report::{machine_facts, publish, report_header, tool_version};
pub use stats::{
    fraction, median, median_f64, mib, mib_text, ms, percentile, ratio, secs, time, verdict, Stats,
    NONE,
};
pub use table::Table;
