use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

const KEY: [u8; 32] = [1; 32];

/// Asks `kept` for `key` as a computation that counts itself, takes a moment and
/// gives `answer`, kept 30 s.
async fn ask(
    kept: &Kept<u32>,
    key: [u8; 32],
    computed: &AtomicUsize,
    answer: Result<u32, ()>,
) -> Result<u32, ()> {
    ask_kept_for(kept, key, computed, answer, Duration::from_secs(30)).await
}

/// As [`ask`], the answer kept for `lasts`.
async fn ask_kept_for(
    kept: &Kept<u32>,
    key: [u8; 32],
    computed: &AtomicUsize,
    answer: Result<u32, ()>,
    lasts: Duration,
) -> Result<u32, ()> {
    kept.get_or_try(
        key,
        |_| lasts,
        || async {
            computed.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            answer
        },
    )
    .await
}

#[tokio::test]
async fn callers_at_the_same_time_share_one_computation() {
    let kept = Kept::new(100);
    let computed = AtomicUsize::new(0);
    let answers =
        futures::future::join_all((0..16).map(|_| ask(&kept, KEY, &computed, Ok(7)))).await;
    assert!(answers.iter().all(|a| *a == Ok(7)), "{answers:?}");
    assert_eq!(computed.load(Ordering::SeqCst), 1);
    // Kept afterwards: a later caller computes nothing.
    assert_eq!(ask(&kept, KEY, &computed, Ok(8)).await, Ok(7));
    assert_eq!(computed.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn other_keys_are_computed_apart() {
    let kept = Kept::new(100);
    let computed = AtomicUsize::new(0);
    let (a, b) = tokio::join!(
        ask(&kept, KEY, &computed, Ok(1)),
        ask(&kept, [2; 32], &computed, Ok(2))
    );
    assert_eq!((a, b), (Ok(1), Ok(2)));
    assert_eq!(computed.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failure_is_not_kept() {
    let kept = Kept::new(100);
    let computed = AtomicUsize::new(0);
    assert_eq!(ask(&kept, KEY, &computed, Err(())).await, Err(()));
    assert_eq!(ask(&kept, KEY, &computed, Ok(3)).await, Ok(3));
    assert_eq!(computed.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_lapsed_answer_is_computed_again() {
    let kept = Kept::new(100);
    let computed = AtomicUsize::new(0);
    let lasts = Duration::from_millis(50);
    let short = |answer: u32| ask_kept_for(&kept, KEY, &computed, Ok(answer), lasts);
    assert_eq!(short(1).await, Ok(1));
    assert_eq!(short(2).await, Ok(1));
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(short(3).await, Ok(3));
    assert_eq!(computed.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn past_its_room_lapsed_answers_go_and_new_ones_are_still_answered() {
    let kept = Kept::new(2);
    let computed = AtomicUsize::new(0);
    for key in 0..4u8 {
        assert_eq!(
            ask(&kept, [key; 32], &computed, Ok(u32::from(key))).await,
            Ok(u32::from(key))
        );
    }
    // Two kept (none lapsed), two answered without being kept.
    assert_eq!(kept.len(), 2);
    assert_eq!(computed.load(Ordering::SeqCst), 4);
}
