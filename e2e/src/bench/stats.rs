//! Medians, percentiles and the way benchmark reports write numbers.

use std::time::Duration;

/// What a cell shows when there is no value.
pub const NONE: &str = "—";

/// The middle of sorted values: the mean of the two middle ones for an even count.
fn middle<T: Copy>(sorted: &[T], mean_of_two: impl Fn(T, T) -> T) -> Option<T> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some(mean_of_two(sorted[n / 2 - 1], sorted[n / 2])),
    }
}

/// The median; `None` without samples.
pub fn median(mut samples: Vec<Duration>) -> Option<Duration> {
    samples.sort();
    middle(&samples, |a, b| (a + b) / 2)
}

/// The median of numbers; NaN without any.
pub fn median_f64(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    middle(&v, |a, b| (a + b) / 2.0).unwrap_or(f64::NAN)
}

/// Nearest rank: the smallest sample with at least `pct` % of the samples at or below
/// it. Panics without samples.
pub fn percentile(samples: &[Duration], pct: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = (sorted.len() * pct).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// Mean, median and p99 of a set of latencies.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// Arithmetic mean.
    pub mean: Duration,
    /// Median.
    pub median: Duration,
    /// 99th percentile, nearest rank.
    pub p99: Duration,
    /// Samples.
    pub n: usize,
}

impl Stats {
    /// Of `samples`; panics without any.
    pub fn of(samples: &[Duration]) -> Stats {
        let n = samples.len();
        Stats {
            mean: samples.iter().sum::<Duration>() / n as u32,
            median: median(samples.to_vec()).expect("no samples"),
            p99: percentile(samples, 99),
            n,
        }
    }
}

/// `2.53 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// `1.5 s` with `decimals`.
pub fn secs(d: Duration, decimals: usize) -> String {
    format!("{:.decimals$} s", d.as_secs_f64())
}

/// A time in the unit that suits it: `1.23 s` from a second on, else `580.0 ms`; `—`
/// for none.
pub fn time(d: Option<Duration>) -> String {
    match d {
        None => NONE.into(),
        Some(d) if d >= Duration::from_secs(1) => secs(d, 2),
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1000.0),
    }
}

/// KiB as MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `28.1 MiB`.
pub fn mib_text(kib: u64) -> String {
    format!("{:.1} MiB", mib(kib))
}

/// A ratio with `decimals`; `—` when it is not a finite number (a missing side).
pub fn ratio(r: f64, decimals: usize) -> String {
    if r.is_finite() {
        format!("{r:.decimals$}")
    } else {
        NONE.into()
    }
}

/// A ratio under 1 also as a fraction, the way the targets are written: `0.123
/// (1/8.1)`.
pub fn fraction(r: f64, decimals: usize) -> String {
    if r.is_finite() && r > 0.0 && r < 1.0 {
        format!("{r:.decimals$} (1/{:.1})", 1.0 / r)
    } else {
        ratio(r, decimals)
    }
}

/// A target's verdict.
pub fn verdict(met: bool) -> &'static str {
    if met {
        "MET"
    } else {
        "MISSED"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(ms_(&[3, 1, 2])), Some(Duration::from_millis(2)));
        assert_eq!(
            median(ms_(&[4, 1, 2, 3])),
            Some(Duration::from_micros(2500))
        );
        assert_eq!(median(Vec::new()), None);
        assert_eq!(median_f64([1.0, 5.0]), 3.0);
        assert!(median_f64([]).is_nan());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples = ms_(&(1..=200).collect::<Vec<_>>());
        assert_eq!(percentile(&samples, 99), Duration::from_millis(198));
        assert_eq!(percentile(&samples, 0), Duration::from_millis(1));
        assert_eq!(Stats::of(&samples).p99, Duration::from_millis(198));
    }

    #[test]
    fn ratios_as_written() {
        assert_eq!(fraction(0.125, 3), "0.125 (1/8.0)");
        assert_eq!(fraction(2.0, 2), "2.00");
        assert_eq!(ratio(f64::NAN, 2), NONE);
        assert_eq!(time(Some(Duration::from_millis(1500))), "1.50 s");
        assert_eq!(time(Some(Duration::from_micros(2500))), "2.5 ms");
    }
}
