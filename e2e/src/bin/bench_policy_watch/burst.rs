//! The write burst: creates from `writers` concurrent tasks, as fast as the apiserver
//! answers or paced at a rate, each timed from request to response.

use crate::objects::ROW_LABEL;
use kube::core::params::{DeleteParams, ListParams, PostParams};
use kube::core::Request;
use kube::Client;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One create as the writer saw it.
#[derive(Debug, Clone)]
pub(crate) struct Write {
    pub(crate) sent: Instant,
    pub(crate) answered: Instant,
    pub(crate) error: Option<String>,
}

/// Creates `bodies` (JSON objects) in `path`, `writers` at a time; with `rate`, create
/// `i` is not sent before `i / rate` seconds after the first. Result `i` is body `i`'s.
pub(crate) async fn create_all(
    client: &Client,
    path: &str,
    bodies: Vec<Vec<u8>>,
    writers: usize,
    rate: Option<f64>,
) -> Vec<Write> {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let began = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (client, path, bodies, next) = (
                client.clone(),
                path.to_owned(),
                bodies.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else {
                        return done;
                    };
                    if let Some(rate) = rate {
                        tokio::time::sleep_until(began + Duration::from_secs_f64(i as f64 / rate))
                            .await;
                    }
                    done.push((i, create(&client, &path, body.clone()).await));
                }
            })
        })
        .collect();
    let mut writes: Vec<Option<Write>> = vec![None; bodies.len()];
    for task in tasks {
        for (i, write) in task.await.expect("a writer task") {
            writes[i] = Some(write);
        }
    }
    writes
        .into_iter()
        .map(|w| w.expect("every body written"))
        .collect()
}

async fn create(client: &Client, path: &str, body: Vec<u8>) -> Write {
    let sent = Instant::now();
    let error = match Request::new(path).create(&PostParams::default(), body) {
        Ok(request) => client
            .request_text(request)
            .await
            .err()
            .map(|e| format!("{e:?}")),
        Err(e) => Some(e.to_string()),
    };
    Write {
        sent,
        answered: Instant::now(),
        error,
    }
}

/// Attempts of the deletecollection: the apiserver may end a long one (its request
/// timeout, a busy connection closed); what it deleted stays deleted.
const DELETE_ATTEMPTS: usize = 3;

/// Deletes every object written in `row` (deletecollection, retried).
pub(crate) async fn delete_row(client: &Client, path: &str, row: usize) -> Result<(), String> {
    let mut failures = Vec::new();
    for _ in 0..DELETE_ATTEMPTS {
        let request = Request::new(path)
            .delete_collection(
                &DeleteParams::default(),
                &ListParams::default().labels(&format!("{ROW_LABEL}={row}")),
            )
            .map_err(|e| e.to_string())?;
        match client.request_text(request).await {
            Ok(_) => return Ok(()),
            Err(e) => failures.push(format!("{e:?}")),
        }
    }
    Err(format!("deleting row {row}: {}", failures.join("; ")))
}
