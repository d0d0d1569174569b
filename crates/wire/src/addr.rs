//! Address parsing for every input that holds an address: flags, config files, the wire.
//!
//! Seed 001 asks that every IPv6 text form be accepted: full (`2001:0db8:0000::0001`),
//! zero-compressed (`2001:db8::1`), leading zeros omitted, upper or lower case, embedded
//! IPv4 (`::ffff:192.0.2.1`), bracketed (`[2001:db8::1]`), `[addr]:port` and `%zone` where a
//! zone makes sense. Errors name the field and the value so an operator can fix the input.

use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6, ToSocketAddrs};
use std::ops::RangeInclusive;

/// A bad address input, naming the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: '{value}' {problem}")]
pub struct AddrError {
    /// The flag or field that held the value, e.g. `--ipv6-prefix`.
    pub field: String,
    /// The value as given.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

fn err(field: &str, value: &str, problem: impl Into<String>) -> AddrError {
    AddrError {
        field: field.to_owned(),
        value: value.to_owned(),
        problem: problem.into(),
    }
}

fn unbracket(text: &str) -> &str {
    text.strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text)
}

/// Parses one IP address of either family, in any text form, optionally in brackets.
pub fn parse_ip(field: &str, text: &str) -> Result<IpAddr, AddrError> {
    let trimmed = unbracket(text.trim());
    if trimmed.contains('%') {
        return Err(err(
            field,
            text,
            "has a zone index, which this field does not take",
        ));
    }
    trimmed
        .parse::<IpAddr>()
        .map_err(|_| err(field, text, "is not an IPv4 or IPv6 address"))
}

fn parse_net_parts<'a>(field: &str, text: &'a str) -> Result<(&'a str, u8), AddrError> {
    let (addr, len) = text.trim().split_once('/').ok_or_else(|| {
        err(
            field,
            text,
            "has no prefix length (expected ADDRESS/LENGTH)",
        )
    })?;
    let len = len.parse::<u8>().map_err(|_| {
        err(
            field,
            text,
            format!("has prefix length '{len}', which is not a number"),
        )
    })?;
    Ok((unbracket(addr), len))
}

fn check_len(
    field: &str,
    text: &str,
    len: u8,
    allowed: &RangeInclusive<u8>,
) -> Result<(), AddrError> {
    if allowed.contains(&len) {
        Ok(())
    } else {
        Err(err(
            field,
            text,
            format!(
                "has prefix length /{len}; allowed are /{} to /{}",
                allowed.start(),
                allowed.end()
            ),
        ))
    }
}

/// Parses an IPv6 prefix such as `2001:db8:1000:1::/80` (any text form of the address),
/// with its length in `allowed`. Host bits must be zero: a typo there would silently move
/// the node into somebody else's range.
pub fn parse_ipv6_prefix(
    field: &str,
    text: &str,
    allowed: RangeInclusive<u8>,
) -> Result<Ipv6Net, AddrError> {
    let (addr, len) = parse_net_parts(field, text)?;
    let addr: Ipv6Addr = addr
        .parse()
        .map_err(|_| err(field, text, "is not an IPv6 prefix"))?;
    check_len(field, text, len, &allowed)?;
    let net =
        Ipv6Net::new(addr, len).map_err(|_| err(field, text, "has an impossible prefix length"))?;
    if net.network() != addr {
        return Err(err(
            field,
            text,
            format!("has host bits set; the prefix is {}", net.trunc()),
        ));
    }
    Ok(net)
}

/// Parses an IPv4 subnet such as `10.255.1.0/24` with its length in `allowed`.
pub fn parse_ipv4_subnet(
    field: &str,
    text: &str,
    allowed: RangeInclusive<u8>,
) -> Result<Ipv4Net, AddrError> {
    let (addr, len) = parse_net_parts(field, text)?;
    let addr: std::net::Ipv4Addr = addr
        .parse()
        .map_err(|_| err(field, text, "is not an IPv4 subnet"))?;
    check_len(field, text, len, &allowed)?;
    let net =
        Ipv4Net::new(addr, len).map_err(|_| err(field, text, "has an impossible prefix length"))?;
    if net.network() != addr {
        return Err(err(
            field,
            text,
            format!("has host bits set; the subnet is {}", net.trunc()),
        ));
    }
    Ok(net)
}

