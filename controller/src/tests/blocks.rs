use super::*;

fn net(text: &str) -> IpNet {
    parse_cidr(text).unwrap()
}

fn claim(cidr: &str, node: &str, uid: &str) -> Change {
    Change::Claim {
        net: net(cidr),
        from: "2001:db8::/64".into(),
        node_name: node.into(),
        node_uid: uid.into(),
    }
}

#[test]
fn a_claim_is_added_once_adopted_by_its_node_and_refused_to_others() {
    let mut entries = Vec::new();
    assert_eq!(
        apply(&mut entries, &claim("2001:db8::/80", "a", "u1")),
        Verdict::Ours
    );
    assert_eq!(entries.len(), 1);
    // The same node incarnation again (a write cut short and retried): adopted, not doubled.
    assert_eq!(
        apply(&mut entries, &claim("2001:db8::/80", "a", "u1")),
        Verdict::Ours
    );
    // Another node, or the node re-created under its name: taken.
    assert_eq!(
        apply(&mut entries, &claim("2001:db8::/80", "b", "u2")),
        Verdict::Taken
    );
    assert_eq!(
        apply(&mut entries, &claim("2001:db8::/80", "a", "u9")),
        Verdict::Taken
    );
    // Whatever text form the entry was written in.
    entries[0].cidr = "2001:0db8:0:0:0:0:0:0/80".into();
    assert_eq!(
        apply(&mut entries, &claim("2001:db8::/80", "b", "u2")),
        Verdict::Taken
    );
    assert_eq!(entries.len(), 1);
}

#[test]
fn a_released_claim_stays_taken_until_forgotten_with_its_release_time() {
    let mut entries = Vec::new();
    apply(&mut entries, &claim("10.255.0.0/24", "a", "u1"));
    // A release by another incarnation's UID does nothing.
    let release = |uid: &str| Change::Release {
        net: net("10.255.0.0/24"),
        node_uid: uid.into(),
    };
    apply(&mut entries, &release("u2"));
    assert!(entries[0].released_at.is_none());
    apply(&mut entries, &release("u1"));
    let at = entries[0].released_at.clone().unwrap().0;
    // Released: still taken, even for the same node, during the cooldown.
    assert_eq!(
        apply(&mut entries, &claim("10.255.0.0/24", "a", "u1")),
        Verdict::Taken
    );
    // A forget that saw another release time (released again since) keeps the entry.
    let other = k8s_openapi::jiff::Timestamp::UNIX_EPOCH;
    apply(
        &mut entries,
        &Change::Forget {
            net: net("10.255.0.0/24"),
            released_at: other,
        },
    );
    assert_eq!(entries.len(), 1);
    apply(
        &mut entries,
        &Change::Forget {
            net: net("10.255.0.0/24"),
            released_at: at,
        },
    );
    assert!(entries.is_empty());
    assert_eq!(
        apply(&mut entries, &claim("10.255.0.0/24", "c", "u3")),
        Verdict::Ours
    );
}
