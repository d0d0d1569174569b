use super::*;

fn nodes(count: usize) -> BTreeSet<String> {
    (0..count).map(|i| format!("node-{i}")).collect()
}

#[test]
fn each_spanned_node_has_its_label_until_the_span_is_wide() {
    assert_eq!(span_labels(&BTreeSet::new(), false), BTreeMap::new());
    let labels = span_labels(&nodes(2), false);
    let expected: BTreeMap<String, String> = [span_label("node-0"), span_label("node-1")]
        .map(|l| (l, String::new()))
        .into();
    assert_eq!(labels, expected);
    assert!(!is_wide(&labels));
    let at_limit = span_labels(&nodes(SPAN_NODE_LABELS_MAX), false);
    assert_eq!(at_limit.len(), SPAN_NODE_LABELS_MAX);
    let wide = span_labels(&nodes(SPAN_NODE_LABELS_MAX + 1), false);
    assert_eq!(wide, BTreeMap::from([(SPAN_ALL.to_owned(), String::new())]));
    assert!(is_wide(&wide));
}

#[test]
fn a_wide_object_returns_to_node_labels_only_below_the_return_mark() {
    // Between the two marks, it stays as it was written.
    let between = nodes(SPAN_NODE_LABELS_RETURN + 10);
    assert!(is_wide(&span_labels(&between, true)));
    assert!(!is_wide(&span_labels(&between, false)));
    assert!(is_wide(&span_labels(&nodes(SPAN_NODE_LABELS_RETURN), true)));
    let back = span_labels(&nodes(SPAN_NODE_LABELS_RETURN - 1), true);
    assert_eq!(back.len(), SPAN_NODE_LABELS_RETURN - 1);
    assert!(!is_wide(&back));
}
