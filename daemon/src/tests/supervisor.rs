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

/// A supervisor's world: weftd ready, no task yet.
struct World {
    metrics: Metrics,
    readiness: Readiness,
    tasks: Tasks,
}

impl World {
    fn new() -> World {
        let mut world = World {
            metrics: Metrics::new("n1").unwrap(),
            readiness: Readiness::default(),
            tasks: Tasks::default(),
        };
        world.readiness.set_serving();
        world
    }

    /// Waits for the next task to end and settles it, as main does.
    async fn settle_next(&mut self) -> Result<()> {
        tokio::time::timeout(std::time::Duration::from_secs(5), self.tasks.next())
            .await
            .expect("a task ended")
            .settle(&mut self.readiness, &self.metrics)
    }

    fn ready(&self) -> bool {
        self.readiness.answer().load(Ordering::Acquire)
    }
}

#[tokio::test]
async fn a_dying_peer_source_makes_weftd_exit() {
    let mut world = World::new();
    world.tasks.add(
        "socket",
        Lifetime::Forever,
        OnEnd::Exit,
        futures::future::pending().boxed(),
    );
    let watch_failed = async { Err(Error::Allocation("the watch broke".into())) }.boxed();
    world
        .tasks
        .add("peer source", Lifetime::Forever, OnEnd::Exit, watch_failed);
    let e = world.settle_next().await.unwrap_err();
    assert!(e.to_string().contains("the watch broke"), "{e}");
    assert_eq!(errors_counted(&world.metrics, "Allocation"), 1);
}

#[tokio::test]
async fn a_forever_task_that_returns_is_a_death() {
    let mut world = World::new();
    world.tasks.add(
        "peer source",
        Lifetime::Forever,
        OnEnd::Exit,
        async { Ok(()) }.boxed(),
    );
    let e = world.settle_next().await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::TaskEnded {
                task: "peer source"
            }
        ),
        "{e}"
    );
    assert_eq!(errors_counted(&world.metrics, "TaskEnded"), 1);
}

#[tokio::test]
async fn a_dying_reporter_turns_readyz_off_and_weftd_carries_on() {
    let mut world = World::new();
    world.tasks.add(
        "publish identity",
        Lifetime::UntilDone,
        OnEnd::NotReady,
        async { Ok(()) }.boxed(),
    );
    world.settle_next().await.unwrap();
    assert!(world.ready(), "a task done is no death");

    let panicking = task::spawn("usage report", async { panic!("boom") });
    world.tasks.add(
        "usage report",
        Lifetime::Forever,
        OnEnd::NotReady,
        panicking,
    );
    world.settle_next().await.unwrap();
    assert!(!world.ready());
    assert_eq!(errors_counted(&world.metrics, "TaskPanicked"), 1);
}

#[tokio::test]
async fn a_panicking_thread_is_seen() {
    let mut world = World::new();
    let thread = task::thread("peers-file", || panic!("boom")).unwrap();
    world
        .tasks
        .add("peer source", Lifetime::Forever, OnEnd::Exit, thread);
    let e = world.settle_next().await.unwrap_err();
    assert!(
        matches!(e, Error::TaskPanicked { task: "peers-file" }),
        "{e}"
    );
}

#[test]
fn readiness_needs_serving_and_stays_off_once_degraded() {
    let mut readiness = Readiness::default();
    let answer = readiness.answer();
    assert!(!answer.load(Ordering::Acquire), "not serving yet");
    // A reporter dying before pods are served (the conflist not yet written) must not
    // be forgotten when serving starts.
    readiness.degrade();
    readiness.set_serving();
    assert!(readiness.serving());
    assert!(!answer.load(Ordering::Acquire));

    let mut readiness = Readiness::default();
    readiness.set_serving();
    assert!(readiness.answer().load(Ordering::Acquire));
}
