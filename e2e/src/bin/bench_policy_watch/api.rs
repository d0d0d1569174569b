//! GET requests by exact path and query, over the kube-rs client (its `Request` builder
//! adds query parameters of its own, such as a watch's `timeoutSeconds`).

use futures::AsyncBufRead;
use kube::core::{params::ListParams, Request};
use kube::Client;
use std::pin::Pin;

/// A streaming response body.
pub(crate) type Stream = Pin<Box<dyn AsyncBufRead + Send>>;

/// Attempts of a GET whose connection failed: the pool may hand out a kept-alive
/// connection the apiserver has just closed.
const GET_ATTEMPTS: usize = 3;

/// GET `uri` (path and query); the body as text.
pub(crate) async fn get_text(client: &Client, uri: &str) -> Result<String, String> {
    let mut failures = Vec::new();
    for _ in 0..GET_ATTEMPTS {
        let mut request = Request::new("/")
            .list(&ListParams::default())
            .map_err(|e| e.to_string())?;
        *request.uri_mut() = uri.parse().map_err(|e| format!("{uri}: {e}"))?;
        match client.request_text(request).await {
            Ok(text) => return Ok(text),
            Err(e) => failures.push(format!("{e:?}")),
        }
    }
    Err(format!("GET {uri}: {}", failures.join("; ")))
}

/// GET `uri` (path and query); the body as it streams, once the response headers said
/// 200.
pub(crate) async fn get_stream(client: &Client, uri: &str) -> Result<Stream, String> {
    let mut request = Request::new("/")
        .list(&ListParams::default())
        .map_err(|e| e.to_string())?;
    *request.uri_mut() = uri.parse().map_err(|e| format!("{uri}: {e}"))?;
    let stream = client
        .request_stream(request)
        .await
        .map_err(|e| format!("GET {uri}: {e:?}"))?;
    Ok(Box::pin(stream))
}

/// The collection's resourceVersion now (a list of at most one, of `selector`).
pub(crate) async fn current_rv(
    client: &Client,
    path: &str,
    selector: &str,
) -> Result<String, String> {
    let list = get_text(client, &format!("{path}?limit=1&labelSelector={selector}")).await?;
    let list: serde_json::Value = serde_json::from_str(&list).map_err(|e| e.to_string())?;
    list["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "a list without resourceVersion".into())
}
