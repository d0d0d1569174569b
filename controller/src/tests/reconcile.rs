use super::*;

fn held(cidr: &str) -> Held {
    Held {
        name: cidr.into(),
        cidr: cidr.parse().unwrap(),
        node_name: "a".into(),
        node_uid: "u".into(),
        released_at: None,
        block: String::new(),
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
