//! The peers file (`weftd --peers FILE`, re-read on change): never a panic, and every
//! peer it accepts satisfies what the route and FDB code relies on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_wire::{parse_peers, vtep_mac, PEER_IPV4_LENGTHS, PEER_IPV6_LENGTHS};

fuzz_target!(|data: &[u8]| {
    let Ok((peers, _errors)) = parse_peers(data) else {
        return;
    };
    for peer in peers {
        assert!(!peer.name.is_empty() && peer.name.trim() == peer.name);
        assert!(peer.underlay_ipv4.is_some() || peer.underlay_ipv6.is_some());
        assert!(peer.ipv6_prefix.is_some() || peer.ipv4_subnet.is_some());
        if let Some(prefix) = peer.ipv6_prefix {
            assert!(PEER_IPV6_LENGTHS.contains(&prefix.prefix_len()));
            assert_eq!(prefix.network(), prefix.addr(), "host bits in {prefix}");
        }
        if let Some(subnet) = peer.ipv4_subnet {
            assert!(PEER_IPV4_LENGTHS.contains(&subnet.prefix_len()));
            assert_eq!(subnet.network(), subnet.addr(), "host bits in {subnet}");
            assert_eq!(peer.overlay_gateway(), Some(subnet.network()));
        }
        if let Some(mac) = peer.vtep_mac {
            assert_eq!(mac[0] & 1, 0, "multicast VTEP MAC {mac:02x?}");
        }
        if let (None, Some(subnet)) = (peer.vtep_mac, peer.ipv4_subnet) {
            unreachable!(
                "a subnet {subnet} without a derived MAC {:?}",
                vtep_mac(subnet)
            );
        }
    }
});
