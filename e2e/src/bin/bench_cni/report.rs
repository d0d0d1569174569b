//! The markdown report: medians and p99s per scenario and plugin, the ratios to the
//! anchors, CPU per ADD, and the verdicts against the targets.

use crate::subjects::{Site, Subject};
use crate::{
    Args, Samples, Scenario, ADD_BUSY, ADD_CPU, SETTLE, TARGET_MEDIAN_FRACTION, TARGET_WEFT_P99_ADD,
};
use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;
use weft_e2e::bench::{self, fraction, ms, report_header, verdict, Stats, Table};

/// weft's time over the anchor's, also as a fraction: `0.123 (1/8.1)`.
fn ratio(weft: Duration, anchor: Duration) -> String {
    fraction(weft.as_secs_f64() / anchor.as_secs_f64(), 3)
}

pub(crate) fn machine_facts(args: &Args) -> Vec<String> {
    let (mut facts, profile) = bench::machine_facts("bench_cni");
    facts.extend([
        format!("weft build profile: {profile}"),
        temp_dir_fact(),
        format!(
            "pods per set: {}; parallel: {}; rounds: {}; warm-up pods: {} (untimed)",
            args.pods, args.parallel, args.rounds, args.warmup
        ),
    ]);
    facts
}

/// weftd's state (in the harness node's directory) and host-local's dataDir live under
/// TMPDIR; on a disk file system every allocation record costs weftd file-system work that
/// its default state dir (/run/weft/state, tmpfs on real nodes) does not.
fn temp_dir_fact() -> String {
    let dir = std::env::temp_dir();
    let fs = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(&dir)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if fs != "tmpfs" {
        eprintln!(
            "bench_cni: {} is on {fs}, not tmpfs: weftd's state costs disk work",
            dir.display()
        );
    }
    format!(
        "weftd state dir and host-local dataDir under {} ({fs})",
        dir.display()
    )
}

