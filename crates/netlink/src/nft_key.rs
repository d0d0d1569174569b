//! The bytes of an nftables set key, as the kernel compares them: what `nft` would
//! write for an element of a set of the same type.
//!
//! A key of one field is that field's bytes. A concatenation (`a . b . c`) gives every
//! field whole 32-bit registers, zero-padded at its end (NFT_REG32_SIZE; nftables'
//! `netlink_padded_len` in include/netlink.h), so an `inet_proto` takes 4 bytes and an
//! `inet_service` its 2 big-endian bytes then 2 zeros.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IFNAMSIZ: an `ifname` field is the name zero-padded to this, as nft stores it.
const IFNAMSIZ: usize = 16;
/// Registers are 32 bits wide; a concatenation's fields each fill whole ones.
const REGISTER_BYTES: usize = 4;

/// One field of a key, named by its nft type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyField<'a> {
    /// `ifname`: 1 to 15 bytes (the kernel's limit for interface names).
    Ifname(&'a str),
    /// `ipv4_addr`.
    Ipv4(Ipv4Addr),
    /// `ipv6_addr`.
    Ipv6(Ipv6Addr),
    /// `inet_proto`: an IP protocol number (6 TCP, 17 UDP, 132 SCTP).
    Proto(u8),
    /// `inet_service`: a transport port.
    Service(u16),
}

impl From<IpAddr> for KeyField<'_> {
    fn from(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => KeyField::Ipv4(v4),
            IpAddr::V6(v6) => KeyField::Ipv6(v6),
        }
    }
}

/// An interface name that cannot be an `ifname` field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("interface name {0:?} cannot key a set element: it must be 1 to 15 bytes")]
pub struct BadInterfaceName(pub String);

/// The key of an element of a set whose type is `fields`' types joined by ` . `.
pub fn set_key(fields: &[KeyField<'_>]) -> Result<Vec<u8>, BadInterfaceName> {
    let concatenated = fields.len() > 1;
    let mut key = Vec::new();
    for field in fields {
        match *field {
            KeyField::Ifname(name) => {
                if name.is_empty() || name.len() >= IFNAMSIZ {
                    return Err(BadInterfaceName(name.to_owned()));
                }
                key.extend_from_slice(name.as_bytes());
                key.resize(key.len() + IFNAMSIZ - name.len(), 0);
            }
            KeyField::Ipv4(v4) => key.extend_from_slice(&v4.octets()),
            KeyField::Ipv6(v6) => key.extend_from_slice(&v6.octets()),
            KeyField::Proto(proto) => key.push(proto),
            KeyField::Service(port) => key.extend_from_slice(&port.to_be_bytes()),
        }
        if concatenated {
            key.resize(key.len().next_multiple_of(REGISTER_BYTES), 0);
        }
    }
    Ok(key)
}

/// The key of an element of an `ifname . ipv4_addr` or `ifname . ipv6_addr` set.
/// `None` for a name the kernel would refuse as an interface name.
pub fn interface_address_key(ifname: &str, address: IpAddr) -> Option<Vec<u8>> {
    set_key(&[KeyField::Ifname(ifname), address.into()]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_address_keys_are_the_padded_name_then_the_address() {
        let v4 = interface_address_key("weft1", IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))).unwrap();
        let mut expected = b"weft1".to_vec();
        expected.extend([0; 11]);
        expected.extend([192, 0, 2, 7]);
        assert_eq!(v4, expected);
        let v6 = interface_address_key("w", IpAddr::V6(Ipv6Addr::LOCALHOST)).unwrap();
        let mut expected = vec![b'w'];
        expected.extend([0; 15]);
        expected.extend([0; 15]);
        expected.push(1);
        assert_eq!(v6, expected);
        assert!(
            interface_address_key("sixteen-bytes-xx", IpAddr::V6(Ipv6Addr::LOCALHOST)).is_none()
        );
        assert!(interface_address_key("", IpAddr::V6(Ipv6Addr::LOCALHOST)).is_none());
    }

    #[test]
    fn a_lone_field_is_its_own_bytes_unpadded() {
        let mut name = b"fifteen-bytes-x".to_vec();
        name.push(0);
        assert_eq!(
            set_key(&[KeyField::Ifname("fifteen-bytes-x")]).unwrap(),
            name
        );
        assert_eq!(set_key(&[KeyField::Service(5432)]).unwrap(), [0x15, 0x38]);
        assert_eq!(set_key(&[KeyField::Proto(17)]).unwrap(), [17]);
    }

    #[test]
    fn two_interface_names_take_sixteen_bytes_each() {
        let key = set_key(&[KeyField::Ifname("weft0a"), KeyField::Ifname("weft0b")]).unwrap();
        let mut expected = b"weft0a".to_vec();
        expected.extend([0; 10]);
        expected.extend(b"weft0b");
        expected.extend([0; 10]);
        assert_eq!(key, expected);
        assert_eq!(
            set_key(&[KeyField::Ifname("weft0a"), KeyField::Ifname("")]),
            Err(BadInterfaceName(String::new()))
        );
    }

    #[test]
    fn address_proto_port_pads_proto_and_port_to_a_register_each() {
        let fields = [
            KeyField::Ipv4(Ipv4Addr::new(198, 51, 100, 4)),
            KeyField::Proto(6),
            KeyField::Service(443),
        ];
        assert_eq!(
            set_key(&fields).unwrap(),
            [198, 51, 100, 4, 6, 0, 0, 0, 0x01, 0xbb, 0, 0]
        );
        let v6: Ipv6Addr = "2001:db8::53".parse().unwrap();
        let key = set_key(&[
            KeyField::Ipv6(v6),
            KeyField::Proto(132),
            KeyField::Service(53),
        ])
        .unwrap();
        let mut expected = v6.octets().to_vec();
        expected.extend([132, 0, 0, 0, 0, 53, 0, 0]);
        assert_eq!(key, expected);
    }
}
