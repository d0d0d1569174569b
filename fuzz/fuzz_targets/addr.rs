//! Address, prefix, MAC and attachment parsing, used on flags, the peers file, CNI
//! input and the store's file names. Never a panic; what is accepted prints back to
//! an equal value and respects the bounds asked for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_wire::{
    parse_bind_addr, parse_ip, parse_ipv4_subnet, parse_ipv6_prefix, parse_mac, Attachment,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ip) = parse_ip("f", text) {
        assert_eq!(parse_ip("f", &ip.to_string()), Ok(ip));
    }
    for lengths in [64..=120, 0..=128] {
        if let Ok(prefix) = parse_ipv6_prefix("f", text, lengths.clone()) {
            assert!(lengths.contains(&prefix.prefix_len()));
            assert_eq!(prefix.network(), prefix.addr());
            assert_eq!(
                parse_ipv6_prefix("f", &prefix.to_string(), lengths),
                Ok(prefix)
            );
        }
    }
    for lengths in [16..=28, 0..=32] {
        if let Ok(subnet) = parse_ipv4_subnet("f", text, lengths.clone()) {
            assert!(lengths.contains(&subnet.prefix_len()));
            assert_eq!(subnet.network(), subnet.addr());
            assert_eq!(
                parse_ipv4_subnet("f", &subnet.to_string(), lengths),
                Ok(subnet)
            );
        }
    }
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
