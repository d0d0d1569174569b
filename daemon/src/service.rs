//! What weftd answers on its socket: the IPAM, plus host veth removal and metrics.

use crate::metrics::Metrics;
use crate::reaper::Reaper;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tracing::{info, warn};
use weft_ipam::{Ipam, IpamError};
use weft_netlink::Netlink;
use weft_wire::{
    host_veth_name, Attachment, ErrorKind, NodeNetwork, Request, Response, HOST_VETH_PREFIX,
};

/// How long an ADD waits for the previous veth of the same attachment to go.
const REMOVAL_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Service {
    ipam: Arc<Mutex<Ipam>>,
    network: Arc<NodeNetwork>,
    metrics: Metrics,
    reaper: Reaper,
}

fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error {
        kind,
        message: message.into(),
        family: None,
    }
}

fn ipam_error(e: &IpamError) -> Response {
    Response::Error {
        kind: e.kind(),
        message: e.to_string(),
        family: e.family(),
    }
}

impl Service {
    pub fn new(ipam: Ipam, network: NodeNetwork, metrics: Metrics, reaper: Reaper) -> Service {
        metrics.set_usage(&ipam.usage());
        Service {
            ipam: Arc::new(Mutex::new(ipam)),
            network: Arc::new(network),
            metrics,
            reaper,
        }
    }

    fn ipam(&self) -> MutexGuard<'_, Ipam> {
        self.ipam
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Answers one request; `None` for requests that take no answer.
    pub async fn handle(&self, request: Request) -> Option<Response> {
        let (operation, response) = match request {
            Request::Report {
                operation,
                result,
                seconds,
            } => {
                self.metrics
                    .cni_requests
                    .with_label_values(&[operation.as_str(), &result])
                    .inc();
                self.metrics
                    .cni_duration
                    .with_label_values(&[operation.as_str()])
                    .observe(seconds);
                return None;
            }
            Request::Status => (
                "status",
                Response::Network {
                    network: (*self.network).clone(),
                },
            ),
            Request::Allocate { attachment, pod } => {
                ("allocate", self.allocate(&attachment, pod).await)
            }
            Request::Release { attachment } => ("release", self.release(&attachment)),
            Request::Lookup { attachment } => {
                let allocation = self.ipam().lookup(&attachment).cloned();
                (
                    "lookup",
                    Response::Allocation {
                        allocation,
                        network: (*self.network).clone(),
                    },
                )
            }
            Request::Gc { valid } => ("gc", self.gc(valid).await),
        };
        let result = match &response {
            Response::Error { kind, .. } => kind.as_str(),
            _ => "ok",
        };
        self.metrics
            .ipam_requests
            .with_label_values(&[operation, result])
            .inc();
        Some(response)
    }

    async fn allocate(&self, attachment: &Attachment, pod: weft_wire::PodRef) -> Response {
        let veth = host_veth_name(attachment);
        if !self.reaper.wait_for(&veth, REMOVAL_WAIT).await {
            return error(
                ErrorKind::CoolingDown,
                format!("the previous host veth {veth} of {attachment} is still being removed"),
            );
        }
        let mut ipam = self.ipam();
        let result = ipam.allocate(attachment, pod);
        self.metrics.set_usage(&ipam.usage());
        drop(ipam);
        match result {
            Ok(allocation) => Response::Allocation {
                allocation: Some(allocation),
                network: (*self.network).clone(),
            },
            Err(e) => {
                warn!(%attachment, error = %e, "allocation refused");
                ipam_error(&e)
            }
        }
    }

    fn release(&self, attachment: &Attachment) -> Response {
        let mut ipam = self.ipam();
        let result = ipam.release(attachment);
        self.metrics.set_usage(&ipam.usage());
        drop(ipam);
        match result {
            Ok(allocation) => {
                self.reaper.remove(host_veth_name(attachment));
                Response::Released { allocation }
            }
            Err(e) => ipam_error(&e),
        }
    }

    /// CNI spec 1.1 GC: release every allocation and remove every weft host veth not
    /// belonging to a valid attachment, continuing past errors and reporting them.
    async fn gc(&self, valid: Vec<Attachment>) -> Response {
        let valid: HashSet<Attachment> = valid.into_iter().collect();
        let (released, mut errors) = {
            let mut ipam = self.ipam();
            let (released, errors) = ipam.gc(&valid);
            self.metrics.set_usage(&ipam.usage());
            (
                released,
                errors
                    .into_iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>(),
            )
        };
        let keep: HashSet<String> = valid.iter().map(host_veth_name).collect();
        let mut removed_links = Vec::new();
        match Netlink::connect() {
            Ok(nl) => match nl.links().await {
                Ok(links) => {
                    for link in links {
                        if link.kind == "veth"
                            && link.name.starts_with(HOST_VETH_PREFIX)
                            && !keep.contains(&link.name)
                        {
                            self.reaper.remove(link.name.clone());
                            removed_links.push(link.name);
                        }
                    }
                }
                Err(e) => errors.push(format!("listing host veths: {e}")),
            },
            Err(e) => errors.push(format!("listing host veths: {e}")),
        }
        for name in &removed_links {
            if !self.reaper.wait_for(name, REMOVAL_WAIT).await {
                errors.push(format!(
                    "host veth {name} was not removed within {REMOVAL_WAIT:?}"
                ));
            }
        }
        info!(
            released = released.len(),
            removed = removed_links.len(),
            errors = errors.len(),
            "GC"
        );
        Response::Collected {
            released,
            removed_links,
            errors,
        }
    }
}
