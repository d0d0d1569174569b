//! What weftd answers on its socket: the IPAM, plus host veth removal, the pod guard's
//! elements, NetworkPolicy admission and metrics.

use crate::firewall::{sources_of, GuardSets, PodSource};
use crate::metrics::Metrics;
use crate::policy::PolicyEngine;
use crate::reaper::Reaper;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tracing::{info, warn};
use weft_ipam::{Ipam, IpamError};
use weft_netlink::Netlink;
use weft_wire::{
    host_veth_name, Attachment, ErrorKind, NodeNetwork, Request, Response, CNI_RESULT_LABELS,
    HOST_VETH_PREFIX,
};

/// How long an ADD waits for the previous veth of the same attachment to go.
const REMOVAL_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Service {
    ipam: Arc<Mutex<Ipam>>,
    network: Arc<NodeNetwork>,
    metrics: Metrics,
    reaper: Reaper,
    guard: GuardSets,
    /// Kubernetes mode: NetworkPolicy's verdicts for starting pods.
    policy: Option<PolicyEngine>,
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
    pub fn new(
        ipam: Ipam,
        network: NodeNetwork,
        metrics: Metrics,
        reaper: Reaper,
        guard: GuardSets,
    ) -> Service {
        metrics.set_usage(&ipam.usage());
        metrics.set_quarantined(ipam.quarantined());
        Service {
            ipam: Arc::new(Mutex::new(ipam)),
            network: Arc::new(network),
            metrics,
            reaper,
            guard,
            policy: None,
        }
    }

    /// Judges every starting pod by NetworkPolicy through `engine` before answering.
    pub fn with_policy(mut self, engine: PolicyEngine) -> Service {
        self.policy = Some(engine);
        self
    }

    /// Every allocation, for NetworkPolicy's passes.
    pub fn allocations(&self) -> Vec<weft_wire::Allocation> {
        self.ipam().allocations().cloned().collect()
    }

    /// Every allocated pod's sources, for the pod guard's repair.
    pub fn pod_sources(&self) -> Vec<PodSource> {
        self.ipam().allocations().flat_map(sources_of).collect()
    }

    /// Removes released pods' sources from the pod guard. A failure is logged: the
    /// next firewall pass removes them (their veths are going anyway).
    fn forget_sources(&self, released: &[weft_wire::Allocation]) {
        let sources: Vec<PodSource> = released.iter().flat_map(sources_of).collect();
        if let Err(e) = self.guard.forget(&sources) {
            warn!(error = %e, "removing released pods' sources from the pod guard");
        }
    }

    /// Changes the IPAM and refreshes the usage gauges, under one lock.
    fn mutate<T>(&self, change: impl FnOnce(&mut Ipam) -> T) -> T {
        let mut ipam = self.ipam();
        let out = change(&mut ipam);
        self.metrics.set_usage(&ipam.usage());
        self.metrics.set_quarantined(ipam.quarantined());
        out
    }

    /// Address use per family, for reporting.
    pub fn usage(&self) -> Vec<weft_ipam::FamilyUsage> {
        self.ipam().usage()
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
                let result = match CNI_RESULT_LABELS.contains(&result.as_str()) {
                    true => result.as_str(),
                    false => "unknown",
                };
                self.metrics
                    .cni_requests
                    .with_label_values(&[operation.as_str(), result])
                    .inc();
                self.metrics
                    .cni_duration
                    .with_label_values(&[operation.as_str()])
                    .observe(seconds);
                return None;
            }
            Request::Status => ("status", self.status()),
            Request::Allocate {
                attachment,
                pod,
                network,
                ip_families,
            } => {
                let families = ip_families.as_deref();
                let response = self.allocate(&attachment, pod, network, families).await;
                ("allocate", response)
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
            Request::Gc { valid, network } => ("gc", self.gc(valid, network).await),
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

    /// CNI spec 1.1 STATUS: ready only when ADD can be served now, so a node whose
    /// range is used up stops getting pods instead of failing them one by one.
    fn status(&self) -> Response {
        let usage = self.ipam().usage();
        match usage
            .iter()
            .find(|u| (u.in_use + u.cooling) as u128 >= u.capacity)
        {
            Some(full) => Response::Error {
                kind: ErrorKind::Exhausted,
                message: format!(
                    "no {} address can be allocated: {} in use and {} cooling down of {}",
                    full.family, full.in_use, full.cooling, full.capacity
                ),
                family: Some(full.family),
            },
            None => Response::Network {
                network: (*self.network).clone(),
            },
        }
    }

    async fn allocate(
        &self,
        attachment: &Attachment,
        pod: weft_wire::PodRef,
        network: Option<String>,
        families: Option<&[weft_wire::Family]>,
    ) -> Response {
        let veth = host_veth_name(attachment);
        if !self.reaper.wait_for(&veth, REMOVAL_WAIT).await {
            return error(
                ErrorKind::CoolingDown,
                format!("the previous host veth {veth} of {attachment} is still being removed"),
            );
        }
        let result = self.mutate(|ipam| ipam.allocate_families(attachment, pod, network, families));
        match result {
            // The pod's sources are in the kernel before the plugin makes its veth:
            // the guard drops everything else from that veth.
            Ok(allocation) => match self.admit(&allocation).await {
                Ok(()) => Response::Allocation {
                    allocation: Some(allocation),
                    network: (*self.network).clone(),
                },
                Err(message) => {
                    warn!(%attachment, error = %message, "pod not admitted");
                    // Without its sources or verdicts the pod could send nothing: no
                    // pod at all.
                    if let Err(e) = self.mutate(|ipam| ipam.release(attachment)) {
                        warn!(%attachment, error = %e, "releasing the refused pod's addresses");
                    }
                    self.forget_sources(std::slice::from_ref(&allocation));
                    error(ErrorKind::Internal, message)
                }
            },
            Err(e) => {
                warn!(%attachment, error = %e, "allocation refused");
                ipam_error(&e)
            }
        }
    }

    /// Puts the pod's guard sources and NetworkPolicy verdicts in the kernel.
    async fn admit(&self, allocation: &weft_wire::Allocation) -> Result<(), String> {
        match &self.policy {
            Some(policy) => {
                let service = self.clone();
                let pods = Arc::new(move || service.allocations());
                policy
                    .admit(allocation, pods, &self.guard)
                    .await
                    .map_err(|e| format!("admission: {e}"))
            }
            // GuardError says "pod guard: …" itself.
            None => self
                .guard
                .admit(&sources_of(allocation))
                .map_err(|e| e.to_string()),
        }
    }

    /// Released pods' verdicts go at NetworkPolicy's next pass.
    fn policy_released(&self) {
        if let Some(policy) = &self.policy {
            policy.released();
        }
    }

    fn release(&self, attachment: &Attachment) -> Response {
        let result = self.mutate(|ipam| ipam.release(attachment));
        match result {
            Ok(allocation) => {
                self.reaper.remove(host_veth_name(attachment));
                self.forget_sources(allocation.as_slice());
                self.policy_released();
                Response::Released { allocation }
            }
            Err(e) => ipam_error(&e),
        }
    }

    /// After a restart (a kill -9 loses the reaper's queue), removes every weft host
    /// veth that belongs to no recorded allocation.
    pub fn remove_orphan_veths(&self) -> Vec<String> {
        let keep: HashSet<String> = self
            .ipam()
            .allocations()
            .map(|a| host_veth_name(&a.attachment))
            .collect();
        let (orphans, errors) = self.queue_foreign_veths(&keep);
        for e in errors {
            warn!(error = %e, "looking for orphan host veths");
        }
        if !orphans.is_empty() {
            info!(
                count = orphans.len(),
                "removing host veths left by a previous run"
            );
        }
        orphans
    }

    /// Queues for removal every weft host veth whose name is not in `keep`.
    fn queue_foreign_veths(&self, keep: &HashSet<String>) -> (Vec<String>, Vec<String>) {
        // A dump of a few hundred links takes well under a millisecond; GC and
        // start-up are the only callers.
        let links = Netlink::connect().and_then(|mut nl| nl.links());
        match links {
            Ok(links) => {
                let foreign: Vec<String> = links
                    .into_iter()
                    .filter(|l| {
                        l.kind == "veth"
                            && l.name.starts_with(HOST_VETH_PREFIX)
                            && !keep.contains(&l.name)
                    })
                    .map(|l| l.name)
                    .collect();
                for name in &foreign {
                    self.reaper.remove(name.clone());
                }
                (foreign, Vec::new())
            }
            Err(e) => (Vec::new(), vec![format!("listing host veths: {e}")]),
        }
    }

    /// CNI spec 1.1 GC: release every allocation of `network` not in `valid`, and
    /// remove every weft host veth that belongs neither to a valid attachment nor to an
    /// allocation left (another network's), continuing past errors and reporting them.
    /// Without a list the runtime told nothing about which pods live: nothing is touched.
    async fn gc(&self, valid: Option<Vec<Attachment>>, network: Option<String>) -> Response {
        let Some(valid) = valid else {
            info!(network = ?network, "GC without cni.dev/valid-attachments: nothing released");
            return Response::Collected {
                released: Vec::new(),
                removed_links: Vec::new(),
                errors: Vec::new(),
            };
        };
        let valid: HashSet<Attachment> = valid.into_iter().collect();
        let (released, errors, left) = self.mutate(|ipam| {
            let (released, errors) = ipam.gc(network.as_deref(), &valid);
            let left: Vec<String> = ipam
                .allocations()
                .map(|a| host_veth_name(&a.attachment))
                .collect();
            (released, errors, left)
        });
        self.forget_sources(&released);
        self.policy_released();
        let mut errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let keep: HashSet<String> = valid.iter().map(host_veth_name).chain(left).collect();
        let (removed_links, listing_errors) = self.queue_foreign_veths(&keep);
        errors.extend(listing_errors);
        for name in &removed_links {
            if !self.reaper.wait_for(name, REMOVAL_WAIT).await {
                errors.push(format!(
                    "host veth {name} was not removed within {REMOVAL_WAIT:?}"
                ));
            }
        }
        info!(
            network = ?network,
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
