use super::*;

const GROUP: &str = "g-0123456789ab";
const SELECTOR: &str = "x||app in (web)";

fn member(i: usize) -> GroupMember {
    GroupMember {
        uid: format!("uid-{i:04}"),
        ips: vec![format!("2001:db8::{i:x}")],
        ports: vec![],
    }
}

fn upserts(range: impl IntoIterator<Item = usize>) -> BTreeMap<String, Option<GroupMember>> {
    range
        .into_iter()
        .map(|i| (member(i).uid, Some(member(i))))
        .collect()
}

fn removals(range: impl IntoIterator<Item = usize>) -> BTreeMap<String, Option<GroupMember>> {
    range.into_iter().map(|i| (member(i).uid, None)).collect()
}

/// Slice number → member UIDs.
fn layout(slices: &Slices) -> BTreeMap<usize, Vec<String>> {
    let uids = |n| {
        slices
            .spec(n)
            .unwrap()
            .members
            .into_iter()
            .map(|m| m.uid)
            .collect()
    };
    slices.numbers().map(|n| (n, uids(n))).collect()
}

fn slice_holding(slices: &Slices, i: usize) -> usize {
    let uid = member(i).uid;
    let holds = |n: &usize| {
        slices
            .spec(*n)
            .unwrap()
            .members
            .iter()
            .any(|m| m.uid == uid)
    };
    slices.numbers().find(holds).unwrap()
}

#[test]
fn members_fill_slices_in_order_and_new_ones_fill_holes() {
    let mut slices = Slices::new(GROUP, SELECTOR);
    let full = GROUP_SLICE_MEMBERS;
    assert_eq!(slices.apply(&upserts(0..full + 10)), BTreeSet::from([0, 1]));
    let before = layout(&slices);
    assert_eq!(before[&0].len(), full);
    assert_eq!(before[&1].len(), 10);
    // Removing from slice 0 touches it alone; a newcomer takes the hole there.
    assert_eq!(slices.apply(&removals([3, 4])), BTreeSet::from([0]));
    assert_eq!(slices.apply(&upserts([full + 10])), BTreeSet::from([0]));
    assert_eq!(slice_holding(&slices, full + 10), 0);
    // Nobody moved.
    for i in (0..full + 10).filter(|i| ![3, 4].contains(i)) {
        assert_eq!(
            slice_holding(&slices, i),
            usize::from(i >= full),
            "member {i}"
        );
    }
    let spec = slices.spec(0).unwrap();
    assert_eq!(
        (spec.group.as_str(), spec.selector.as_str()),
        (GROUP, SELECTOR)
    );
    let uids: Vec<&String> = spec.members.iter().map(|m| &m.uid).collect();
    assert!(uids.windows(2).all(|w| w[0] < w[1]), "sorted by UID");
    assert_eq!(slices.name(1), format!("{GROUP}-1"));
}

