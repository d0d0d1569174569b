//! The markdown report: throughput, CPU per GB and RTT beside the reference, every
//! run's figures, and the verdict against the target.

use crate::measure::{Cell, Samples, Throughput};
use crate::plan::Family;
use crate::{Args, TARGET_GUARD_RATIO, TARGET_RATIO};
use std::fmt::Write as _;
use weft_e2e::bench::{self, median_f64, ratio, report_header, tool_version, verdict, Table};

pub(crate) fn machine_facts(args: &Args) -> Vec<String> {
    let (mut facts, profile) = bench::machine_facts("bench_datapath");
    facts.extend([
        format!(
            "weft build profile: {profile}; {}",
            tool_version("iperf3", "--version")
        ),
        format!(
            "{} runs; each: iperf3 -t {} -O {} (TCP, receiver's rate) per cell and side, \
             sides alternating first; ping -c {} -i 0.005 per family and side",
            args.runs, args.time, args.omit, args.pings
        ),
        "weft: 2 namespace nodes, weftd --mode dual --ipv6-routing direct, dual underlay \
         (VXLAN over IPv4) on a bridge in a fabric namespace, one pod per node via the CNI \
         binary; reference: the same hops made with ip/bridge commands"
            .to_owned(),
    ]);
    facts
}

pub(crate) fn render(
    args: &Args,
    facts: &[String],
    cells: &[Cell; 4],
    samples: &Samples,
) -> String {
    // The second side: the reference, or weft without its pod guard (`--pod-guard`).
    let (other, target, title) = match args.pod_guard {
        true => (
            "no guard",
            TARGET_GUARD_RATIO,
            "Pod-to-pod throughput and RTT across two nodes: weft vs weft without its pod guard",
        ),
        false => (
            "reference",
            TARGET_RATIO,
            "Pod-to-pod throughput and RTT across two nodes: weft vs the same hops made with ip",
        ),
    };
    let mut out = report_header(title, facts);
    let of = |ci: usize, f: fn(&Throughput) -> f64| {
        samples.throughput[ci]
            .each_ref()
            .map(|side| median_f64(side.iter().map(f)))
    };
    let mut throughput = Table::new([
        "path".to_owned(),
        "streams".to_owned(),
        "weft Gbit/s".to_owned(),
        format!("{other} Gbit/s"),
        format!("weft / {other}"),
        format!("target >= {target}"),
    ]);
    let mut cpu = Table::new([
        "path".to_owned(),
        "streams".to_owned(),
        "weft CPU ms/GB".to_owned(),
        format!("{other} CPU ms/GB"),
        format!("weft / {other}"),
    ]);
    let mut verdicts = Vec::new();
    for (ci, cell) in cells.iter().enumerate() {
        let [w, r] = of(ci, |t| t.gbps);
        let met = w / r >= target;
        throughput.row([
            cell.family.label().to_owned(),
            cell.streams.to_string(),
            format!("{w:.2}"),
            format!("{r:.2}"),
            ratio(w / r, 3),
            verdict(met).to_owned(),
        ]);
        verdicts.push(met);
        let [w, r] = of(ci, |t| t.cpu_ms_per_gb);
        cpu.row([
            cell.family.label().to_owned(),
            cell.streams.to_string(),
            format!("{w:.0}"),
            format!("{r:.0}"),
            ratio(w / r, 3),
        ]);
    }
    let mut rtt = Table::new([
        "path".to_owned(),
        "weft RTT median (mean)".to_owned(),
        format!("{other} RTT median (mean)"),
        format!("weft / {other} (median)"),
    ]);
    for (fi, family) in Family::BOTH.into_iter().enumerate() {
        let [w, r] = samples.rtt[fi].each_ref().map(|side| {
            (
                median_f64(side.iter().map(|x| x.median)),
                median_f64(side.iter().map(|x| x.mean)),
            )
        });
        let us = |(median, mean): (f64, f64)| {
            format!("{:.1} µs ({:.1} µs)", median * 1000.0, mean * 1000.0)
        };
        rtt.row([family.label().to_owned(), us(w), us(r), ratio(w.0 / r.0, 2)]);
    }
    write!(out, "\n{throughput}\n{cpu}\n{rtt}").unwrap();
    writeln!(
        out,
        "\nMedians over {} runs; RTT: ping's per-reply time, the median of each series' \
         median (mean).\n",
        args.runs
    )
    .unwrap();
    writeln!(
        out,
        "CPU ms/GB: busy CPU of both cores (steal excluded) over each iperf3 run, omitted \
         seconds included, per GB received; medians over runs.\n"
    )
    .unwrap();
    writeln!(out, "Per run (Gbit/s, retransmits, CPU ms/GB):\n").unwrap();
    for (ci, cell) in cells.iter().enumerate() {
        for (si, label) in ["weft", other].into_iter().enumerate() {
            let runs: Vec<String> = samples.throughput[ci][si]
                .iter()
                .map(|t| format!("{:.2} ({}, {:.0})", t.gbps, t.retransmits, t.cpu_ms_per_gb))
                .collect();
            writeln!(
                out,
                "- {} x{} {label}: {}",
                cell.family.label(),
                cell.streams,
                runs.join(", ")
            )
            .unwrap();
        }
    }
    for (fi, family) in Family::BOTH.into_iter().enumerate() {
        for (si, label) in ["weft", other].into_iter().enumerate() {
            let runs: Vec<String> = samples.rtt[fi][si]
                .iter()
                .map(|r| {
                    format!(
                        "{:.1}/{:.1} µs ({} replies)",
                        r.median * 1000.0,
                        r.mean * 1000.0,
                        r.received
                    )
                })
                .collect();
            writeln!(
                out,
                "- RTT {} {label} (median/mean): {}",
                family.label(),
                runs.join(", ")
            )
            .unwrap();
        }
    }
    let all = verdicts.iter().all(|&m| m);
    writeln!(
        out,
        "\nTarget: weft >= {target} of {other} in every cell -> {}",
        verdict(all)
    )
    .unwrap();
    out
}
