use super::*;
use crate::task;
use futures::FutureExt;

fn errors_counted(metrics: &Metrics, label: &str) -> u64 {
    metrics
        .registry()
        .gather()
        .iter()
        .filter(|family| family.name() == "weft_errors_total")
        .flat_map(|family| family.get_metric().to_vec())
        .filter(|m| m.get_label().iter().any(|l| l.value() == label))
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

async fn settle_next(tasks: &mut Tasks, ready: &AtomicBool, metrics: &Metrics) -> Result<()> {
    tokio::time::timeout(std::time::Duration::from_secs(5), tasks.next())
        .await
        .expect("a task ended")
        .settle(ready, metrics)
}

#[tokio::test]
async fn a_dying_peer_source_makes_weftd_exit() {
    let metrics = Metrics::new("n1").unwrap();
    let ready = AtomicBool::new(true);
    let mut tasks = Tasks::default();
    tasks.add(
        "socket",
        Lifetime::Forever,
        OnEnd::Exit,
        futures::future::pending().boxed(),
    );
    let watch_failed = async { Err(Error::Allocation("the watch broke".into())) }.boxed();
    tasks.add("peer source", Lifetime::Forever, OnEnd::Exit, watch_failed);
    let e = settle_next(&mut tasks, &ready, &metrics).await.unwrap_err();
    assert!(e.to_string().contains("the watch broke"), "{e}");
    assert_eq!(errors_counted(&metrics, "Allocation"), 1);
}

#[tokio::test]
async fn a_forever_task_that_returns_is_a_death() {
    let metrics = Metrics::new("n1").unwrap();
    let ready = AtomicBool::new(true);
    let mut tasks = Tasks::default();
    tasks.add(
        "peer source",
        Lifetime::Forever,
        OnEnd::Exit,
        async { Ok(()) }.boxed(),
    );
    let e = settle_next(&mut tasks, &ready, &metrics).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::TaskEnded {
                task: "peer source"
            }
        ),
        "{e}"
    );
    assert_eq!(errors_counted(&metrics, "TaskEnded"), 1);
}

#[tokio::test]
async fn a_dying_reporter_turns_readyz_off_and_weftd_carries_on() {
    let metrics = Metrics::new("n1").unwrap();
    let ready = AtomicBool::new(true);
    let mut tasks = Tasks::default();
    tasks.add(
        "publish identity",
        Lifetime::UntilDone,
        OnEnd::NotReady,
        async { Ok(()) }.boxed(),
    );
    settle_next(&mut tasks, &ready, &metrics).await.unwrap();
    assert!(ready.load(Ordering::Acquire), "a task done is no death");

    let panicking = task::spawn("usage report", async { panic!("boom") });
    tasks.add(
        "usage report",
        Lifetime::Forever,
        OnEnd::NotReady,
        panicking,
    );
    settle_next(&mut tasks, &ready, &metrics).await.unwrap();
    assert!(!ready.load(Ordering::Acquire));
    assert_eq!(errors_counted(&metrics, "TaskPanicked"), 1);
}

#[tokio::test]
async fn a_panicking_thread_is_seen() {
    let metrics = Metrics::new("n1").unwrap();
    let ready = AtomicBool::new(true);
    let mut tasks = Tasks::default();
    let thread = task::thread("peers-file", || panic!("boom")).unwrap();
    tasks.add("peer source", Lifetime::Forever, OnEnd::Exit, thread);
    let e = settle_next(&mut tasks, &ready, &metrics).await.unwrap_err();
    assert!(
        matches!(e, Error::TaskPanicked { task: "peers-file" }),
        "{e}"
    );
}
