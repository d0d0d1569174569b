//! The protocol between the CNI plugin and weftd over weftd's unix socket.
//!
//! One JSON object per line, request then response, several exchanges per connection.
//! The plugin is a short-lived process on the hot path of every pod start, so the
//! protocol is plain blocking I/O on its side: no runtime, one round trip per ADD.

use crate::{Attachment, Family, Mode, PodMtus};
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, Write};
use std::net::{Ipv4Addr, Ipv6Addr};

/// IPv4 gateway every pod routes through. Link-local (RFC 3927), so it never collides
/// with a routable address; the pod holds a permanent neighbour entry for it.
pub const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// IPv6 gateway every pod routes through (link-local, RFC 4291 section 2.5.6).
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// Largest message either side accepts: a GC request for ~100k attachments fits.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Who the pod is, from `CNI_ARGS` (CONVENTIONS.md): kept for operators, and what
/// NetworkPolicy admission looks its entry up by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    /// `K8S_POD_NAMESPACE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `K8S_POD_NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `K8S_POD_UID` (containerd and CRI-O pass it): NetworkPolicy admits a pod on the
    /// entry of that very pod, not of an earlier one of the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// What the node serves: learnt by the plugin from the daemon, never from duplicated config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeNetwork {
    /// The node's name.
    pub node_name: String,
    /// Families served.
    pub mode: Mode,
    /// The node's delegated IPv6 prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_prefix: Option<Ipv6Net>,
    /// The node's overlay IPv4 subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_subnet: Option<Ipv4Net>,
    /// Pod MTUs.
    pub mtu: PodMtus,
}

/// One pod interface's addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    /// Whose addresses these are.
    #[serde(flatten)]
    pub attachment: Attachment,
    /// The pod's /128.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    /// The pod's /32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    /// The pod, when the runtime said.
    #[serde(default)]
    pub pod: PodRef,
    /// The network (the conflist's `name`) whose ADD made it: GC touches only its own
    /// network's allocations. Absent in records whose ADD named none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Unix time in milliseconds.
    pub allocated_at_ms: u64,
}

/// Every `result` a plugin may report: `ok` and the plugin's error labels. weftd maps
/// anything else to `unknown`, so a client cannot grow the metric's label set.
pub const CNI_RESULT_LABELS: &[&str] = &[
    "ok",
    "incompatible_version",
    "unknown_container",
    "invalid_env",
    "io",
    "decode",
    "invalid_config",
    "try_again_later",
    "daemon_unavailable",
    "exhausted",
    "already_allocated",
    "interface_exists",
    "netlink",
    "drift",
    "gc_incomplete",
    "daemon_internal",
];

/// CNI operations, as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CniOperation {
    /// ADD.
    Add,
    /// DEL.
    Del,
    /// CHECK.
    Check,
    /// STATUS.
    Status,
    /// GC.
    Gc,
    /// VERSION.
    Version,
}

impl CniOperation {
    /// Lower-case label.
    pub fn as_str(self) -> &'static str {
        match self {
            CniOperation::Add => "add",
            CniOperation::Del => "del",
            CniOperation::Check => "check",
            CniOperation::Status => "status",
            CniOperation::Gc => "gc",
            CniOperation::Version => "version",
        }
    }
}

/// A request from the plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Request {
    /// Is the daemon able to serve ADD? Answered with [`Response::Network`].
    Status,
    /// Allocate addresses for a new attachment. Fails if it already has some.
    Allocate {
        /// The attachment.
        attachment: Attachment,
        /// Who the pod is.
        #[serde(default)]
        pod: PodRef,
        /// The conflist's `name`, recorded with the allocation for GC.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        network: Option<String>,
        /// The only families to allocate (the pod annotation `weft.dev/ip-families`);
        /// `None` is every family the node serves. A family the node does not serve is
        /// refused ([`ErrorKind::BadRequest`]), never dropped silently.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip_families: Option<Vec<Family>>,
    },
    /// Release an attachment's addresses and remove its host veth in the background.
    /// Succeeds when there is nothing to release.
    Release {
        /// The attachment.
        attachment: Attachment,
    },
    /// The attachment's allocation, for CHECK.
    Lookup {
        /// The attachment.
        attachment: Attachment,
    },
    /// Release every allocation of `network` not in `valid`, and remove every weft host
    /// veth that belongs to no allocation left. Without `valid` nothing is released.
    Gc {
        /// Attachments still in use (CNI spec 1.1 GC `cni.dev/valid-attachments`);
        /// `None` when the runtime sent no list, which weftd takes as no information.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        valid: Option<Vec<Attachment>>,
        /// The conflist's `name`: only allocations whose ADD named it are collected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        network: Option<String>,
    },
    /// The outcome of a whole CNI call, for metrics. Not answered.
    Report {
        /// Which operation.
        operation: CniOperation,
        /// `ok` or an error label.
        result: String,
        /// Wall time of the whole plugin run.
        seconds: f64,
    },
}

