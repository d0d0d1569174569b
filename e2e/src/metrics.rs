//! One scrape of a Prometheus `/metrics` page (weftd's, weft-controller's, the
//! apiserver's), read sample by sample.

/// The text of one scrape.
#[derive(Debug, Clone, Default)]
pub struct Metrics(pub String);

impl Metrics {
    /// The value of one sample, named exactly as exported (with its labels).
    pub fn get(&self, sample: &str) -> Option<f64> {
        self.0.lines().find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    /// The value of one sample, 0 when it is not exported (yet).
    pub fn or_zero(&self, sample: &str) -> f64 {
        self.get(sample).unwrap_or(0.0)
    }

    /// (count, sum) of a histogram; `labels` as exported, e.g. `{kind="full"}`.
    pub fn histogram(&self, name: &str, labels: &str) -> (f64, f64) {
        (
            self.or_zero(&format!("{name}_count{labels}")),
            self.or_zero(&format!("{name}_sum{labels}")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn reads_samples_by_exact_name() {
        let m = Metrics(
            "# HELP x\nweft_peers_programmed 5000\nweft_peers_programmed_total 1\n\
             d_count{kind=\"full\"} 2\nd_sum{kind=\"full\"} 0.5\n"
                .into(),
        );
        assert_eq!(m.get("weft_peers_programmed"), Some(5000.0));
        assert_eq!(m.get("weft_peers"), None);
        assert_eq!(m.histogram("d", "{kind=\"full\"}"), (2.0, 0.5));
        assert_eq!(m.or_zero("absent"), 0.0);
    }
}
