//! The pod annotation `weft.dev/ip-families`: a pod that keeps one address family only
//! (docs/networkpolicy-design.md section 5). The runtime hands the plugin the pod's
//! annotations in `runtimeConfig` when the conflist declares the capability
//! `io.kubernetes.cri.pod-annotations` (containerd and CRI-O do).
//!
//! The values are those of a Service's `ipFamilies`, written exactly so: `IPv6`, `IPv4`,
//! or both joined by a comma. Anything else fails ADD with code 7 naming the annotation
//! and the value: a typo must never start the pod on the family it meant to turn off.
//! The family kept is the only one weftd allocates and the plugin configures, so the
//! result, and with it kubelet's `status.podIPs`, lists one address.

use crate::error::{CniError, Result};
use weft_wire::{Allocation, Family};

/// The capability under which runtimes pass a pod's annotations (a string map).
pub const ANNOTATIONS_CAPABILITY: &str = "io.kubernetes.cri.pod-annotations";
/// The annotation naming the families a pod keeps.
pub const ANNOTATION: &str = "weft.dev/ip-families";

/// How much of a value a message quotes: annotations may be long, messages should not.
const SHOWN_CHARS: usize = 64;

/// The families a pod's annotation keeps, with the value it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptFamilies {
    text: String,
    families: Vec<Family>,
}

/// One family by its Service `ipFamilies` name.
fn family_named(name: &str) -> Option<Family> {
    match name {
        "IPv6" => Some(Family::Ipv6),
        "IPv4" => Some(Family::Ipv4),
        _ => None,
    }
}

/// `text` escaped and cut to [`SHOWN_CHARS`], for messages.
fn shown(text: &str) -> String {
    let escaped: String = text.escape_debug().collect();
    match escaped.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}...", &escaped[..cut]),
        None => escaped,
    }
}

impl KeptFamilies {
    /// Reads the annotation's value: comma-separated family names, blanks around each
    /// ignored, each at most once.
    pub fn parse(text: &str) -> Result<KeptFamilies> {
        let refuse = |problem: String| {
            CniError::InvalidConfig(format!(
                "pod annotation {ANNOTATION}: '{}' {problem}",
                shown(text)
            ))
        };
        let mut families = Vec::new();
        for name in text.split(',').map(str::trim) {
            let family = family_named(name).ok_or_else(|| match name {
                "" => refuse("has an empty entry: name IPv6, IPv4 or both, as in IPv6,IPv4".into()),
                _ => refuse(format!(
                    "is not a family list: '{}' is neither IPv6 nor IPv4 (written exactly so, as in a Service's ipFamilies)",
                    shown(name)
                )),
            })?;
            if families.contains(&family) {
                return Err(refuse(format!("names {name} twice")));
            }
            families.push(family);
        }
        Ok(KeptFamilies {
            text: text.to_owned(),
            families,
        })
    }

    /// The families kept, as the Allocate request carries them.
    pub fn families(&self) -> &[Family] {
        &self.families
    }

    /// Whether the pod turns `family` off.
    pub fn turns_off(&self, family: Family) -> bool {
        !self.families.contains(&family)
    }

    /// weftd's refusal of the families (one the node does not serve, code 7), named
    /// after the annotation; other failures pass unchanged.
    pub fn refused(&self, error: CniError) -> CniError {
        match error {
            CniError::InvalidConfig(why) => CniError::InvalidConfig(format!(
                "pod annotation {ANNOTATION}: '{}' keeps a family this node cannot give: {why}",
                shown(&self.text)
            )),
            other => other,
        }
    }

    /// Whether weftd allocated exactly the kept families: a weftd that predates the
    /// annotation ignores the request's `ipFamilies` and allocates every family.
    pub fn check(&self, allocation: &Allocation) -> Result<()> {
        let held = [
            (Family::Ipv6, allocation.ipv6.is_some()),
            (Family::Ipv4, allocation.ipv4.is_some()),
        ];
        match held
            .into_iter()
            .find(|(family, has)| *has != self.families.contains(family))
        {
            None => Ok(()),
            Some((family, has)) => Err(CniError::DaemonUnavailable(format!(
                "weftd {} an {family} address for a pod whose annotation {ANNOTATION} is '{}': this weftd does not know the annotation; upgrade weftd",
                if has { "allocated" } else { "did not allocate" },
                shown(&self.text)
            ))),
        }
    }
}

#[cfg(test)]
#[path = "tests/families.rs"]
mod tests;
