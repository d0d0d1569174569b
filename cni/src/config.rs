//! The network configuration on stdin (CNI spec 1.1 "Network configuration"), checked
//! field by field so every error names the field and the value.

use crate::error::{CniError, Result};
use crate::families::{ANNOTATION, ANNOTATIONS_CAPABILITY};
use serde_json::{Map, Value};
use std::path::PathBuf;
use weft_wire::Attachment;

/// Versions weft accepts, oldest first. 0.4.0 introduced CHECK; 1.1.0 STATUS and GC.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["0.4.0", "1.0.0", "1.1.0"];
/// The newest, used when the input names none.
pub const LATEST: &str = "1.1.0";
/// Where weftd listens unless the config says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/weft/weftd.sock";

/// The parts of the config weft uses; the rest passes through untouched.
#[derive(Debug)]
pub struct NetConf {
    /// `cniVersion`, one of [`SUPPORTED_VERSIONS`].
    pub cni_version: String,
    /// `socket`: weftd's unix socket.
    pub socket: PathBuf,
    /// `prevResult`, as given (unknown fields must survive).
    pub prev_result: Option<Map<String, Value>>,
    /// `runtimeConfig.mac` (the `mac` capability): the pod interface's requested MAC.
    pub runtime_mac: Option<[u8; 6]>,
    /// The pod annotation `weft.dev/ip-families` from
    /// `runtimeConfig["io.kubernetes.cri.pod-annotations"]`, as written: only ADD reads
    /// it ([`crate::families`]), so a bad value never blocks the pod's DEL.
    pub ip_families: Option<String>,
    /// GC's attachments still in use.
    pub valid_attachments: Option<Vec<Attachment>>,
    /// `name`: the network, recorded with each allocation so GC touches only its own.
    pub name: String,
}

/// Reads just `cniVersion`, for VERSION and for the version of an error reply.
pub fn peek_version(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_owned)
}

fn string_field(obj: &Map<String, Value>, field: &str) -> Result<Option<String>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(CniError::Decode(format!(
            "{field}: expected a string, got {}",
            describe(other)
        ))),
    }
}

fn describe(v: &Value) -> String {
    let text = v.to_string();
    let kind = match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    if text.len() > 60 {
        kind.to_owned()
    } else {
        format!("{kind} {text}")
    }
}

/// Whether `version` is at least `minimum` (both dotted triples).
pub fn version_at_least(version: &str, minimum: &str) -> bool {
    let parse = |s: &str| -> Vec<u32> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(version) >= parse(minimum)
}

/// CNI spec: names start with an alphanumeric and continue with alphanumerics, '_', '.', '-'.
fn valid_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl NetConf {
    /// Parses and validates the config.
    pub fn parse(stdin: &[u8]) -> Result<NetConf> {
        let value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::Decode(format!(
                "stdin is not a valid JSON network configuration: {e}"
            ))
        })?;
        let Value::Object(obj) = value else {
            return Err(CniError::Decode(format!(
                "stdin: expected a JSON object, got {}",
                describe(&value)
            )));
        };
        let cni_version = string_field(&obj, "cniVersion")?
            .ok_or_else(|| CniError::InvalidConfig("cniVersion: missing".into()))?;
        if !SUPPORTED_VERSIONS.contains(&cni_version.as_str()) {
            return Err(CniError::IncompatibleVersion(format!(
                "cniVersion: '{cni_version}' is not supported; weft speaks {}",
                SUPPORTED_VERSIONS.join(", ")
            )));
        }
        let name = string_field(&obj, "name")?
            .ok_or_else(|| CniError::InvalidConfig("name: missing".into()))?;
        if !valid_name(&name) {
            return Err(CniError::InvalidConfig(format!(
                "name: '{}' must start with a letter or digit and contain only letters, digits, '_', '.', '-'",
                name.escape_debug()
            )));
        }
        match string_field(&obj, "type")? {
            Some(t) if t == "weft" => {}
            Some(t) => {
                return Err(CniError::InvalidConfig(format!(
                    "type: '{t}' is not 'weft'"
                )))
            }
            None => return Err(CniError::InvalidConfig("type: missing".into())),
        }
        let socket =
            PathBuf::from(string_field(&obj, "socket")?.unwrap_or_else(|| DEFAULT_SOCKET.into()));
        if !socket.is_absolute() {
            return Err(CniError::InvalidConfig(format!(
                "socket: '{}' is not an absolute path",
                socket.display()
            )));
        }
        let prev_result = match obj.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(other) => {
                return Err(CniError::Decode(format!(
                    "prevResult: expected an object, got {}",
                    describe(other)
                )))
            }
        };
        let valid_attachments = parse_attachments(&obj)?;
        let runtime = match obj.get("runtimeConfig") {
            None | Some(Value::Null) => RuntimeConfig::default(),
            Some(Value::Object(rc)) => RuntimeConfig::parse(rc)?,
            Some(other) => {
                return Err(CniError::Decode(format!(
                    "runtimeConfig: expected an object, got {}",
                    describe(other)
                )))
            }
        };
        Ok(NetConf {
            cni_version,
            socket,
            prev_result,
            runtime_mac: runtime.mac,
            ip_families: runtime.ip_families,
            valid_attachments,
            name,
        })
    }
}

