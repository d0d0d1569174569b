//! The relay's errors; [`Error::metric_label`] names them on
//! `weft_relay_errors_total`.

/// What went wrong following the apiserver or serving a watch.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing {resource}: {source}")]
    List {
        resource: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("watching {resource}: {source}")]
    Watch {
        resource: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("watching {resource}: the apiserver said {code} {message}")]
    WatchStatus {
        resource: &'static str,
        code: u16,
        message: String,
    },
    #[error("{resource}: resourceVersion '{version}' is not a number")]
    Version {
        resource: &'static str,
        version: String,
    },
    #[error("checking a client's token: {0}")]
    Review(#[source] kube::Error),
    #[error("--relay-cert {cert} / --relay-key {key}: {message}")]
    Tls {
        cert: String,
        key: String,
        message: String,
    },
}

impl Error {
    /// Counts it on `weft_relay_errors_total`.
    pub fn count(&self, metrics: &crate::metrics::Metrics) {
        metrics
            .relay_errors
            .with_label_values(&[self.metric_label()])
            .inc();
    }

    /// The metric label: the variant's name. The one place errors map to labels.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::List { .. } => "List",
            Error::Watch { .. } => "Watch",
            Error::WatchStatus { .. } => "WatchStatus",
            Error::Version { .. } => "Version",
            Error::Review(_) => "Review",
            Error::Tls { .. } => "Tls",
        }
    }
}
