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
    use crate::policy::inputs::Admission;
    let mut inputs = PolicyInputs::default();
    let mut listings = Listings::default();
    let now = Instant::now();
    let mut policed = WeftPolicyIndexSpec::default();
    policed.namespaces.push(weft_api::PolicedNamespace {
        name: "x".into(),
        ingress: true,
        egress: false,
    });
    let index = WeftPolicyIndex::new(POLICY_INDEX_NAME, policed);
    let seen = |e| Seen::Index(e);
    listings.apply(&mut inputs, Source::Index, seen(Event::Init), now);
    listings.apply(
        &mut inputs,
        Source::Index,
        seen(Event::InitApply(index)),
        now,
    );
    assert!(listings.apply(&mut inputs, Source::Index, seen(Event::InitDone), now));
    // The node's own object has not listed: a missing entry may be on its way.
    assert_eq!(inputs.admission("y", "u"), Admission::Unknown);
    let node = |e| Seen::NodePolicy(e);
    listings.apply(&mut inputs, Source::NodePolicy, node(Event::Init), now);
    assert!(listings.apply(&mut inputs, Source::NodePolicy, node(Event::InitDone), now));
    // Both listed, the span watches not yet: pods are judged by the index alone.
    assert!(!inputs.complete());
    assert_eq!(inputs.admission("y", "u"), Admission::Unpoliced);
    assert_eq!(inputs.admission("x", "u"), Admission::Pending);
    // Listed again without the index: there is none, so no controller computes policies.
    listings.apply(&mut inputs, Source::Index, seen(Event::Init), now);
    assert!(listings.apply(&mut inputs, Source::Index, seen(Event::InitDone), now));
    assert_eq!(inputs.admission("x", "u"), Admission::Unpoliced);
}
