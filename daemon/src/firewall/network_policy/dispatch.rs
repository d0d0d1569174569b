//! How a policed pod reaches its profile's chain (docs/networkpolicy-design.md §2.2.1):
//! its host veth is an element of the profile's member set, and the direction's
//! dispatch chain holds one rule per profile, `iifname @np-me-<profile> jump
//! np-e-<profile>`. The verdict maps hold only `accept` and `drop`.
//!
//! A `jump` element in a verdict map makes the commit validate every chain reachable
//! from the base chains (`nft_table_validate`, net/netfilter/nf_tables_api.c), under
//! the commit mutex every nftables writer shares: 150 µs to 1.5 ms per ADD as the
//! node's ruleset grows. An element of a plain set costs no validation; the dispatch
//! rules change only when the node's set of profiles does.

use std::collections::{BTreeMap, BTreeSet};

use super::names::{member_set, profile_direction, Direction};
use super::state::Verdict;
use super::{EGRESS_PODS, INGRESS_PODS};

/// The first rule of each dispatch chain: replies and ICMP errors of allowed flows.
pub const ESTABLISHED: &str = "ct state established,related accept";

/// The egress dispatch chain, jumped to from `np-egress` for pods in no verdict map.
pub const EGRESS_PROFILES: &str = "np-egress-profiles";
/// The ingress dispatch chain, jumped to from `np-ingress`.
pub const INGRESS_PROFILES: &str = "np-ingress-profiles";

/// The dispatch chain of `direction`.
pub fn dispatch_chain(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => INGRESS_PROFILES,
        Direction::Egress => EGRESS_PROFILES,
    }
}

/// The verdict map of `direction`.
pub fn verdict_map(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => INGRESS_PODS,
        Direction::Egress => EGRESS_PODS,
    }
}

/// The interface that is the pod's in `direction`: it sends egress, receives ingress.
pub fn pod_side(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => "oifname",
        Direction::Egress => "iifname",
    }
}

/// The dispatch chain's rules for the profile chains `chains` holds: replies and ICMP
/// errors of allowed flows first (only a connection's first packet walks the rest),
/// then one rule per profile of `direction`. A pod is in one member set per direction,
/// so their order does not matter.
pub fn dispatch_rules<'a>(
    chains: impl Iterator<Item = &'a String>,
    direction: Direction,
) -> Vec<String> {
    let side = pod_side(direction);
    std::iter::once(ESTABLISHED.to_owned())
        .chain(
            chains
                .filter(|chain| profile_direction(chain) == Some(direction))
                .map(|chain| format!("{side} @{} jump {chain}", member_set(chain))),
        )
        .collect()
}

/// A verdict map's element: the verdicts that judge a pod without a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapVerdict {
    Accept,
    Drop,
}

impl MapVerdict {
    /// nft's word for it.
    pub fn name(self) -> &'static str {
        match self {
            MapVerdict::Accept => "accept",
            MapVerdict::Drop => "drop",
        }
    }
}

/// One direction's verdicts as the kernel holds them: the verdict map's elements and
/// each profile's member set (host veths).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Placed<'a> {
    pub map: BTreeMap<&'a str, MapVerdict>,
    pub members: BTreeMap<String, BTreeSet<&'a str>>,
}

impl<'a> Placed<'a> {
    /// Where each of `verdicts` (host veth → verdict) goes. `chains` names the profile
    /// chains whose member sets are listed even when empty.
    pub fn of(
        verdicts: &'a BTreeMap<String, Verdict>,
        chains: impl Iterator<Item = &'a String>,
        direction: Direction,
    ) -> Placed<'a> {
        let mut placed = Placed::default();
        for chain in chains.filter(|chain| profile_direction(chain) == Some(direction)) {
            placed.members.insert(member_set(chain), BTreeSet::new());
        }
        for (veth, verdict) in verdicts {
            match verdict {
                Verdict::Profile(chain) => {
                    placed
                        .members
                        .entry(member_set(chain))
                        .or_default()
                        .insert(veth);
                }
                Verdict::Accept => {
                    placed.map.insert(veth, MapVerdict::Accept);
                }
                Verdict::Drop => {
                    placed.map.insert(veth, MapVerdict::Drop);
                }
            }
        }
        placed
    }
}
