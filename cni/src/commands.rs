//! The six CNI operations.

use crate::config::{self, NetConf, LATEST, SUPPORTED_VERSIONS};
use crate::daemon::Daemon;
use crate::error::{CniError, Result};
use crate::families::KeptFamilies;
use crate::invocation::{Command, Invocation};
use crate::result::{self, Wired};
use crate::wiring::{self, Pair, PairError, PodPlan, Sockets};
use serde_json::{json, Value};
use std::net::IpAddr;
use weft_netlink::Netns;
use weft_wire::{
    host_veth_name, pod_mac, Allocation, Attachment, Family, NodeNetwork, Request, Response,
};

/// What a run produced: the text for stdout on success, and the daemon connection (if
/// one was made) for the metrics report.
#[derive(Debug)]
pub struct Outcome {
    /// cniVersion for the error object.
    pub cni_version: String,
    /// stdout on success (None: print nothing).
    pub result: Result<Option<String>>,
    /// Open connection to weftd.
    pub daemon: Option<Daemon>,
}

/// Runs the invocation.
pub fn execute(invocation: &Invocation) -> Outcome {
    // The config is parsed once; only VERSION and a config that does not parse need the
    // lenient peek at its cniVersion.
    let peeked_version = || {
        let peeked = config::peek_version(&invocation.stdin)
            .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()));
        peeked.unwrap_or_else(|| LATEST.to_owned())
    };
    if invocation.command == Command::Version {
        let cni_version = peeked_version();
        let result = Ok(Some(version_reply(&cni_version)));
        return Outcome {
            cni_version,
            result,
            daemon: None,
        };
    }
    match NetConf::parse(&invocation.stdin) {
        Ok(conf) => {
            let mut daemon = None;
            let result = dispatch(invocation, &conf, &mut daemon);
            Outcome {
                cni_version: conf.cni_version,
                result,
                daemon,
            }
        }
        Err(e) => Outcome {
            cni_version: peeked_version(),
            result: Err(e),
            daemon: None,
        },
    }
}

fn version_reply(cni_version: &str) -> String {
    json!({"cniVersion": cni_version, "supportedVersions": SUPPORTED_VERSIONS}).to_string()
}

fn dispatch(
    invocation: &Invocation,
    conf: &NetConf,
    daemon: &mut Option<Daemon>,
) -> Result<Option<String>> {
    let command = invocation.command;
    if matches!(command, Command::Status | Command::Gc)
        && !config::version_at_least(&conf.cni_version, "1.1.0")
    {
        return Err(CniError::IncompatibleVersion(format!(
            "cniVersion: {} needs 1.1.0, the config says '{}'",
            command.as_str().to_uppercase(),
            conf.cni_version
        )));
    }
    let attachment = invocation.attachment.as_ref();
    let netns_path = invocation.netns.as_deref();
    match (command, attachment, netns_path) {
        (Command::Add, Some(attachment), Some(netns)) => {
            // Judged before weftd is contacted: a bad annotation allocates nothing.
            let kept = conf.ip_families.as_deref().map(KeptFamilies::parse);
            let kept = kept.transpose()?;
            let netns = open_netns(netns)?;
            let d = daemon.insert(Daemon::connect(&conf.socket)?);
            let pod = PodToAdd {
                invocation,
                attachment,
                netns: &netns,
                kept: kept.as_ref(),
            };
            add(d, conf, &pod).map(Some)
        }
        (Command::Del, Some(attachment), _) => del(daemon, conf, attachment).map(|_| None),
        (Command::Check, Some(attachment), Some(netns)) => {
            // Checked before weftd is contacted, so the config error wins (code 7).
            let prev = conf
                .prev_result
                .as_ref()
                .ok_or_else(|| CniError::InvalidConfig("prevResult: required for CHECK".into()))?;
            let netns = open_netns(netns)?;
            let d = daemon.insert(Daemon::connect(&conf.socket)?);
            check(d, prev, attachment, &netns).map(|_| None)
        }
        (Command::Status, _, _) => {
            let d = daemon.insert(Daemon::connect(&conf.socket)?);
            match d.call(&Request::Status) {
                Ok(Response::Network { .. }) => Ok(None),
                Ok(other) => Err(d.unexpected(&other)),
                Err(e) => Err(CniError::DaemonUnavailable(format!(
                    "weftd cannot serve ADD: {e}"
                ))),
            }
        }
        (Command::Gc, _, _) => {
            let d = daemon.insert(Daemon::connect(&conf.socket)?);
            gc(d, conf).map(|_| None)
        }
        _ => Err(CniError::InvalidEnv(format!(
            "{command:?}: required environment missing"
        ))),
    }
}

