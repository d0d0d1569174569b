//! The runtime's side of a call: environment variables and stdin (CNI spec 1.1
//! "Parameters"). Validation happens here, once, so commands get typed values.

use crate::error::{CniError, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
pub use weft_wire::CniOperation as Command;
use weft_wire::{Attachment, PodRef};

/// Largest stdin accepted. A GC config listing every attachment on a 110-pod node is a
/// few KiB; anything near this limit is garbage, refused before it is parsed.
pub const MAX_STDIN_BYTES: u64 = 16 << 20;

/// Parses `CNI_COMMAND`. The operations are the wire protocol's, which also label metrics.
fn parse_command(s: &str) -> Result<Command> {
    Ok(match s {
        "ADD" => Command::Add,
        "DEL" => Command::Del,
        "CHECK" => Command::Check,
        "STATUS" => Command::Status,
        "GC" => Command::Gc,
        "VERSION" => Command::Version,
        other => {
            return Err(CniError::InvalidEnv(format!(
                "CNI_COMMAND: '{}' is not one of ADD, DEL, CHECK, STATUS, GC, VERSION",
                other.escape_debug()
            )))
        }
    })
}

/// A validated call.
#[derive(Debug)]
pub struct Invocation {
    /// What to do.
    pub command: Command,
    /// For ADD, DEL, CHECK.
    pub attachment: Option<Attachment>,
    /// `CNI_NETNS`: required for ADD and CHECK, optional for DEL.
    pub netns: Option<PathBuf>,
    /// From `CNI_ARGS`.
    pub pod: PodRef,
    /// `MAC` from `CNI_ARGS` (CONVENTIONS.md), the pod interface's requested MAC.
    pub mac: Option<[u8; 6]>,
    /// Raw stdin.
    pub stdin: Vec<u8>,
}

fn var(env: &HashMap<String, String>, name: &str) -> Option<String> {
    env.get(name).filter(|v| !v.is_empty()).cloned()
}

fn required(env: &HashMap<String, String>, name: &str, command: &str) -> Result<String> {
    var(env, name).ok_or_else(|| {
        CniError::InvalidEnv(format!("{name} is required for {command} but not set"))
    })
}

impl Invocation {
    /// Reads and validates the call from `env` and `stdin`.
    pub fn parse(env: &HashMap<String, String>, stdin: impl Read) -> Result<Invocation> {
        let command_text = var(env, "CNI_COMMAND")
            .ok_or_else(|| CniError::InvalidEnv("CNI_COMMAND is not set".into()))?;
        let command = parse_command(&command_text)?;
        let mut buf = Vec::new();
        stdin
            .take(MAX_STDIN_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|e| CniError::Io(format!("reading the configuration from stdin: {e}")))?;
        if buf.len() as u64 > MAX_STDIN_BYTES {
            return Err(CniError::Decode(format!(
                "stdin: the configuration exceeds {MAX_STDIN_BYTES} bytes"
            )));
        }
        let mut invocation = Invocation {
            command,
            attachment: None,
            netns: None,
            pod: PodRef::default(),
            mac: None,
            stdin: buf,
        };
        if matches!(command, Command::Add | Command::Del | Command::Check) {
            let id = required(env, "CNI_CONTAINERID", &command_text)?;
            let ifname = required(env, "CNI_IFNAME", &command_text)?;
            let attachment = Attachment::new(&id, &ifname).map_err(|e| {
                let var = match e {
                    weft_wire::AttachmentError::ContainerId(_) => "CNI_CONTAINERID",
                    weft_wire::AttachmentError::Ifname(_) => "CNI_IFNAME",
                };
                CniError::InvalidEnv(format!("{var}: {e}"))
            })?;
            invocation.attachment = Some(attachment);
            let netns = match command {
                Command::Del => var(env, "CNI_NETNS"),
                _ => Some(required(env, "CNI_NETNS", &command_text)?),
            };
            if let Some(netns) = netns {
                if !netns.starts_with('/') {
                    return Err(CniError::InvalidEnv(format!(
                        "CNI_NETNS: '{netns}' is not an absolute path"
                    )));
                }
                invocation.netns = Some(PathBuf::from(netns));
            }
            (invocation.pod, invocation.mac) =
                parse_args(var(env, "CNI_ARGS").as_deref().unwrap_or(""))?;
        }
        Ok(invocation)
    }
}

/// `CNI_ARGS`: `KEY=VALUE` pairs joined by `;` (CONVENTIONS.md). weft reads the
/// Kubernetes pod identity and `MAC`, and ignores other keys, which are informational.
fn parse_args(args: &str) -> Result<(PodRef, Option<[u8; 6]>)> {
    let mut pod = PodRef::default();
    let mut mac = None;
    for pair in args.split(';').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            CniError::InvalidEnv(format!(
                "CNI_ARGS: '{}' is not KEY=VALUE",
                pair.escape_debug()
            ))
        })?;
        match key {
            "K8S_POD_NAMESPACE" => pod.namespace = Some(value.to_owned()),
            "K8S_POD_NAME" => pod.name = Some(value.to_owned()),
            "MAC" => {
                mac = Some(
                    weft_wire::parse_mac(value)
                        .map_err(|e| CniError::InvalidEnv(format!("CNI_ARGS: MAC {e}")))?,
                )
            }
            _ => {}
        }
    }
    Ok((pod, mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        Invocation::parse(&env(pairs), &b"{}"[..])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn add_needs_container_netns_and_ifname() {
        let ok = env(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "Abc_1"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            (
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
            ),
        ]);
        let inv = Invocation::parse(&ok, &b"{}"[..]).unwrap();
        assert_eq!(inv.pod.name.as_deref(), Some("web-0"));
        assert!(err(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_NETNS", "/x"),
            ("CNI_IFNAME", "eth0")
        ])
        .contains("CNI_CONTAINERID"));
        assert!(err(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0")
        ])
        .contains("CNI_NETNS"));
        assert!(err(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_NETNS", "/x")
        ])
        .contains("CNI_IFNAME"));
        assert!(err(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "-c"),
            ("CNI_NETNS", "/x"),
            ("CNI_IFNAME", "eth0")
        ])
        .contains("CNI_CONTAINERID"));
        assert!(err(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_NETNS", "rel"),
            ("CNI_IFNAME", "eth0")
        ])
        .contains("absolute"));
        assert!(err(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_NETNS", "/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "junk")
        ])
        .contains("CNI_ARGS"));
    }

    #[test]
    fn cni_args_mac_is_read_and_checked() {
        let base = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_NETNS", "/x"),
            ("CNI_IFNAME", "eth0"),
        ];
        let mut with_mac = base.to_vec();
        with_mac.push(("CNI_ARGS", "IgnoreUnknown=1;MAC=02:00:00:00:00:07"));
        let inv = Invocation::parse(&env(&with_mac), &b"{}"[..]).unwrap();
        assert_eq!(inv.mac, Some([2, 0, 0, 0, 0, 7]));
        let mut bad = base.to_vec();
        bad.push(("CNI_ARGS", "MAC=01:00:5e:00:00:01"));
        assert!(err(&bad).contains("CNI_ARGS: MAC"));
    }

    #[test]
    fn del_takes_a_missing_netns() {
        let inv = Invocation::parse(
            &env(&[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_IFNAME", "eth0"),
            ]),
            &b"{}"[..],
        )
        .unwrap();
        assert!(inv.netns.is_none());
    }

    #[test]
    fn unknown_and_missing_commands_are_invalid_env() {
        assert!(err(&[]).contains("CNI_COMMAND"));
        let e = Invocation::parse(&env(&[("CNI_COMMAND", "FROB")]), &b""[..]).unwrap_err();
        assert_eq!(e.code(), 4);
    }

    #[test]
    fn huge_stdin_is_refused() {
        let big = std::io::repeat(b' ').take(MAX_STDIN_BYTES + 10);
        let e = Invocation::parse(&env(&[("CNI_COMMAND", "VERSION")]), big).unwrap_err();
        assert_eq!(e.code(), 6);
    }
}
