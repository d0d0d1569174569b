use super::*;

fn names(spanned: &Spanned<u32>) -> Vec<(String, u32)> {
    spanned.iter().map(|(n, v)| (n.to_owned(), *v)).collect()
}

#[test]
fn a_move_between_the_watches_never_drops_the_object_in_either_order() {
    let now = Instant::now();
    // DELETED from the node watch first, ADDED on the all watch later.
    let mut s = Spanned::default();
    s.apply(SpanWatch::Node, "p", 1);
    s.delete(SpanWatch::Node, "p", now);
    assert_eq!(names(&s), [("p".into(), 1)], "kept while leaving");
    s.apply(SpanWatch::All, "p", 2);
    assert!(
        !s.expire(now + LEAVING_GRACE * 2),
        "the move ended the leaving"
    );
    assert_eq!(names(&s), [("p".into(), 2)]);
    // ADDED on the node watch first, DELETED from the all watch later.
    s.apply(SpanWatch::Node, "p", 3);
    s.delete(SpanWatch::All, "p", now);
    assert_eq!(s.next_expiry(), None, "still held by the node watch");
    assert_eq!(names(&s), [("p".into(), 3)]);
}

#[test]
fn a_removal_takes_effect_after_the_grace() {
    let now = Instant::now();
    let mut s = Spanned::default();
    s.apply(SpanWatch::Node, "p", 1);
    s.apply(SpanWatch::Node, "q", 1);
    s.delete(SpanWatch::Node, "p", now);
    assert_eq!(s.next_expiry(), Some(now + LEAVING_GRACE));
    assert!(!s.expire(now + LEAVING_GRACE / 2));
    assert_eq!(s.get("p"), Some(&1));
    assert!(s.expire(now + LEAVING_GRACE));
    assert_eq!(s.get("p"), None);
    assert_eq!(names(&s), [("q".into(), 1)]);
    // Deleting what a watch never had changes nothing.
    s.delete(SpanWatch::All, "q", now);
    assert_eq!(s.next_expiry(), None);
}

#[test]
fn a_relist_deletes_what_it_no_longer_lists_and_applies_the_rest() {
    let now = Instant::now();
    let mut s = Spanned::default();
    s.apply(SpanWatch::All, "a", 1);
    s.apply(SpanWatch::All, "b", 1);
    s.relist(
        SpanWatch::All,
        [("b".to_owned(), 2), ("c".to_owned(), 1)].into(),
        now,
    );
    assert_eq!(
        names(&s),
        [("a".into(), 1), ("b".into(), 2), ("c".into(), 1)],
        "a leaves, it is not gone yet"
    );
    s.expire(now + LEAVING_GRACE);
    assert_eq!(names(&s), [("b".into(), 2), ("c".into(), 1)]);
}
