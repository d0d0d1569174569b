use super::*;

const MS: Duration = Duration::from_millis(1);

fn pacing() -> Pacing {
    Pacing::counted_in(IntGauge::new("held", "held").unwrap())
}

fn set(names: &[&str]) -> HashSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn a_node_alone_writes_its_conditions_at_once_its_own_allocation_notwithstanding() {
    let pacing = pacing();
    assert!(pacing.may_write("a"));
    let t0 = Instant::now();
    pacing.allocation_written_at("a", t0);
    pacing.set_unallocated(set(&["a"]));
    assert!(pacing.may_write_at("a", t0 + MS));
    assert_eq!(pacing.held_gauge.get(), 0);
}

#[test]
fn conditions_wait_while_other_nodes_are_allocated_and_are_nudged_once_quiet() {
    let pacing = pacing();
    let t0 = Instant::now();
    pacing.allocation_written_at("a", t0);
    pacing.allocation_written_at("b", t0 + 5 * MS);
    assert!(!pacing.may_write_at("a", t0 + 10 * MS));
    pacing.allocation_written_at("c", t0 + 15 * MS);
    assert!(!pacing.may_write_at("b", t0 + 20 * MS));
    assert_eq!(pacing.held_gauge.get(), 2);
    // Still busy: nobody is due.
    pacing.allocation_written_at("c", t0 + 500 * MS);
    assert!(pacing.due_at(t0 + 900 * MS, |_| true).is_empty());
    // Quiet: both are due, once.
    let quiet = t0 + 500 * MS + QUIET;
    assert_eq!(pacing.due_at(quiet, |_| true), ["a", "b"]);
    assert!(pacing.due_at(quiet + 100 * MS, |_| true).is_empty());
    // Their reconciles write and forget them.
    assert!(pacing.may_write_at("a", quiet + 10 * MS));
    assert!(pacing.may_write_at("b", quiet + 10 * MS));
    assert_eq!(pacing.held_gauge.get(), 0);
}

#[test]
fn the_latest_write_for_another_node_counts_even_when_the_node_wrote_last() {
    let pacing = pacing();
    let t0 = Instant::now();
    pacing.allocation_written_at("b", t0);
    pacing.allocation_written_at("a", t0 + 10 * MS);
    assert!(!pacing.may_write_at("a", t0 + 20 * MS));
    assert!(pacing.may_write_at("a", t0 + QUIET));
}

#[test]
fn a_node_nudged_into_a_busy_moment_is_nudged_again_later() {
    let pacing = pacing();
    let t0 = Instant::now();
    pacing.allocation_written_at("b", t0);
    assert!(!pacing.may_write_at("a", t0));
    let quiet = t0 + QUIET;
    assert_eq!(pacing.due_at(quiet, |_| true), ["a"]);
    // A new node is allocated before a's reconcile runs: a waits again.
    pacing.allocation_written_at("c", quiet + MS);
    assert!(!pacing.may_write_at("a", quiet + 2 * MS));
    let quiet_again = quiet + MS + QUIET;
    assert!(pacing.due_at(quiet_again, |_| true).is_empty());
    assert_eq!(pacing.due_at(quiet + RENUDGE_AFTER, |_| true), ["a"]);
}

#[test]
fn no_node_waits_longer_than_max_defer_however_busy() {
    let pacing = pacing();
    let t0 = Instant::now();
    pacing.allocation_written_at("x", t0);
    assert!(!pacing.may_write_at("a", t0));
    let late = t0 + MAX_DEFER;
    pacing.allocation_written_at("y", late - MS);
    assert!(!pacing.may_write_at("b", late - MS));
    assert!(pacing.may_write_at("a", late));
    assert!(!pacing.may_write_at("b", late));
    assert_eq!(pacing.held_gauge.get(), 1);
}

#[test]
fn gone_nodes_are_dropped_and_forgotten_ones_are_not_nudged() {
    let pacing = pacing();
    let t0 = Instant::now();
    pacing.allocation_written_at("x", t0);
    for node in ["a", "b", "c"] {
        assert!(!pacing.may_write_at(node, t0));
    }
    pacing.forget("b");
    assert_eq!(pacing.due_at(t0 + QUIET, |n| n != "c"), ["a"]);
    assert_eq!(pacing.held_gauge.get(), 1);
}

#[test]
fn nodes_still_waiting_for_ranges_keep_conditions_held_whatever_the_clock_says() {
    let pacing = pacing();
    let t0 = Instant::now();
    pacing.allocation_written_at("x", t0);
    assert!(!pacing.may_write_at("a", t0));
    // The apiserver stalls: no write returns for seconds, but other Nodes still wait.
    pacing.set_unallocated(set(&["y", "z"]));
    let stalled = t0 + 3 * QUIET;
    assert!(pacing.due_at(stalled, |_| true).is_empty());
    assert!(!pacing.may_write_at("b", stalled));
    // Only b itself waits: b may write, the others are due.
    pacing.set_unallocated(set(&["b"]));
    assert!(pacing.may_write_at("b", stalled));
    assert!(
        pacing.due_at(stalled, |_| true).is_empty(),
        "b still lacks its ranges"
    );
    pacing.set_unallocated(set(&[]));
    assert_eq!(pacing.due_at(stalled, |_| true), ["a"]);
}