/// Opens the pod's namespace and proves it is one: a regular file, a directory or a mount
/// namespace open just as well and would fail only deep in ADD, after weftd allocated.
/// setns(2) accepts only a network namespace; entering and leaving costs microseconds.
fn open_netns(path: &std::path::Path) -> Result<Netns> {
    let netns =
        Netns::open(path).map_err(|e| CniError::UnknownContainer(format!("CNI_NETNS: {e}")))?;
    netns.enter().map(drop).map_err(|e| {
        CniError::UnknownContainer(format!(
            "CNI_NETNS: '{}' is not a network namespace: {e}",
            path.display()
        ))
    })?;
    Ok(netns)
}

fn allocation_of(daemon: &Daemon, response: Response) -> Result<(Option<Allocation>, NodeNetwork)> {
    match response {
        Response::Allocation {
            allocation,
            network,
        } => Ok((allocation, network)),
        other => Err(daemon.unexpected(&other)),
    }
}

/// The pod an ADD wires.
struct PodToAdd<'a> {
    invocation: &'a Invocation,
    attachment: &'a Attachment,
    netns: &'a Netns,
    /// The families its annotation keeps; `None`: every family the node serves.
    kept: Option<&'a KeptFamilies>,
}

/// weftd's answer to Allocate: an allocation holding exactly the kept families. One
/// that holds others is given back before the error returns.
fn allocated(daemon: &mut Daemon, pod: &PodToAdd<'_>) -> Result<(Allocation, NodeNetwork)> {
    let (allocation, network) = daemon
        .receive()
        .and_then(|r| allocation_of(daemon, r))
        .map_err(|refused| match pod.kept {
            Some(kept) => kept.refused(refused),
            None => refused,
        })?;
    let allocation = allocation.ok_or_else(|| {
        CniError::DaemonInternal("weftd answered ADD without an allocation".into())
    })?;
    if let Some(Err(e)) = pod.kept.map(|kept| kept.check(&allocation)) {
        return Err(release_after(daemon, pod.attachment, e));
    }
    Ok((allocation, network))
}

/// ADD. weftd allocates and persists while the plugin creates the veth pair and writes
/// the sysctls: the pair needs neither the addresses nor the MTU (the MTU is set with the
/// link-up request), so the round trip to weftd costs nothing on the critical path.
fn add(daemon: &mut Daemon, conf: &NetConf, pod: &PodToAdd<'_>) -> Result<String> {
    let (invocation, attachment, netns) = (pod.invocation, pod.attachment, pod.netns);
    daemon.send(&Request::Allocate {
        attachment: attachment.clone(),
        pod: invocation.pod.clone(),
        network: Some(conf.name.clone()),
        ip_families: pod.kept.map(|kept| kept.families().to_vec()),
    })?;
    let host_name = host_veth_name(attachment);
    // The runtime may ask for the MAC (the `mac` capability wins over CNI_ARGS, as in the
    // reference tuning plugin); otherwise it derives from the attachment.
    let mac = conf
        .runtime_mac
        .or(invocation.mac)
        .unwrap_or_else(|| pod_mac(attachment));
    let pair = Pair {
        host_name: &host_name,
        pod_name: &attachment.ifname,
        pod_mac: mac,
        netns,
    };
    let ipv6_off = pod.kept.is_some_and(|kept| kept.turns_off(Family::Ipv6));
    let wired = (|| -> Result<(Allocation, NodeNetwork)> {
        let mut sockets = Sockets::open(netns)?;
        let created = wiring::create_pair(&mut sockets, &pair, ipv6_off);
        let answer = allocated(daemon, pod);
        let ((allocation, network), echoed) = match (answer, created) {
            (Ok(answer), Ok(echoed)) => (answer, echoed),
            // weftd's refusal says more than the clash it explains (ADD twice: the live
            // attachment's veth); remove only a pair this run created.
            (Err(refused), created) => {
                if created.is_ok() {
                    let _ = sockets.remove_pair(&host_name);
                }
                return Err(refused);
            }
            // The previous veth of this attachment was still being removed; weftd waited
            // for it before answering, so the name is free now.
            (Ok(answer), Err(PairError::HostNameTaken(_))) => {
                match wiring::create_pair(&mut sockets, &pair, ipv6_off) {
                    Ok(echoed) => (answer, echoed),
                    Err(e) => return Err(release_after(daemon, attachment, e.into())),
                }
            }
            (Ok(_), Err(PairError::Other(e))) => return Err(release_after(daemon, attachment, e)),
        };
        let plan = PodPlan {
            pair: &pair,
            allocation: &allocation,
            network: &network,
        };
        if let Err(e) = wiring::configure(&mut sockets, &plan, echoed) {
            // A failed ADD leaves nothing behind (CNI spec: the runtime will also DEL).
            let _ = sockets.remove_pair(&host_name);
            return Err(release_after(daemon, attachment, e));
        }
        Ok((allocation, network))
    })()?;
    let (allocation, network) = wired;
    let sandbox = netns.path().display().to_string();
    let wired = Wired {
        host_name: &host_name,
        pod_name: &attachment.ifname,
        pod_mac: mac,
        sandbox: &sandbox,
        allocation: &allocation,
        network: &network,
    };
    Ok(result::build(&wired, &conf.cni_version, conf.prev_result.as_ref()).to_string())
}

