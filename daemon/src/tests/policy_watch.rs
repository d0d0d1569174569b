use super::*;
use weft_api::{PolicySource, WeftPolicyIndexSpec, WeftPolicySpec};

fn policy(name: &str, version: &str) -> WeftPolicy {
    let mut p = WeftPolicy::new(
        name,
        WeftPolicySpec {
            source: PolicySource {
                namespace: "x".into(),
                name: name.into(),
                uid: "u".into(),
                generation: 1,
            },
            ingress: Some(vec![]),
            egress: None,
        },
    );
    p.metadata.resource_version = Some(version.into());
    p
}

#[test]
fn a_listing_is_applied_whole_at_its_end_and_drops_what_it_no_longer_lists() {
    let mut inputs = PolicyInputs::default();
    let mut listings = Listings::default();
    let now = Instant::now();
    let node = Source::Policies(SpanWatch::Node);
    let event = |e| Seen::Policy(e);
    assert!(listings.apply(
        &mut inputs,
        node,
        event(Event::Apply(policy("x.a", "5"))),
        now
    ));
    assert!(!listings.apply(&mut inputs, node, event(Event::Init), now));
    assert!(!listings.apply(
        &mut inputs,
        node,
        event(Event::InitApply(policy("x.b", "7"))),
        now
    ));
    assert!(
        inputs.policy("x.b").is_none(),
        "nothing applied mid-listing"
    );
    assert!(listings.apply(&mut inputs, node, event(Event::InitDone), now));
    assert!(inputs.policy("x.b").is_some());
    assert!(inputs.policy("x.a").is_some(), "leaving, within its grace");
    inputs.expire(now + crate::policy::spanned::LEAVING_GRACE);
    assert!(inputs.policy("x.a").is_none());
    assert_eq!(
        newest_version(&event(Event::Apply(policy("x.c", "9")))).as_deref(),
        Some("9")
    );
}

#[test]
fn a_single_object_listing_that_ends_without_it_means_it_is_gone() {
    let mut inputs = PolicyInputs::default();
    let mut listings = Listings::default();
    let now = Instant::now();
    let index = WeftPolicyIndex::new(POLICY_INDEX_NAME, WeftPolicyIndexSpec::default());
    let seen = |e| Seen::Index(e);
    listings.apply(&mut inputs, Source::Index, seen(Event::Apply(index)), now);
    assert_eq!(
        inputs.admission("x", "u"),
        crate::policy::inputs::Admission::Unpoliced
    );
    listings.apply(&mut inputs, Source::Index, seen(Event::Init), now);
    assert!(listings.apply(&mut inputs, Source::Index, seen(Event::InitDone), now));
    assert_eq!(
        inputs.admission("x", "u"),
        crate::policy::inputs::Admission::Unknown
    );
}
