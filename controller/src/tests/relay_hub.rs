use super::*;
use serde_json::json;

const NODE_A: &str = "span.weft.dev/n-a";
const NODE_B: &str = "span.weft.dev/n-b";

fn object(name: &str, labels: &[&str], generation: u64) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|l| ((*l).to_owned(), json!("")))
        .collect();
    json!({"apiVersion": "weft.dev/v1alpha1", "kind": "WeftPolicy",
           "metadata": {"name": name, "labels": labels}, "spec": {"generation": generation}})
}

fn ready() -> Hub {
    let mut hub = Hub::default();
    hub.reset(vec![object("p1", &[NODE_A], 1)], 10);
    hub
}

/// Each line as (type, object name).
fn events(lines: &[Bytes]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|line| {
            let event: Value = serde_json::from_slice(line).unwrap();
            (
                event["type"].as_str().unwrap().to_owned(),
                event["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect()
}

fn drain(lines: &mut Lines) -> Vec<Bytes> {
    let mut out = Vec::new();
    while let Ok(line) = lines.try_recv() {
        out.push(line);
    }
    out
}

#[test]
fn nothing_is_served_before_the_first_listing() {
    let mut hub = Hub::default();
    assert_eq!(hub.list(NODE_A).unwrap_err(), Refused::NotReady);
    assert!(matches!(hub.watch(NODE_A, 0), Err(Refused::NotReady)));
}

#[test]
fn a_list_holds_only_the_objects_carrying_the_label() {
    let mut hub = ready();
    hub.apply(&object("p2", &[NODE_B], 1), 11);
    let (items, version) = hub.list(NODE_A).unwrap();
    assert_eq!(version, 11);
    assert_eq!(items.len(), 1);
    let item: Value = serde_json::from_slice(&items[0]).unwrap();
    assert_eq!(item["metadata"]["name"], "p1");
}

#[test]
fn a_watch_sees_an_object_enter_change_and_leave_its_label() {
    let mut hub = ready();
    let (missed, mut lines) = hub.watch(NODE_B, 10).unwrap();
    assert!(missed.is_empty());
    hub.apply(&object("p1", &[NODE_A, NODE_B], 2), 11);
    hub.apply(&object("p1", &[NODE_A, NODE_B], 3), 12);
    hub.apply(&object("p1", &[NODE_A], 4), 13);
    hub.apply(&object("other", &[NODE_A], 1), 14);
    assert_eq!(
        events(&drain(&mut lines)),
        [
            ("ADDED".to_owned(), "p1".to_owned()),
            ("MODIFIED".to_owned(), "p1".to_owned()),
            ("DELETED".to_owned(), "p1".to_owned()),
        ],
        "nothing of an object that never carried the label"
    );
    hub.delete(&object("p1", &[NODE_A], 4), 15);
    assert!(drain(&mut lines).is_empty(), "p1 had left NODE_B already");
}

#[test]
fn a_resumed_watch_gets_what_it_missed_after_its_version() {
    let mut hub = ready();
    hub.apply(&object("p1", &[NODE_A], 2), 11);
    hub.apply(&object("p2", &[NODE_A], 1), 12);
    hub.delete(&object("p1", &[NODE_A], 2), 13);
    let (missed, _lines) = hub.watch(NODE_A, 11).unwrap();
    assert_eq!(
        events(&missed),
        [
            ("ADDED".to_owned(), "p2".to_owned()),
            ("DELETED".to_owned(), "p1".to_owned())
        ]
    );
    let (missed, _lines) = hub.watch(NODE_A, 13).unwrap();
    assert!(missed.is_empty());
}

#[test]
fn a_version_older_than_the_kept_changes_must_list_again() {
    let mut hub = ready();
    assert_eq!(
        hub.watch(NODE_A, 9).unwrap_err(),
        Refused::Expired {
            asked: 9,
            oldest: 10
        },
        "from before the listing"
    );
    for i in 0..=KEPT_EVENTS as u64 {
        hub.apply(&object("p1", &[NODE_A], i), 11 + i);
    }
    assert!(matches!(
        hub.watch(NODE_A, 10),
        Err(Refused::Expired { oldest: 11, .. })
    ));
    let (missed, _lines) = hub.watch(NODE_A, 11).unwrap();
    assert_eq!(missed.len(), KEPT_EVENTS);
}

#[test]
fn a_relist_ends_every_watch_and_a_full_one_is_cut_off() {
    let mut hub = ready();
    let (_, mut ended) = hub.watch(NODE_A, 10).unwrap();
    hub.reset(vec![object("p1", &[NODE_A], 5)], 20);
    assert!(matches!(
        ended.try_recv(),
        Err(mpsc::error::TryRecvError::Disconnected)
    ));
    let (_, mut slow) = hub.watch(NODE_A, 20).unwrap();
    for i in 0..=WATCH_BACKLOG as u64 {
        hub.apply(&object("p1", &[NODE_A], i), 21 + i);
    }
    assert_eq!(hub.watch_count(), 0, "cut off when its backlog overflowed");
    assert_eq!(drain(&mut slow).len(), WATCH_BACKLOG);
    assert!(matches!(
        slow.try_recv(),
        Err(mpsc::error::TryRecvError::Disconnected)
    ));
}

#[test]
fn a_watch_from_a_version_the_relay_has_not_reached_lists_again() {
    let mut hub = ready();
    assert_eq!(
        hub.watch(NODE_A, 11).unwrap_err(),
        Refused::Ahead {
            asked: 11,
            version: 10
        }
    );
}

#[test]
fn ended_watches_are_forgotten_when_their_label_is_watched_again() {
    let mut hub = ready();
    for _ in 0..5 {
        let (_, lines) = hub.watch(NODE_A, 10).unwrap();
        drop(lines);
    }
    let (_, _open) = hub.watch(NODE_A, 10).unwrap();
    assert_eq!(hub.watch_count(), 1);
}

#[test]
fn a_bookmark_moves_the_version_without_a_change() {
    let mut hub = ready();
    hub.advance(30);
    assert_eq!(hub.version(), 30);
    hub.advance(20);
    assert_eq!(hub.version(), 30, "never back");
    assert_eq!(hub.list(NODE_A).unwrap().1, 30);
}
