//! The policy relay (docs/networkpolicy-design.md §1.5): every weft-controller replica
//! follows `WeftPolicy` and `WeftAddressGroup` on the apiserver once and serves each
//! weftd's span watches itself, so the apiserver has a few watchers of those kinds
//! instead of four per node. The apiserver checks every event against every watch of a
//! resource (measured: CPU per write 1.4× at 1,000 label-filtered watches, 3.6-5.5× at
//! 10,000); the relay sends an event to the watches of the labels its object had or
//! has, no other.
//!
//! - [`source`] follows the apiserver into a [`hub::Hub`] per resource;
//! - [`server`] serves list and watch over HTTPS, each client let in by
//!   [`auth::Gate`] as the apiserver would let it watch the same resource.

mod auth;
mod error;
mod hub;
mod kept;
mod server;
mod source;

pub use error::Error;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use kube::api::ApiResource;
use kube::Client;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use weft_api::{WeftAddressGroup, WeftPolicy};

use crate::metrics::Metrics;

/// A resource the relay serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    Policies,
    AddressGroups,
}

impl Relayed {
    const ALL: [Relayed; 2] = [Relayed::Policies, Relayed::AddressGroups];

    fn api_resource(self) -> ApiResource {
        match self {
            Relayed::Policies => ApiResource::erase::<WeftPolicy>(&()),
            Relayed::AddressGroups => ApiResource::erase::<WeftAddressGroup>(&()),
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Relayed::Policies => "weftpolicies",
            Relayed::AddressGroups => "weftaddressgroups",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Relayed::Policies => "WeftPolicy",
            Relayed::AddressGroups => "WeftAddressGroup",
        }
    }

    fn api_version(self) -> &'static str {
        "weft.dev/v1alpha1"
    }

    fn from_plural(plural: &str) -> Option<Relayed> {
        Relayed::ALL.into_iter().find(|r| r.plural() == plural)
    }
}

/// A long-running part of the relay, named for its supervisor.
pub struct Part {
    pub name: &'static str,
    pub run: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// Where and with what certificate the relay listens.
#[derive(Debug, Clone)]
pub struct Listen {
    pub addrs: Vec<std::net::SocketAddr>,
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// The relay's parts: one follower per resource and one server per address. Errors
/// (a certificate that does not load, an address taken) name the flag.
pub fn parts(client: &Client, listen: &Listen, metrics: &Metrics) -> Result<Vec<Part>, String> {
    let tls = acceptor(&listen.cert, &listen.key).map_err(|e| e.to_string())?;
    let hubs = hub::Hubs::default();
    let mut parts = Vec::new();
    for relayed in Relayed::ALL {
        parts.push(Part {
            name: "a relay follower",
            run: Box::pin(source::follow(
                client.clone(),
                relayed,
                hubs.of(relayed).clone(),
                metrics.clone(),
            )),
        });
    }
    let endpoint = server::Endpoint {
        hubs,
        gate: auth::Gate::new(client.clone(), metrics.clone()),
        metrics: metrics.clone(),
    };
    for addr in &listen.addrs {
        // Shared: replicas in one network namespace (tests) all serve.
        let listener = weft_health::bind_as("--relay-addr", *addr, weft_health::Sharing::Shared)?;
        parts.push(Part {
            name: "the relay server",
            run: Box::pin(server::serve(listener, tls.clone(), endpoint.clone())),
        });
    }
    Ok(parts)
}

/// A TLS acceptor serving the certificate chain `cert` with `key` (PEM files),
/// HTTP/1.1 over ALPN.
fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, Error> {
    let fail = |message: String| Error::Tls {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail(format!("reading the certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(fail("no certificate in the chain file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| fail(format!("reading the private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| fail(format!("the key does not fit the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
