//! Address, prefix, MAC and attachment parsing, used on flags, the peers file, CNI
//! input and the store's file names. Never a panic; what is accepted prints back to
//! an equal value and respects the bounds asked for.
#![no_main]

use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use std::ops::RangeInclusive;
use weft_wire::{
    parse_bind_addr, parse_ip, parse_ipv4_subnet, parse_ipv6_prefix, parse_mac, AddrError,
    Attachment,
};

/// An accepted prefix has a length in `lengths`, no host bits, and prints back to itself.
fn check_prefix<N>(
    parse: impl Fn(&str, RangeInclusive<u8>) -> Result<N, AddrError>,
    text: &str,
    lengths: [RangeInclusive<u8>; 2],
) where
    N: Into<IpNet> + Copy + PartialEq + std::fmt::Debug + std::fmt::Display,
{
    for allowed in lengths {
        if let Ok(parsed) = parse(text, allowed.clone()) {
            let net: IpNet = parsed.into();
            assert!(allowed.contains(&net.prefix_len()));
            assert_eq!(net.network(), net.addr());
            assert_eq!(parse(&parsed.to_string(), allowed), Ok(parsed));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ip) = parse_ip("f", text) {
        assert_eq!(parse_ip("f", &ip.to_string()), Ok(ip));
    }
    check_prefix(
        |t, l| parse_ipv6_prefix("f", t, l),
        text,
        [64..=120, 0..=128],
    );
    check_prefix(|t, l| parse_ipv4_subnet("f", t, l), text, [16..=28, 0..=32]);
    // Only the forms that resolve nothing: a host name would send DNS queries.
    let literal = text.trim_start().starts_with(['[', ':'])
        || text
            .trim()
            .rsplit_once(':')
            .is_some_and(|(host, _)| host.parse::<std::net::IpAddr>().is_ok());
    if literal {
        if let Ok(addrs) = parse_bind_addr("f", text) {
            assert_eq!(addrs.len(), 1);
        }
    }
    if let Ok(mac) = parse_mac(text) {
        assert!(mac[0] & 1 == 0 && mac != [0; 6]);
        let canonical: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            text.to_ascii_lowercase().replace('-', ":"),
            canonical.join(":"),
            "parse_mac accepted a text that is not six hex bytes"
        );
    }
    if let Some((id, ifname)) = text.split_once('\n') {
        if let Ok(attachment) = Attachment::new(id, ifname) {
            assert_eq!(
                Attachment::from_key(&attachment.key()),
                Some(attachment.clone())
            );
            let json = serde_json::to_string(&attachment).expect("encodes");
            assert_eq!(
                serde_json::from_str::<Attachment>(&json).ok(),
                Some(attachment)
            );
        }
    } else if let Some(attachment) = Attachment::from_key(text) {
        assert_eq!(attachment.key(), text);
    }
});
