use super::*;
use weft_wire::{Attachment, PodRef};

#[test]
fn service_family_names_alone_or_joined_are_kept_in_order() {
    let kept = |text: &str| KeptFamilies::parse(text).unwrap().families().to_vec();
    assert_eq!(kept("IPv6"), [Family::Ipv6]);
    assert_eq!(kept("IPv4"), [Family::Ipv4]);
    assert_eq!(kept("IPv6,IPv4"), [Family::Ipv6, Family::Ipv4]);
    assert_eq!(kept(" IPv4 , IPv6 "), [Family::Ipv4, Family::Ipv6]);
    let v4 = KeptFamilies::parse("IPv4").unwrap();
    assert!(v4.turns_off(Family::Ipv6) && !v4.turns_off(Family::Ipv4));
    assert!(!KeptFamilies::parse("IPv6,IPv4")
        .unwrap()
        .turns_off(Family::Ipv6));
}

#[test]
fn any_other_value_is_code_7_naming_the_annotation_and_the_value() {
    let cases = [
        ("IPv5", "'IPv5' is neither IPv6 nor IPv4"),
        ("ipv6", "'ipv6' is neither IPv6 nor IPv4"),
        ("v6", "'v6' is neither"),
        ("IPv6,IPv5", "'IPv5' is neither"),
        ("IPv6;IPv4", "'IPv6;IPv4' is neither"),
        ("", "has an empty entry"),
        ("IPv6,", "has an empty entry"),
        ("IPv6,IPv6", "names IPv6 twice"),
        ("dual", "'dual' is neither"),
    ];
    for (text, problem) in cases {
        let e = KeptFamilies::parse(text).unwrap_err();
        assert_eq!(e.code(), 7, "{text}: {e}");
        let named = format!("pod annotation weft.dev/ip-families: '{text}' ");
        let message = e.to_string();
        assert!(
            message.starts_with(&named) && message.contains(problem),
            "{text}: {message}"
        );
    }
}

#[test]
fn long_or_odd_values_are_quoted_escaped_and_cut() {
    let e = KeptFamilies::parse(&"x".repeat(500))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("'{}...'", "x".repeat(64))), "{e}");
    assert!(e.len() < 400, "{e}");
    let e = KeptFamilies::parse("IPv6\n").unwrap();
    assert_eq!(
        e.families(),
        [Family::Ipv6],
        "blanks around a name are trimmed"
    );
    let e = KeptFamilies::parse("IPv6\u{1b}[2J")
        .unwrap_err()
        .to_string();
    assert!(e.contains(r"'IPv6\u{1b}[2J'"), "{e}");
}

#[test]
fn weftds_refusal_of_a_family_is_named_after_the_annotation() {
    let kept = KeptFamilies::parse("IPv4").unwrap();
    let e = kept.refused(CniError::InvalidConfig(
        "ipv4 is not served on this node, which serves ipv6 only".into(),
    ));
    assert_eq!(e.code(), 7);
    assert_eq!(
        e.to_string(),
        "pod annotation weft.dev/ip-families: 'IPv4' keeps a family this node cannot give: ipv4 is not served on this node, which serves ipv6 only"
    );
    let other = kept.refused(CniError::Exhausted("no address".into()));
    assert_eq!(other.code(), 100);
    assert_eq!(other.to_string(), "no address");
}

fn allocation(ipv6: bool, ipv4: bool) -> Allocation {
    Allocation {
        attachment: Attachment::new("c1", "eth0").unwrap(),
        ipv6: ipv6.then(|| "2001:db8::5".parse().unwrap()),
        ipv4: ipv4.then(|| "10.255.1.5".parse().unwrap()),
        pod: PodRef::default(),
        network: None,
        allocated_at_ms: 0,
    }
}

#[test]
fn an_allocation_must_hold_exactly_the_kept_families() {
    let v6 = KeptFamilies::parse("IPv6").unwrap();
    v6.check(&allocation(true, false)).unwrap();
    // A weftd that ignores the request's families gives both: never silently kept.
    let e = v6.check(&allocation(true, true)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("weftd allocated an ipv4 address for a pod whose annotation weft.dev/ip-families is 'IPv6'"),
        "{e}"
    );
    let e = v6.check(&allocation(false, true)).unwrap_err();
    assert!(e.to_string().contains("did not allocate an ipv6"), "{e}");
    let both = KeptFamilies::parse("IPv4,IPv6").unwrap();
    both.check(&allocation(true, true)).unwrap();
    assert!(both.check(&allocation(true, false)).is_err());
}