/// Gives an ADD's addresses back after a failure, returning the failure.
fn release_after(daemon: &mut Daemon, attachment: &Attachment, error: CniError) -> CniError {
    let _ = daemon.call(&Request::Release {
        attachment: attachment.clone(),
    });
    error
}

/// DEL releases the addresses; weftd removes the veth in the background, because the
/// kernel needs an RCU grace period (~20 ms) to unregister a device and DEL should not
/// wait for it. Without weftd, the plugin removes the veth itself and still fails, so
/// the runtime retries and the addresses are not leaked.
fn del(daemon: &mut Option<Daemon>, conf: &NetConf, attachment: &Attachment) -> Result<()> {
    match Daemon::connect(&conf.socket) {
        Ok(d) => {
            let d = daemon.insert(d);
            match d.call(&Request::Release {
                attachment: attachment.clone(),
            })? {
                Response::Released { .. } => Ok(()),
                other => Err(d.unexpected(&other)),
            }
        }
        Err(unavailable) => {
            let removed = wiring::remove_host_veth(&host_veth_name(attachment));
            match removed {
                Ok(_) => Err(unavailable),
                Err(e) => Err(CniError::DaemonUnavailable(format!(
                    "{unavailable}; removing the host veth also failed: {e}"
                ))),
            }
        }
    }
}

fn check(
    daemon: &mut Daemon,
    prev: &serde_json::Map<String, Value>,
    attachment: &Attachment,
    netns: &Netns,
) -> Result<()> {
    let response = daemon.call(&Request::Lookup {
        attachment: attachment.clone(),
    })?;
    let (allocation, network) = allocation_of(daemon, response)?;
    let allocation = allocation
        .ok_or_else(|| CniError::Drift(format!("weftd holds no addresses for {attachment}")))?;
    let listed: Vec<IpAddr> = prev
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.get("address")?.as_str()?.parse::<ipnet::IpNet>().ok())
        .map(|net| net.addr())
        .collect();
    let held = allocation
        .ipv6
        .map(IpAddr::V6)
        .into_iter()
        .chain(allocation.ipv4.map(IpAddr::V4));
    for ip in held {
        if !listed.contains(&ip) {
            return Err(CniError::Drift(format!(
                "prevResult does not list {ip}, which weftd holds for {attachment}"
            )));
        }
    }
    let host_name = host_veth_name(attachment);
    // CHECK compares against the MAC the pod interface really has (see wiring::check).
    let pair = Pair {
        host_name: &host_name,
        pod_name: &attachment.ifname,
        pod_mac: pod_mac(attachment),
        netns,
    };
    let plan = PodPlan {
        pair: &pair,
        allocation: &allocation,
        network: &network,
    };
    wiring::check(&plan)
}

/// CNI spec 1.1 GC, for this network only. Without `cni.dev/valid-attachments` the
/// runtime said nothing about which attachments live: weftd releases nothing, and the
/// plugin says so on stderr (GC's stdout stays empty on success).
fn gc(daemon: &mut Daemon, conf: &NetConf) -> Result<()> {
    if conf.valid_attachments.is_none() {
        eprintln!(
            "weft: GC of network '{}' without cni.dev/valid-attachments releases nothing",
            conf.name
        );
    }
    match daemon.call(&Request::Gc {
        valid: conf.valid_attachments.clone(),
        network: Some(conf.name.clone()),
    })? {
        Response::Collected { errors, .. } if errors.is_empty() => Ok(()),
        Response::Collected {
            errors,
            released,
            removed_links,
        } => Err(CniError::GcIncomplete(format!(
            "GC released {} allocations and removed {} host veths, but {} steps failed: {}",
            released.len(),
            removed_links.len(),
            errors.len(),
            errors.join("; ")
        ))),
        other => Err(daemon.unexpected(&other)),
    }
}
