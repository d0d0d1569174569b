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
            "K8S_POD_UID" => pod.uid = Some(value.to_owned()),
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
#[path = "tests/invocation.rs"]
mod tests;
