//! weft-controller's command line: a contract deployments rely on. Extend, never rename.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use weft_wire::parse_bind_addr;

/// weft-controller: delegates each Node an IPv6 prefix and an IPv4 subnet.
#[derive(Debug, Parser)]
#[command(
    name = "weft-controller",
    version,
    about = "weft cluster controller: per-node IPv6 prefixes and IPv4 subnets from the WeftNetwork plan"
)]
pub struct Flags {
    /// kubeconfig file. Default: $KUBECONFIG, else the in-cluster service account.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The WeftNetwork (cluster-scoped) holding the address plan.
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Prometheus /metrics, /healthz and /readyz: [addr]:port, host:port or :port.
    #[arg(long, default_value = "[::]:9642", value_parser = |s: &str| parse_bind_addr("--metrics-addr", s).map(ListenAddrs).map_err(|e| e.to_string()))]
    pub metrics_addr: ListenAddrs,
    /// Namespace of the leader-election Lease.
    #[arg(long, default_value = "kube-system")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease (coordination.k8s.io/v1).
    #[arg(long, default_value = "weft-controller")]
    pub lease_name: String,
    /// This replica's identity in the Lease. Default: hostname-pid.
    #[arg(long)]
    pub identity: Option<String>,
    /// Reconciles running at once (0: unbounded). Each holds one apiserver connection
    /// while it writes, and the client speaks HTTP/1.1.
    #[arg(long, default_value_t = 32)]
    pub workers: u16,
    /// The policy relay's HTTPS listen address ([addr]:port, host:port or :port): each
    /// weftd's NetworkPolicy span watches come here instead of the apiserver (weftd
    /// --policy-relay). Off when absent.
    #[arg(long, value_parser = |s: &str| parse_bind_addr("--relay-addr", s).map(ListenAddrs).map_err(|e| e.to_string()))]
    pub relay_addr: Option<ListenAddrs>,
    /// The relay's certificate chain (PEM), its name or address among the
    /// subjectAltNames weftd connects to. Required with --relay-addr.
    #[arg(long)]
    pub relay_cert: Option<PathBuf>,
    /// The relay certificate's private key (PEM). Required with --relay-addr.
    #[arg(long)]
    pub relay_key: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, default_value = "info")]
    pub log_level: tracing::Level,
}

/// One listen flag may resolve to several addresses (a name with both families).
#[derive(Debug, Clone)]
pub struct ListenAddrs(pub Vec<SocketAddr>);

impl Flags {
    /// Checks clap cannot express; errors name the flag. Fills in the identity.
    pub fn validate(mut self) -> Result<Flags, String> {
        for (flag, value) in [
            ("--network", &self.network),
            ("--lease-namespace", &self.lease_namespace),
            ("--lease-name", &self.lease_name),
        ] {
            if !is_object_name(value) {
                return Err(format!(
                    "{flag}: '{value}' is not a Kubernetes object name (lower-case letters, digits, '-' and '.')"
                ));
            }
        }
        match (&self.relay_addr, &self.relay_cert, &self.relay_key) {
            (Some(_), Some(_), Some(_)) | (None, None, None) => {}
            (Some(_), _, _) => {
                return Err("--relay-addr: needs --relay-cert and --relay-key".into())
            }
            (None, _, _) => {
                return Err(
                    "--relay-cert / --relay-key: only with --relay-addr (the relay is off)".into(),
                )
            }
        }
        match &self.identity {
            Some(id) if id.trim().is_empty() => return Err("--identity: must not be empty".into()),
            Some(_) => {}
            None => self.identity = Some(default_identity()),
        }
        Ok(self)
    }

    /// Where the relay listens and with what certificate, when it is on.
    pub fn relay(&self) -> Option<crate::relay::Listen> {
        match (&self.relay_addr, &self.relay_cert, &self.relay_key) {
            (Some(addrs), Some(cert), Some(key)) => Some(crate::relay::Listen {
                addrs: addrs.0.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }

    /// The identity (set by [`Flags::validate`]).
    pub fn identity(&self) -> &str {
        self.identity.as_deref().unwrap_or("weft-controller")
    }
}

/// A DNS subdomain (RFC 1123), as object names are.
fn is_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `hostname-pid`: unique per replica (a pod's hostname is its name) and per restart.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "weft-controller".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
#[path = "tests/flags.rs"]
mod tests;
