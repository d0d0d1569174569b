//! The table: one row per (round, server, N), each row's apiserver CPU per write, and
//! the apiserver's and the relay's together, against the N = 0 row of its round (the
//! apiserver's, else the relay's); with several rounds, the spread of the second ratio
//! per server and N.

use crate::relay::Via;
use crate::row::RowResult;
use crate::site::Cost;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;
use weft_e2e::bench::{mib_text, percentile, ratio, Table};

pub(crate) fn render(rows: &[RowResult]) -> String {
    let mut table = Table::new([
        "round",
        "via",
        "N watches",
        "served",
        "writes ok",
        "writes/s",
        "write p50 / p99 ms",
        "window s",
        "apiserver CPU s",
        "apiserver ms/write",
        "× N=0",
        "relay ms/write",
        "sum ms/write",
        "sum × N=0",
        "idle CPU s/s (apiserver / relay)",
        "etcd / bench CPU s",
        "apiserver RSS idle / after",
        "relay RSS idle / after",
        "events got / expected",
        "event p50 / p99 ms",
        "KiB/watcher mean (max)",
        "closed / terminated",
    ]);
    for row in rows {
        let base = baseline(rows, row.round);
        let (api_ms, sum_ms) = cpu_per_write_ms(row);
        let against = |ms: f64, base: Option<f64>| base.map_or("n/a".into(), |b| ratio(ms / b, 2));
        let relay = |text: &dyn Fn(&Cost) -> String| row.relay.as_ref().map_or("–".into(), text);
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
            row.via.name().into(),
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
            format!("{api_ms:.2}"),
            against(api_ms, base.map(|b| b.0)),
            relay(&|r| format!("{:.2}", per_write_ms(row, r.cpu))),
            format!("{sum_ms:.2}"),
            against(sum_ms, base.map(|b| b.1)),
            format!(
                "{:.3} / {}",
                row.apiserver.idle_cpu_rate,
                relay(&|r| format!("{:.3}", r.idle_cpu_rate))
            ),
            format!("{:.2} / {:.2}", row.etcd_cpu, row.bench_cpu),
            rss(&row.apiserver),
            relay(&rss),
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
            "\nApiserver and relay CPU per write against N = 0, per server and N over the rounds:\n"
        );
        out.push_str(&spread);
    }
    out
}

/// CPU milliseconds per create over the row's window: the apiserver's, and the
/// apiserver's and the relay's together.
fn cpu_per_write_ms(row: &RowResult) -> (f64, f64) {
    let relay = row.relay.map_or(0.0, |r| r.cpu);
    (
        per_write_ms(row, row.apiserver.cpu),
        per_write_ms(row, row.apiserver.cpu + relay),
    )
}

fn per_write_ms(row: &RowResult, cpu: f64) -> f64 {
    cpu * 1e3 / row.writes.len().max(1) as f64
}

/// CPU per write of `round`'s N = 0 row, the apiserver's if the round has one, else
/// the relay's.
fn baseline(rows: &[RowResult], round: usize) -> Option<(f64, f64)> {
    rows.iter()
        .filter(|r| r.round == round && r.watches == 0)
        .min_by_key(|r| r.via)
        .map(cpu_per_write_ms)
}

fn rss(cost: &Cost) -> String {
    format!(
        "{} / {}",
        mib_text(cost.rss_idle_kib),
        mib_text(cost.rss_kib)
    )
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

/// Per server and N: each round's ratio of the servers' CPU per write to its N = 0
/// row, as "min–max (k rounds)"; empty with one round.
fn ratio_spread(rows: &[RowResult]) -> String {
    let mut by_n: BTreeMap<(Via, usize), Vec<f64>> = BTreeMap::new();
    for row in rows {
        if let Some((_, base)) = baseline(rows, row.round) {
            by_n.entry((row.via, row.watches))
                .or_default()
                .push(cpu_per_write_ms(row).1 / base);
        }
    }
    if by_n.values().all(|v| v.len() < 2) {
        return String::new();
    }
    let mut table = Table::new(["via", "N watches", "sum × N=0 per round", "min – max"]);
    for ((via, n), ratios) in by_n {
        let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        table.row([
            via.name().to_owned(),
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
