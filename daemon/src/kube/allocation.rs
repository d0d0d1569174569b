//! The node's allocation in Kubernetes mode, and its local copy.
//!
//! weftd keeps the last allocation it was given in its state directory, so a weftd that
//! restarts while the apiserver is unreachable still serves pods from its ranges (they
//! are the node's until the controller releases them, which needs the Node deleted).

use std::path::{Path, PathBuf};
use weft_api::{WeftNetwork, WeftNode};
use weft_wire::{parse_ipv4_subnet, parse_ipv6_prefix, PEER_IPV4_LENGTHS, PEER_IPV6_LENGTHS};

use crate::allocation::NodeAllocation;
use crate::error::{Error, Result};

impl NodeAllocation {
    /// The allocation the objects describe, once it is complete: every family the
    /// network's mode serves has its range. `Err` says what is still missing or wrong.
    pub fn from_objects(network: &WeftNetwork, node: &WeftNode) -> Result<NodeAllocation> {
        let plan = network.spec.plan().map_err(|errors| {
            let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            Error::Allocation(format!("WeftNetwork is invalid: {}", text.join("; ")))
        })?;
        let ipv6_prefix = match (plan.mode.has_ipv6(), &node.spec.ipv6_prefix) {
            (false, _) => None,
            (true, None) => return Err(Error::Allocation("no IPv6 prefix allocated yet".into())),
            (true, Some(text)) => Some(
                parse_ipv6_prefix("WeftNode spec.ipv6Prefix", text, PEER_IPV6_LENGTHS)
                    .map_err(|e| Error::Allocation(e.to_string()))?,
            ),
        };
        let ipv4_subnet = match (plan.mode.has_ipv4(), &node.spec.ipv4_subnet) {
            (false, _) => None,
            (true, None) => return Err(Error::Allocation("no IPv4 subnet allocated yet".into())),
            (true, Some(text)) => Some(
                parse_ipv4_subnet("WeftNode spec.ipv4Subnet", text, PEER_IPV4_LENGTHS)
                    .map_err(|e| Error::Allocation(e.to_string()))?,
            ),
        };
        Ok(NodeAllocation {
            mode: plan.mode,
            ipv6_prefix,
            ipv4_subnet,
            ipv6_routing: plan.ipv6_routing,
            vxlan_vni: plan.vxlan_vni,
            vxlan_port: plan.vxlan_port,
        })
    }
}

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("kubernetes-allocation.json")
}

/// The last allocation written by [`save`], if any, readable and within the ranges
/// weftd accepts from the apiserver. A saved file that fails those checks is set aside
/// (`.invalid`) with a warning: weftd then waits for the apiserver instead of refusing
/// to start on every restart while the apiserver is away.
pub fn load(state_dir: &Path) -> Option<NodeAllocation> {
    let path = path(state_dir);
    let bytes = std::fs::read(&path).ok()?;
    let checked = serde_json::from_slice::<NodeAllocation>(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|allocation| saved_is_valid(&allocation).map(|()| allocation));
    match checked {
        Ok(allocation) => Some(allocation),
        Err(reason) => {
            let aside = path.with_extension("json.invalid");
            let moved = std::fs::rename(&path, &aside);
            tracing::warn!(path = %path.display(), %reason, set_aside = moved.is_ok(),
                "the saved allocation is invalid: ignored, waiting for the apiserver's");
            None
        }
    }
}

/// What [`NodeAllocation::from_objects`] would accept: prefix lengths within the peer
/// limits, a VNI of 24 bits (RFC 7348 section 5), a port other than 0.
fn saved_is_valid(allocation: &NodeAllocation) -> std::result::Result<(), String> {
    if allocation.mode.has_ipv6() != allocation.ipv6_prefix.is_some()
        || allocation.mode.has_ipv4() != allocation.ipv4_subnet.is_some()
    {
        return Err(format!(
            "mode {:?} does not match the ranges saved",
            allocation.mode
        ));
    }
    if let Some(prefix) = allocation.ipv6_prefix {
        if !PEER_IPV6_LENGTHS.contains(&prefix.prefix_len()) {
            return Err(format!(
                "ipv6Prefix {prefix}: length outside {PEER_IPV6_LENGTHS:?}"
            ));
        }
    }
    if let Some(subnet) = allocation.ipv4_subnet {
        if !PEER_IPV4_LENGTHS.contains(&subnet.prefix_len()) {
            return Err(format!(
                "ipv4Subnet {subnet}: length outside {PEER_IPV4_LENGTHS:?}"
            ));
        }
    }
    if allocation.vxlan_vni > 0xff_ffff {
        return Err(format!("vxlanVNI {} exceeds 24 bits", allocation.vxlan_vni));
    }
    if allocation.vxlan_port == 0 {
        return Err("vxlanPort 0".into());
    }
    Ok(())
}

/// Writes the allocation: temp file, then rename (atomic).
pub fn save(state_dir: &Path, allocation: &NodeAllocation) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let tmp = state_dir.join(".kubernetes-allocation.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(allocation)?)?;
    std::fs::rename(tmp, path(state_dir))
}

#[cfg(test)]
#[path = "../tests/saved_allocation.rs"]
mod tests;
