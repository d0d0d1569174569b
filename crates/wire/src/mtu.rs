//! MTU arithmetic, one header at a time (seed 003: the IPv6 header is 20 bytes larger
//! than IPv4's and every tunnel costs its own header).
//!
//! weft's IPv4 overlay is VXLAN (RFC 7348). A VXLAN packet wraps the pod's whole
//! Ethernet frame, so the bytes it adds on the underlay are:
//!
//! | header              | IPv4 underlay | IPv6 underlay |
//! |---------------------|---------------|---------------|
//! | outer IP            | 20            | 40            |
//! | outer UDP           | 8             | 8             |
//! | VXLAN               | 8             | 8             |
//! | inner Ethernet      | 14            | 14            |
//! | **total**           | **50**        | **70**        |
//!
//! IPv6 pod traffic is routed natively (no encapsulation), so it keeps the full uplink
//! MTU. The pod's link carries the larger of the two; the IPv4 routes carry the smaller
//! one as a route MTU, so TCP's MSS and PMTU start right for each family.

use crate::Mode;
use serde::{Deserialize, Serialize};

/// Bytes VXLAN adds over an IPv4 underlay: IPv4 20 + UDP 8 + VXLAN 8 + Ethernet 14.
pub const VXLAN_OVER_IPV4: u32 = 20 + 8 + 8 + 14;
/// Bytes VXLAN adds over an IPv6 underlay: IPv6 40 + UDP 8 + VXLAN 8 + Ethernet 14.
pub const VXLAN_OVER_IPV6: u32 = 40 + 8 + 8 + 14;

/// The overlay's VXLAN network identifier unless configured.
pub const DEFAULT_VXLAN_VNI: u32 = 1;
/// The overlay's VXLAN UDP port unless configured: IANA's (RFC 7348 section 5).
pub const DEFAULT_VXLAN_PORT: u16 = 4789;

/// The smallest MTU IPv6 allows on any link (RFC 8200 section 5).
const IPV6_MIN_MTU: u32 = 1280;
/// The smallest MTU every IPv4 host must accept (RFC 791).
const IPV4_MIN_MTU: u32 = 576;

/// Which family the VXLAN overlay's outer packets use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnderlayFamily {
    /// Outer packets are IPv4.
    Ipv4,
    /// Outer packets are IPv6.
    Ipv6,
}

/// The MTUs a pod gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMtus {
    /// MTU of the pod's interface (and its host-side peer).
    pub link: u32,
    /// MTU of the IPv6 routes, when IPv6 is served.
    pub ipv6: Option<u32>,
    /// MTU of the IPv4 routes, when IPv4 is served.
    pub ipv4: Option<u32>,
}

/// Computes the pod MTUs from the uplink MTU, the underlay family and the mode.
/// Returns an error naming the numbers when a family would fall below its minimum.
pub fn pod_mtus(uplink_mtu: u32, underlay: UnderlayFamily, mode: Mode) -> Result<PodMtus, String> {
    let overhead = match underlay {
        UnderlayFamily::Ipv4 => VXLAN_OVER_IPV4,
        UnderlayFamily::Ipv6 => VXLAN_OVER_IPV6,
    };
    let ipv6 = mode.has_ipv6().then_some(uplink_mtu);
    let ipv4 = match mode.has_ipv4() {
        true => Some(uplink_mtu.saturating_sub(overhead)),
        false => None,
    };
    if let Some(m) = ipv6.filter(|m| *m < IPV6_MIN_MTU) {
        return Err(format!(
            "uplink MTU {m} is below IPv6's minimum of {IPV6_MIN_MTU}"
        ));
    }
    if let Some(m) = ipv4.filter(|m| *m < IPV4_MIN_MTU) {
        return Err(format!(
            "uplink MTU {uplink_mtu} minus {overhead} bytes of VXLAN leaves {m}, below IPv4's minimum of {IPV4_MIN_MTU}"
        ));
    }
    let link = ipv6.into_iter().chain(ipv4).max().unwrap_or(uplink_mtu);
    Ok(PodMtus { link, ipv6, ipv4 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overheads_are_the_sum_of_their_headers() {
        assert_eq!(VXLAN_OVER_IPV4, 50);
        assert_eq!(VXLAN_OVER_IPV6, 70);
    }

    #[test]
    fn dual_stack_keeps_full_mtu_for_ipv6_and_subtracts_vxlan_for_ipv4() {
        let m = pod_mtus(1500, UnderlayFamily::Ipv4, Mode::Dual).unwrap();
        assert_eq!(
            m,
            PodMtus {
                link: 1500,
                ipv6: Some(1500),
                ipv4: Some(1450)
            }
        );
        let m = pod_mtus(9000, UnderlayFamily::Ipv6, Mode::Dual).unwrap();
        assert_eq!(
            m,
            PodMtus {
                link: 9000,
                ipv6: Some(9000),
                ipv4: Some(8930)
            }
        );
    }

    #[test]
    fn single_family_modes_size_the_link_for_that_family() {
        let m = pod_mtus(1500, UnderlayFamily::Ipv6, Mode::Ipv4).unwrap();
        assert_eq!(
            m,
            PodMtus {
                link: 1430,
                ipv6: None,
                ipv4: Some(1430)
            }
        );
        let m = pod_mtus(1500, UnderlayFamily::Ipv4, Mode::Ipv6).unwrap();
        assert_eq!(
            m,
            PodMtus {
                link: 1500,
                ipv6: Some(1500),
                ipv4: None
            }
        );
    }

    #[test]
    fn too_small_uplinks_are_refused_with_the_numbers() {
        let e = pod_mtus(1279, UnderlayFamily::Ipv4, Mode::Ipv6).unwrap_err();
        assert!(e.contains("1279"), "{e}");
        let e = pod_mtus(600, UnderlayFamily::Ipv6, Mode::Ipv4).unwrap_err();
        assert!(e.contains("600") && e.contains("70"), "{e}");
        let e = pod_mtus(40, UnderlayFamily::Ipv6, Mode::Ipv4).unwrap_err();
        assert!(e.contains("leaves 0"), "{e}");
    }
}