/// Why the daemon refused a request; doubles as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No free address of a family.
    Exhausted,
    /// No free address now, but some are cooling down: try again later.
    CoolingDown,
    /// ADD for an attachment that already has addresses.
    AlreadyAllocated,
    /// The request did not parse or made no sense.
    BadRequest,
    /// The daemon is not ready yet (still loading its state).
    NotReady,
    /// The daemon failed (store I/O and the like).
    Internal,
}

impl ErrorKind {
    /// Snake-case label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Exhausted => "exhausted",
            ErrorKind::CoolingDown => "cooling_down",
            ErrorKind::AlreadyAllocated => "already_allocated",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::NotReady => "not_ready",
            ErrorKind::Internal => "internal",
        }
    }
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "result",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Response {
    /// Answer to Status.
    Network {
        /// The node's network.
        network: NodeNetwork,
    },
    /// Answer to Allocate and Lookup.
    Allocation {
        /// The allocation, absent when Lookup found none.
        allocation: Option<Allocation>,
        /// The node's network, so the plugin needs no second round trip.
        network: NodeNetwork,
    },
    /// Answer to Release.
    Released {
        /// What was released, if anything was allocated.
        allocation: Option<Allocation>,
    },
    /// Answer to Gc.
    Collected {
        /// Allocations released.
        released: Vec<Allocation>,
        /// Host veths removed.
        removed_links: Vec<String>,
        /// Problems met on the way; GC keeps going after each (CNI spec 1.1 GC).
        errors: Vec<String>,
    },
    /// A refusal.
    Error {
        /// Why.
        kind: ErrorKind,
        /// For the operator, naming what was wrong.
        message: String,
        /// The family concerned, when one is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        family: Option<Family>,
    },
}

/// Writes one message as a line.
pub fn write_message<W: Write, T: Serialize>(mut out: W, message: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// Reads one line-delimited message, refusing lines over [`MAX_MESSAGE_BYTES`].
/// `Ok(None)` at a clean end of stream.
pub fn read_message<R: BufRead, T: for<'de> Deserialize<'de>>(input: R) -> io::Result<Option<T>> {
    let mut line = Vec::new();
    let read = input
        .take(MAX_MESSAGE_BYTES as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if line.len() > MAX_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message exceeds the size limit",
        ));
    }
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "message ends without a newline",
        ));
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn attachment() -> Attachment {
        Attachment::new("c1", "eth0").unwrap()
    }

    #[test]
    fn requests_round_trip_through_lines() {
        let requests = vec![
            Request::Status,
            Request::Allocate {
                attachment: attachment(),
                pod: PodRef {
                    namespace: Some("ns".into()),
                    name: None,
                    uid: Some("6f1c-9a".into()),
                },
                network: Some("weft".into()),
                ip_families: None,
            },
            Request::Allocate {
                attachment: attachment(),
                pod: PodRef::default(),
                network: None,
                ip_families: Some(vec![Family::Ipv6]),
            },
            Request::Release {
                attachment: attachment(),
            },
            Request::Gc {
                valid: Some(vec![attachment()]),
                network: Some("weft".into()),
            },
            Request::Gc {
                valid: None,
                network: None,
            },
            Request::Report {
                operation: CniOperation::Add,
                result: "ok".into(),
                seconds: 0.002,
            },
        ];
        let mut buf = Vec::new();
        for r in &requests {
            write_message(&mut buf, r).unwrap();
        }
        let mut input = Cursor::new(buf);
        for r in &requests {
            assert_eq!(
                read_message::<_, Request>(&mut input).unwrap().as_ref(),
                Some(r)
            );
        }
        assert_eq!(read_message::<_, Request>(&mut input).unwrap(), None);
    }

    #[test]
    fn wire_form_is_readable_json() {
        let line = serde_json::to_string(&Request::Release {
            attachment: attachment(),
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"op":"release","attachment":{"containerId":"c1","ifname":"eth0"}}"#
        );
    }

    #[test]
    fn allocate_names_its_families_only_when_it_keeps_some() {
        let allocate = |ip_families| Request::Allocate {
            attachment: attachment(),
            pod: PodRef::default(),
            network: None,
            ip_families,
        };
        let line = serde_json::to_string(&allocate(Some(vec![Family::Ipv4]))).unwrap();
        assert!(line.ends_with(r#","ipFamilies":["ipv4"]}"#), "{line}");
        // An older plugin's request, without the field, asks for every family.
        let old = r#"{"op":"allocate","attachment":{"containerId":"c1","ifname":"eth0"}}"#;
        assert_eq!(
            serde_json::from_str::<Request>(old).unwrap(),
            allocate(None)
        );
        assert!(!serde_json::to_string(&allocate(None))
            .unwrap()
            .contains("ipFamilies"));
    }

    #[test]
    fn torn_and_oversized_messages_are_errors() {
        assert!(read_message::<_, Request>(Cursor::new(b"{\"op\":\"status\"}".to_vec())).is_err());
        assert!(read_message::<_, Request>(Cursor::new(b"not json\n".to_vec())).is_err());
        let huge = vec![b' '; MAX_MESSAGE_BYTES + 10];
        assert!(read_message::<_, Request>(Cursor::new(huge)).is_err());
    }
}
