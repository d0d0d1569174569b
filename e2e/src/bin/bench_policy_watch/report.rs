//! The table: one row per (round, N), each row's apiserver CPU per write against the
//! N = 0 row of its round; with several rounds, the spread of those ratios per N.

use crate::row::RowResult;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;
use weft_e2e::bench::{mib_text, percentile, ratio, Table};

pub(crate) fn render(rows: &[RowResult]) -> String {
    let mut table = Table::new([
        "round",
        "N watches",
        "served",
        "writes ok",
        "writes/s",
        "write p50 / p99 ms",
        "window s",
        "apiserver CPU s",
        "CPU ms/write",
        "× N=0",
        "idle CPU (s/s)",
        "etcd / bench CPU s",
        "apiserver RSS idle / after",
        "events got / expected",
        "event p50 / p99 ms",
        "KiB/watcher mean (max)",
        "closed / terminated",
    ]);
    for row in rows {
        let base = baseline(rows, row.round);
        let per_write = cpu_per_write_ms(row);
        let ok: Vec<Duration> = row
            .writes
            .iter()
            .filter(|w| w.error.is_none())
            .map(|w| w.answered - w.sent)
            .collect();
        let span = write_span(row).as_secs_f64();
        let events = signed_percentiles(&row.event_latency_ms);
        let mean_kib =
            row.bytes.iter().sum::<u64>() as f64 / row.bytes.len().max(1) as f64 / 1024.0;
        let max_kib = row.bytes.iter().max().copied().unwrap_or(0) as f64 / 1024.0;
        table.row([
            row.round.to_string(),
            row.watches.to_string(),
            (row.watches_served.round() as i64).to_string(),
            format!("{} / {}", ok.len(), row.writes.len()),
            format!("{:.0}", ok.len() as f64 / span.max(1e-9)),
            if ok.is_empty() {
                "n/a".into()
            } else {
                format!(
                    "{:.1} / {:.1}",
                    ms(percentile(&ok, 50)),
                    ms(percentile(&ok, 99))
                )
            },
            format!("{:.1}", row.window.as_secs_f64()),
            format!("{:.2}", row.apiserver.cpu),
            format!("{per_write:.2}"),
            base.map_or("n/a".into(), |b| ratio(per_write / b, 2)),
            format!("{:.3}", row.idle_cpu_rate),
            format!("{:.2} / {:.2}", row.etcd_cpu, row.bench_cpu),
            format!(
                "{} / {}",
                mib_text(row.rss_idle_kib),
                mib_text(row.apiserver.rss_kib)
            ),
            format!("{} / {}", row.delivered, row.expected),
            events,
            format!("{mean_kib:.0} ({max_kib:.0})"),
            format!("{} / {}", row.closed, row.terminated),
        ]);
    }
    let mut out = table.to_string();
    let spread = ratio_spread(rows);
    if !spread.is_empty() {
        let _ = writeln!(
            out,
            "\nCPU per write against N = 0, per N over the rounds:\n"
        );
        out.push_str(&spread);
    }
    out
}

/// Apiserver CPU milliseconds per create over the row's window.
fn cpu_per_write_ms(row: &RowResult) -> f64 {
    row.apiserver.cpu * 1e3 / row.writes.len().max(1) as f64
}

/// The N = 0 row's CPU per write in `round`, if the round has one.
fn baseline(rows: &[RowResult], round: usize) -> Option<f64> {
    rows.iter()
        .find(|r| r.round == round && r.watches == 0)
        .map(cpu_per_write_ms)
}

/// First create sent → last answered.
fn write_span(row: &RowResult) -> Duration {
    let first = row.writes.iter().map(|w| w.sent).min();
    let last = row.writes.iter().map(|w| w.answered).max();
    match (first, last) {
        (Some(a), Some(b)) => b - a,
        _ => Duration::ZERO,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// p50 / p99 of signed milliseconds, or "n/a" without samples.
fn signed_percentiles(samples: &[f64]) -> String {
    if samples.is_empty() {
        return "n/a".into();
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    // Nearest rank, as `bench::percentile`.
    let at = |pct: usize| sorted[(sorted.len() * pct).div_ceil(100).max(1) - 1];
    format!("{:.1} / {:.1}", at(50), at(99))
}

/// Per N: each round's ratio to its N = 0 row, as "min–max (k rounds)"; empty with one
/// round.
fn ratio_spread(rows: &[RowResult]) -> String {
    let mut by_n: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for row in rows {
        if let Some(base) = baseline(rows, row.round) {
            by_n.entry(row.watches)
                .or_default()
                .push(cpu_per_write_ms(row) / base);
        }
    }
    if by_n.values().all(|v| v.len() < 2) {
        return String::new();
    }
    let mut table = Table::new(["N watches", "× N=0 per round", "min – max"]);
    for (n, ratios) in by_n {
        let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        table.row([
            n.to_string(),
            each.join(", "),
            format!("{min:.2} – {max:.2}"),
        ]);
    }
    table.to_string()
}

#[cfg(test)]
mod tests {
    use super::signed_percentiles;

    #[test]
    fn signed_percentiles_keep_negative_samples() {
        let samples: Vec<f64> = (-10..=89).map(f64::from).collect();
        assert_eq!(signed_percentiles(&samples), "39.0 / 88.0");
        assert_eq!(signed_percentiles(&[]), "n/a");
    }
}