/// What weft reads of `runtimeConfig`, the capability arguments the runtime injects for
/// the capabilities the conflist declares; other keys pass unread.
#[derive(Debug, Default)]
struct RuntimeConfig {
    mac: Option<[u8; 6]>,
    ip_families: Option<String>,
}

impl RuntimeConfig {
    fn parse(rc: &Map<String, Value>) -> Result<RuntimeConfig> {
        let mac = string_field(rc, "mac")
            .map_err(|e| CniError::Decode(format!("runtimeConfig.{e}")))?
            .map(|m| {
                weft_wire::parse_mac(&m)
                    .map_err(|e| CniError::InvalidConfig(format!("runtimeConfig.mac: {e}")))
            })
            .transpose()?;
        let ip_families = match rc.get(ANNOTATIONS_CAPABILITY) {
            None | Some(Value::Null) => None,
            Some(Value::Object(annotations)) => {
                string_field(annotations, ANNOTATION).map_err(|e| {
                    CniError::Decode(format!("runtimeConfig.{ANNOTATIONS_CAPABILITY}.{e}"))
                })?
            }
            Some(other) => {
                return Err(CniError::Decode(format!(
                    "runtimeConfig.{ANNOTATIONS_CAPABILITY}: expected an object, got {}",
                    describe(other)
                )))
            }
        };
        Ok(RuntimeConfig { mac, ip_families })
    }
}

/// `cni.dev/valid-attachments` (or the older `cni.dev/attachments`). Absent or null is
/// `None`: no list, not an empty one. libcni omits the key when it was given no
/// arguments (cnitool's `gc` does), so its absence says nothing about which
/// attachments live, and GC then releases nothing.
fn parse_attachments(obj: &Map<String, Value>) -> Result<Option<Vec<Attachment>>> {
    let (key, value) = match (
        obj.get("cni.dev/valid-attachments"),
        obj.get("cni.dev/attachments"),
    ) {
        (Some(v), _) => ("cni.dev/valid-attachments", v),
        (None, Some(v)) => ("cni.dev/attachments", v),
        (None, None) => return Ok(None),
    };
    let items = match value {
        Value::Null => return Ok(None),
        Value::Array(items) => items,
        other => {
            return Err(CniError::Decode(format!(
                "{key}: expected an array, got {}",
                describe(other)
            )))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |name: &str| -> Result<String> {
                item.get(name)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        CniError::Decode(format!("{key}[{i}].{name}: missing or not a string"))
                    })
            };
            Attachment::new(&field("containerID")?, &field("ifname")?)
                .map_err(|e| CniError::InvalidConfig(format!("{key}[{i}]: {e}")))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

#[cfg(test)]
#[path = "tests/config.rs"]
mod tests;