#[test]
fn an_emptied_slice_is_deleted_and_its_number_reused_without_compacting_others() {
    let mut slices = Slices::new(GROUP, SELECTOR);
    let full = GROUP_SLICE_MEMBERS;
    slices.apply(&upserts(0..2 * full + 1));
    assert_eq!(slices.numbers().collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(slices.apply(&removals(full..2 * full)), BTreeSet::from([1]));
    assert_eq!(slices.spec(1), None, "deleted");
    // Slice 2 keeps its single member: slices are drained only by deletes.
    assert_eq!(layout(&slices)[&2], vec![member(2 * full).uid]);
    // Newcomers take the first slice with room, then the lowest free number.
    assert_eq!(
        slices.apply(&upserts(5000..5000 + full - 1)),
        BTreeSet::from([2])
    );
    assert_eq!(slices.apply(&upserts([6000])), BTreeSet::from([1]));
}

#[test]
fn a_member_changes_in_place_and_an_unchanged_one_touches_nothing() {
    let mut slices = Slices::new(GROUP, SELECTOR);
    slices.apply(&upserts(0..GROUP_SLICE_MEMBERS + 1));
    assert_eq!(
        slices.apply(&upserts([GROUP_SLICE_MEMBERS])),
        BTreeSet::new()
    );
    let mut changed = member(GROUP_SLICE_MEMBERS);
    changed.ips.push("192.0.2.1".into());
    let change = BTreeMap::from([(changed.uid.clone(), Some(changed.clone()))]);
    assert_eq!(slices.apply(&change), BTreeSet::from([1]));
    assert_eq!(slices.spec(1).unwrap().members, vec![changed]);
    assert_eq!(
        slices.apply(&removals([9999])),
        BTreeSet::new(),
        "not a member"
    );
}

#[test]
fn listed_slices_keep_their_assignment_and_what_is_off_is_rewritten() {
    let spec = |members: Vec<GroupMember>| WeftAddressGroupSpec {
        group: GROUP.into(),
        selector: SELECTOR.into(),
        members,
    };
    let listed = vec![
        (format!("{GROUP}-2"), spec(vec![member(1), member(2)])),
        (format!("{GROUP}-0"), spec(vec![member(0), member(1)])),
        (
            format!("{GROUP}-3"),
            WeftAddressGroupSpec {
                selector: "old".into(),
                ..spec(vec![member(3)])
            },
        ),
        (format!("{GROUP}-4"), spec(vec![])),
        ("g-other-1".to_owned(), spec(vec![member(7)])),
    ];
    let (mut slices, stale) = Slices::from_listed(GROUP, SELECTOR, listed);
    // 1 is listed twice: it stays in 0, the lower; 2 is rewritten without it, 3 with
    // this selector, 4 (empty) deleted.
    assert_eq!(stale, BTreeSet::from([2, 3, 4]));
    assert_eq!(slice_holding(&slices, 1), 0);
    assert_eq!(layout(&slices)[&2], vec![member(2).uid]);
    assert_eq!(slices.spec(4), None);
    // Syncing with the model: 0 gone, 5 new (into the first slice with room).
    let members = [member(1), member(2), member(3), member(5)];
    assert_eq!(slices.sync(&members), BTreeSet::from([0]));
    assert_eq!(layout(&slices)[&0], vec![member(1).uid, member(5).uid]);
    assert_eq!(slices.sync(&members), BTreeSet::new());
}

#[test]
fn slice_numbers_are_read_from_names_of_the_group_only() {
    assert_eq!(slice_number(GROUP, &format!("{GROUP}-12")), Some(12));
    assert_eq!(slice_number(GROUP, &format!("{GROUP}-012")), None);
    assert_eq!(slice_number(GROUP, &format!("{GROUP}-")), None);
    assert_eq!(slice_number(GROUP, &format!("{GROUP}0-1")), None);
    assert_eq!(slice_number("g-all", "g-all-0"), Some(0));
}

mod properties {
    //! Random member changes: no live member ever moves, no slice overflows, the
    //! slices hold exactly the members, the touched slices are exactly those whose
    //! object changed, and a leader reading them back has nothing to write.
    use super::*;
    use proptest::prelude::*;

    /// One batch of member changes: UIDs from a pool a few slices wide, each added,
    /// readdressed or removed.
    fn batch() -> impl Strategy<Value = BTreeMap<String, Option<GroupMember>>> {
        let change = (0..3 * GROUP_SLICE_MEMBERS, 0..3u8).prop_map(|(i, what)| {
            let mut m = member(i);
            match what {
                0 => (m.uid, None),
                1 => {
                    m.ips.push(format!("192.0.2.{}", i % 250));
                    (m.uid.clone(), Some(m))
                }
                _ => (m.uid.clone(), Some(m)),
            }
        });
        let changes = prop::collection::vec(change, 1..GROUP_SLICE_MEMBERS);
        changes.prop_map(|changes| changes.into_iter().collect())
    }

    fn specs(slices: &Slices) -> BTreeMap<usize, WeftAddressGroupSpec> {
        slices
            .numbers()
            .map(|n| (n, slices.spec(n).unwrap()))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn slices_keep_members_in_place_and_say_what_changed(batches in prop::collection::vec(batch(), 1..12)) {
            let mut slices = Slices::new(GROUP, SELECTOR);
            let mut members: BTreeMap<String, GroupMember> = BTreeMap::new();
            let mut placed: BTreeMap<String, usize> = BTreeMap::new();
            for changes in batches {
                let before = specs(&slices);
                let touched = slices.apply(&changes);
                let after = specs(&slices);
                for (uid, change) in &changes {
                    match change {
                        Some(m) => members.insert(uid.clone(), m.clone()),
                        None => members.remove(uid),
                    };
                }
                // Exactly the members, none twice, no slice over the limit.
                let mut held = BTreeMap::new();
                for (n, spec) in &after {
                    prop_assert!(!spec.members.is_empty() && spec.members.len() <= GROUP_SLICE_MEMBERS);
                    for m in &spec.members {
                        prop_assert!(held.insert(m.uid.clone(), (*n, m.clone())).is_none());
                    }
                }
                let contents: BTreeMap<String, GroupMember> =
                    held.iter().map(|(uid, (_, m))| (uid.clone(), m.clone())).collect();
                prop_assert_eq!(&contents, &members);
                // A live member stays where it was.
                placed.retain(|uid, _| members.contains_key(uid));
                for (uid, (n, _)) in &held {
                    let first = *placed.entry(uid.clone()).or_insert(*n);
                    prop_assert_eq!(first, *n, "{} moved", uid);
                }
                // The touched slices are those whose object changed.
                let numbers: BTreeSet<usize> = before.keys().chain(after.keys()).copied().collect();
                let changed: BTreeSet<usize> =
                    numbers.into_iter().filter(|n| before.get(n) != after.get(n)).collect();
                prop_assert_eq!(touched, changed);
                // A new leader reading the slices back writes nothing.
                let listed = after.iter().map(|(n, spec)| (slices.name(*n), spec.clone()));
                let (mut read_back, stale) = Slices::from_listed(GROUP, SELECTOR, listed);
                prop_assert!(stale.is_empty());
                prop_assert!(read_back.sync(members.values()).is_empty());
                prop_assert_eq!(&read_back, &slices);
            }
        }
    }
}