/// Resolves a listen address: `[::]:9641`, `0.0.0.0:9641`, `[2001:db8::1]:9641`,
/// `[fe80::1%eth0]:9641`, `localhost:9641` (resolved with getaddrinfo for both families,
/// seed 002) or `:9641` (every address of both families). An unbracketed IPv6 address
/// with a port is refused: `2001:db8::1:9641` cannot be split unambiguously.
pub fn parse_bind_addr(field: &str, text: &str) -> Result<Vec<SocketAddr>, AddrError> {
    let text = text.trim();
    if let Some(port) = text.strip_prefix(':') {
        let port = parse_port(field, text, port)?;
        return Ok(vec![SocketAddr::new(
            IpAddr::from(Ipv6Addr::UNSPECIFIED),
            port,
        )]);
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, port) = rest
            .split_once("]:")
            .ok_or_else(|| err(field, text, "needs the form [IPV6]:PORT"))?;
        let port = parse_port(field, text, port)?;
        let (addr, zone) = match inside.split_once('%') {
            Some((a, z)) => (a, Some(z)),
            None => (inside, None),
        };
        let ip: Ipv6Addr = addr
            .parse()
            .map_err(|_| err(field, text, "has no valid IPv6 address in its brackets"))?;
        let scope = match zone {
            None => 0,
            Some(z) => zone_index(z).ok_or_else(|| {
                err(
                    field,
                    text,
                    format!("names zone '{z}', which is no interface here"),
                )
            })?,
        };
        return Ok(vec![SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope))]);
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| err(field, text, "needs a port (HOST:PORT or [IPV6]:PORT)"))?;
    if host.contains(':') {
        return Err(err(
            field,
            text,
            "is an IPv6 address with a port; write it as [IPV6]:PORT",
        ));
    }
    let port = parse_port(field, text, port)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let resolved: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| err(field, text, format!("does not resolve: {e}")))?
        .collect();
    if resolved.is_empty() {
        return Err(err(field, text, "resolves to no address"));
    }
    Ok(resolved)
}

fn parse_port(field: &str, text: &str, port: &str) -> Result<u16, AddrError> {
    port.parse::<u16>().map_err(|_| {
        err(
            field,
            text,
            format!("has port '{port}', which is not 0-65535"),
        )
    })
}

