use super::*;

fn used_at(lingering: &mut Lingering<&'static str>, profiles: &[&'static str], at: Instant) {
    lingering.used(&profiles.iter().copied().collect(), at);
}

#[test]
fn a_profile_is_kept_for_the_grace_after_its_last_pass_then_forgotten() {
    let start = Instant::now();
    let mut lingering = Lingering::default();
    used_at(&mut lingering, &["a", "b"], start);
    used_at(&mut lingering, &["b"], start + GRACE / 2);
    let all = |_: &&str| true;
    assert_eq!(lingering.kept(start + GRACE / 2, all), ["a", "b"]);
    // `a`'s grace ends a whole GRACE after the last pass that saw it; `b` was seen later.
    assert_eq!(lingering.kept(start + GRACE, all), ["b"]);
    used_at(&mut lingering, &[], start + GRACE);
    assert_eq!(
        lingering.last_used.len(),
        1,
        "a is forgotten, not only hidden"
    );
    assert!(lingering.kept(start + GRACE * 2, all).is_empty());
}

#[test]
fn a_profile_no_longer_valid_is_not_kept() {
    let start = Instant::now();
    let mut lingering = Lingering::default();
    used_at(&mut lingering, &["a", "b"], start);
    assert_eq!(lingering.kept(start, |p: &&str| *p != "a"), ["b"]);
}