pub(crate) fn render(
    facts: &[String],
    subjects: &[Subject],
    scenarios: &[Scenario],
    samples: &Samples,
) -> String {
    let stats = |si: usize, pi: usize, op: &'static str| Stats::of(&samples[&(si, pi, op)]);
    let mut out = report_header(
        "CNI ADD/DEL latency: weft vs bridge + host-local (dual-stack)",
        facts,
    );
    for subject in subjects {
        writeln!(out, "- {}: {}", subject.label, subject.version).unwrap();
    }
    writeln!(
        out,
        "- time: spawn to exit of one fresh plugin process per call (wall clock)\n"
    )
    .unwrap();
    let mut table = Table::new([
        "scenario",
        "plugin",
        "ADD median",
        "ADD p99",
        "DEL median",
        "DEL p99",
        "n",
    ]);
    for (si, scenario) in scenarios.iter().enumerate() {
        let label = format!("{} (x{})", scenario.name, scenario.parallel);
        for (pi, subject) in subjects.iter().enumerate() {
            let (add, del) = (stats(si, pi, "ADD"), stats(si, pi, "DEL"));
            table.row([
                label.clone(),
                subject.label.clone(),
                ms(add.median),
                ms(add.p99),
                ms(del.median),
                ms(del.p99),
                add.n.to_string(),
            ]);
        }
        let (wa, wd) = (stats(si, 0, "ADD"), stats(si, 0, "DEL"));
        for (pi, anchor) in subjects.iter().enumerate().skip(1) {
            let (ba, bd) = (stats(si, pi, "ADD"), stats(si, pi, "DEL"));
            table.row([
                label.clone(),
                format!("weft/{}", anchor.label),
                ratio(wa.median, ba.median),
                ratio(wa.p99, ba.p99),
                ratio(wd.median, bd.median),
                ratio(wd.p99, bd.p99),
            ]);
        }
    }
    write!(out, "{table}").unwrap();
    writeln!(out, "\nNotes:\n").unwrap();
    for (si, scenario) in scenarios.iter().enumerate() {
        for (pi, subject) in subjects.iter().enumerate() {
            let (add, del) = (stats(si, pi, "ADD"), stats(si, pi, "DEL"));
            writeln!(
                out,
                "- {} (x{}) {}: mean ADD {}, mean DEL {}",
                scenario.name,
                scenario.parallel,
                subject.label,
                ms(add.mean),
                ms(del.mean)
            )
            .unwrap();
            if matches!(subject.site, Site::Weft(_)) {
                writeln!(
                    out,
                    "- {} (x{}) {}: host veths gone {} (median of {} sets) after the \
                     last DEL returned; weftd removes them in the background, untimed \
                     (bridge's DEL deletes its veth before returning)",
                    scenario.name,
                    scenario.parallel,
                    subject.label,
                    ms(stats(si, pi, SETTLE).median),
                    stats(si, pi, SETTLE).n
                )
                .unwrap();
            }
        }
    }
    for (si, scenario) in scenarios.iter().enumerate() {
        for (pi, subject) in subjects.iter().enumerate() {
            writeln!(
                out,
                "- {} (x{}) {}: CPU per ADD {} in the plugin process, {} for the whole \
                 machine (medians of {} sets; the machine's is its busy CPU over the set's \
                 ADDs, steal excluded, so also weftd and the harness)",
                scenario.name,
                scenario.parallel,
                subject.label,
                ms(stats(si, pi, ADD_CPU).median),
                ms(stats(si, pi, ADD_BUSY).median),
                stats(si, pi, ADD_CPU).n
            )
            .unwrap();
        }
    }
    writeln!(out, "\nTargets (weft against {}):\n", subjects[1].label).unwrap();
    for (si, scenario) in scenarios.iter().enumerate() {
        for line in verdicts(
            stats(si, 0, "ADD"),
            stats(si, 0, "DEL"),
            stats(si, 1, "ADD"),
            stats(si, 1, "DEL"),
        ) {
            writeln!(out, "- {} (x{}): {line}", scenario.name, scenario.parallel).unwrap();
        }
        if scenario.parallel > 1 {
            writeln!(
                out,
                "- {} (x{}): {}",
                scenario.name,
                scenario.parallel,
                littles_law_floor(
                    scenario.parallel,
                    stats(si, 0, ADD_CPU).median,
                    stats(si, 0, "ADD").mean
                )
            )
            .unwrap();
        }
    }
    out
}

/// The lowest mean ADD latency the machine allows with `parallel` calls in flight.
/// Little's law: calls in flight = throughput x mean latency, and throughput is at most
/// cores / CPU per call. The plugin process's own CPU is a lower bound of a call's cost
/// (weftd's share and the kernel's deferred work come on top); the set's first and last
/// calls run with fewer in flight, so a set's mean can dip a little under the bound.
fn littles_law_floor(parallel: usize, plugin_cpu: Duration, mean: Duration) -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let floor = plugin_cpu * parallel as u32 / cores as u32;
    let (cpu, floor, mean) = (ms(plugin_cpu), ms(floor), ms(mean));
    format!(
        "Little's law: {parallel} ADDs in flight, each taking {cpu} of CPU in the plugin \
         process alone, on {cores} cores: mean ADD >= {parallel} x {cpu} / {cores} = \
         {floor} (measured mean {mean})"
    )
}

fn verdicts(weft_add: Stats, weft_del: Stats, bridge_add: Stats, bridge_del: Stats) -> Vec<String> {
    let within_target = |weft: Duration, bridge: Duration, op: &str| {
        let limit = bridge.mul_f64(TARGET_MEDIAN_FRACTION);
        format!(
            "median {op} <= 1/8 of bridge's: {} vs {} -> {}",
            ms(weft),
            ms(limit),
            verdict(weft <= limit)
        )
    };
    vec![
        within_target(weft_add.median, bridge_add.median, "ADD"),
        within_target(weft_del.median, bridge_del.median, "DEL"),
        format!(
            "p99 ADD <= {}: {} -> {}",
            ms(TARGET_WEFT_P99_ADD),
            ms(weft_add.p99),
            verdict(weft_add.p99 <= TARGET_WEFT_P99_ADD)
        ),
    ]
}
