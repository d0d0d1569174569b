use super::*;

fn held(cidr: &str) -> Held {
    Held {
        name: cidr.into(),
        cidr: cidr.parse().unwrap(),
        node_name: "a".into(),
        node_uid: "u".into(),
        released_at: None,
        stored: crate::ledger::Stored::Block {
            name: String::new(),
        },
    }
}

#[test]
fn the_node_keeps_the_claim_its_weftnode_names_else_the_lowest() {
    let mine = vec![
        held("2001:db8:0:0:2::/80"),
        held("2001:db8::/80"),
        held("2001:db8:0:0:1::/80"),
    ];
    let (keep, extras) = keeper(mine.clone(), Some("2001:db8:0:0:2::/80".parse().unwrap()));
    assert_eq!(keep.cidr.to_string(), "2001:db8:0:0:2::/80");
    assert_eq!(extras.len(), 2);
    let (keep, extras) = keeper(mine, None);
    assert_eq!(keep.cidr.to_string(), "2001:db8::/80");
    assert_eq!(
        extras
            .iter()
            .map(|h| h.cidr.to_string())
            .collect::<Vec<_>>(),
        ["2001:db8:0:0:1::/80", "2001:db8:0:0:2::/80"]
    );
}

#[test]
fn error_labels_are_the_variant_names() {
    let e = Error::InvalidNetwork {
        name: "default".into(),
        problems: "spec.mode: 'x'".into(),
    };
    assert_eq!(e.label(), "InvalidNetwork");
    assert_eq!(
        e.to_string(),
        "WeftNetwork default is invalid: spec.mode: 'x'"
    );
    assert_eq!(
        Error::RangeExhausted(String::new()).label(),
        "RangeExhausted"
    );
    assert_eq!(Error::Contention(64).label(), "Contention");
}