/// A zone is an interface index or an interface name (RFC 4007 section 11).
fn zone_index(zone: &str) -> Option<u32> {
    if let Ok(index) = zone.parse::<u32>() {
        return Some(index);
    }
    if zone.is_empty() || zone.contains('/') || zone.contains("..") {
        return None;
    }
    std::fs::read_to_string(format!("/sys/class/net/{zone}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V6: RangeInclusive<u8> = 64..=120;

    #[test]
    fn every_ipv6_text_form_of_one_prefix_is_the_same_prefix() {
        let forms = [
            "2001:db8:1000:1::/80",
            "2001:0db8:1000:0001:0000:0000:0000:0000/80",
            "2001:DB8:1000:1:0:0:0:0/80",
            "[2001:db8:1000:1::]/80",
            " 2001:db8:1000:1:: /80",
        ];
        let expected = parse_ipv6_prefix("--ipv6-prefix", forms[0], V6).unwrap();
        for form in forms {
            let form = form.replace(" /", "/");
            assert_eq!(
                parse_ipv6_prefix("--ipv6-prefix", &form, V6).unwrap(),
                expected,
                "{form}"
            );
        }
    }

    #[test]
    fn prefix_errors_name_the_field_and_value() {
        let e = parse_ipv6_prefix("--ipv6-prefix", "2001:db8::/48", V6).unwrap_err();
        assert_eq!(e.field, "--ipv6-prefix");
        assert!(
            e.to_string().contains("'2001:db8::/48'") && e.to_string().contains("/64 to /120"),
            "{e}"
        );
        let e = parse_ipv6_prefix("--ipv6-prefix", "2001:db8::5/80", V6).unwrap_err();
        assert!(
            e.to_string().contains("host bits") && e.to_string().contains("2001:db8::/80"),
            "{e}"
        );
        assert!(parse_ipv6_prefix("--ipv6-prefix", "2001:db8::", V6).is_err());
        assert!(parse_ipv6_prefix("--ipv6-prefix", "10.0.0.0/80", V6).is_err());
        assert!(parse_ipv6_prefix("--ipv6-prefix", "2001:db8::/x", V6).is_err());
        assert!(parse_ipv6_prefix("--ipv6-prefix", "2001:db8:::/80", V6).is_err());
    }

    #[test]
    fn ipv4_subnets_check_length_and_host_bits() {
        let net = parse_ipv4_subnet("--ipv4-subnet", "10.255.1.0/24", 16..=28).unwrap();
        assert_eq!(net.to_string(), "10.255.1.0/24");
        assert!(parse_ipv4_subnet("--ipv4-subnet", "10.255.1.0/29", 16..=28).is_err());
        assert!(parse_ipv4_subnet("--ipv4-subnet", "10.255.1.1/24", 16..=28)
            .unwrap_err()
            .to_string()
            .contains("10.255.1.0/24"));
        assert!(parse_ipv4_subnet("--ipv4-subnet", "2001:db8::/24", 16..=28).is_err());
    }

    #[test]
    fn single_addresses_accept_all_forms() {
        for form in [
            "2001:db8::1",
            "2001:0DB8:0:0:0:0:0:1",
            "[2001:db8::1]",
            "::ffff:192.0.2.1",
            "192.0.2.1",
        ] {
            assert!(parse_ip("underlayIPv6", form).is_ok(), "{form}");
        }
        assert_eq!(
            parse_ip("x", "2001:0db8::0001").unwrap(),
            parse_ip("x", "2001:db8::1").unwrap()
        );
        assert!(parse_ip("x", "fe80::1%eth0")
            .unwrap_err()
            .to_string()
            .contains("zone"));
        assert!(parse_ip("x", "2001:db8::g").is_err());
    }

    #[test]
    fn bind_addresses_take_brackets_ports_zones_and_names() {
        assert_eq!(
            parse_bind_addr("--metrics-addr", "[::]:9641").unwrap(),
            vec!["[::]:9641".parse().unwrap()]
        );
        assert_eq!(
            parse_bind_addr("--metrics-addr", "0.0.0.0:9641").unwrap(),
            vec!["0.0.0.0:9641".parse().unwrap()]
        );
        assert_eq!(
            parse_bind_addr("--metrics-addr", ":9641").unwrap(),
            vec!["[::]:9641".parse().unwrap()]
        );
        assert_eq!(
            parse_bind_addr("m", "[2001:0db8::0001]:80").unwrap(),
            vec!["[2001:db8::1]:80".parse().unwrap()]
        );
        match parse_bind_addr("m", "[fe80::1%lo]:80").unwrap()[0] {
            SocketAddr::V6(v6) => assert_ne!(v6.scope_id(), 0),
            other => panic!("{other}"),
        }
        assert!(parse_bind_addr("m", "[fe80::1%7]:80").is_ok());
        assert!(parse_bind_addr("m", "[fe80::1%nosuchif0]:80").is_err());
        let e = parse_bind_addr("--metrics-addr", "2001:db8::1:9641").unwrap_err();
        assert!(e.to_string().contains("[IPV6]:PORT"), "{e}");
        assert!(parse_bind_addr("m", "[::]:99999").is_err());
        assert!(parse_bind_addr("m", "[::]").is_err());
        assert!(!parse_bind_addr("m", "localhost:9641").unwrap().is_empty());
    }
}
