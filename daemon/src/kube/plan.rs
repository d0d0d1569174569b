//! Where the `WeftNetwork`'s plan lets node ranges be: a peer whose prefix or subnet
//! lies elsewhere is not a node of this network's plan (a forged or stale WeftNode, a
//! writer other than the controller), and weftd does not route to it.

use ipnet::{Ipv4Net, Ipv6Net};
use weft_api::WeftNetwork;
use weft_wire::Peer;

/// The plan's ranges, as node ranges must fit them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRanges {
    /// Each IPv6 range and the length of the prefixes cut from it.
    ipv6: Vec<(Ipv6Net, u8)>,
    /// The IPv4 network and the length of the subnets cut from it.
    ipv4: (Ipv4Net, u8),
}

impl PlanRanges {
    /// The ranges of `network`'s plan; `Err` says why the spec has none.
    pub fn of(network: &WeftNetwork) -> Result<PlanRanges, String> {
        let plan = network.spec.plan().map_err(|errors| {
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            text.join("; ")
        })?;
        Ok(PlanRanges {
            ipv6: plan
                .ipv6_ranges
                .iter()
                .map(|r| (r.range, r.prefix_length))
                .collect(),
            ipv4: (plan.ipv4_network, plan.ipv4_subnet_length),
        })
    }

    /// Why `peer`'s ranges lie outside the plan, if they do: each must be a prefix or
    /// subnet of the planned length inside a planned range.
    pub fn outside(&self, peer: &Peer) -> Option<String> {
        if let Some(prefix) = peer.ipv6_prefix {
            let fits = self
                .ipv6
                .iter()
                .any(|(range, length)| prefix.prefix_len() == *length && range.contains(&prefix));
            if !fits {
                let planned: Vec<String> = self
                    .ipv6
                    .iter()
                    .map(|(r, l)| format!("/{l} in {r}"))
                    .collect();
                return Some(format!(
                    "ipv6Prefix {prefix} is not one of the plan's prefixes ({})",
                    planned.join(", ")
                ));
            }
        }
        if let Some(subnet) = peer.ipv4_subnet {
            let (network, length) = self.ipv4;
            if subnet.prefix_len() != length || !network.contains(&subnet) {
                return Some(format!(
                    "ipv4Subnet {subnet} is not one of the plan's subnets (/{length} in {network})"
                ));
            }
        }
        None
    }
}

#[cfg(test)]
#[path = "../tests/kube_plan.rs"]
mod tests;
