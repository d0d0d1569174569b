//! The relay's HTTPS endpoint: the two paths of the Kubernetes API a weftd's span
//! watches use (`GET /apis/weft.dev/v1alpha1/{weftpolicies,weftaddressgroups}`), list
//! and watch, with one span label as the selector. A weftd points those watches here
//! instead of at the apiserver and changes nothing else: versions, bookmarks and a 410
//! that sends it back to list are the apiserver's ("API Concepts: Efficient detection
//! of changes", kubernetes.io).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};
use weft_health::{Acceptor, Admission};

use super::auth::{Gate, Refusal};
use super::hub::{event_line, lock, Hub, Hubs, Lines, Refused};
use super::Relayed;
use crate::metrics::Metrics;

/// Connections from one address at once: a weftd holds one per watch and lists while
/// it resumes.
const PER_SOURCE: usize = 32;
/// Connections in all: four watches per node of a 5,000-node cluster.
const CONNECTIONS: usize = 24_000;
/// Time to finish the TLS handshake and send a request head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A watch asking for longer (or for nothing) lasts this long, then resumes.
const WATCH_LONGEST: Duration = Duration::from_secs(600);
/// How often a watch gets a bookmark: the version it may resume from moves on even
/// when none of its objects change.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

type Body = BoxBody<Bytes, Infallible>;

/// What each connection serves from.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub hubs: Hubs,
    pub gate: Gate,
    pub metrics: Metrics,
}

/// Serves `listener` through `tls` until the process ends.
pub async fn serve(listener: TcpListener, tls: TlsAcceptor, endpoint: Endpoint) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "relay listening");
    }
    let mut connections = Acceptor::new(listener, Admission::new(PER_SOURCE, CONNECTIONS), "relay");
    loop {
        let (stream, peer, place) = connections.next().await;
        let (tls, endpoint) = (tls.clone(), endpoint.clone());
        tokio::spawn(async move {
            let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await
            else {
                debug!(%peer, "relay TLS handshake failed or timed out");
                return;
            };
            let service = hyper::service::service_fn(move |request| {
                let endpoint = endpoint.clone();
                async move { Ok::<_, Infallible>(endpoint.answer(request).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HANDSHAKE_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                debug!(%peer, error = %e, "relay connection ended");
            }
            drop(place);
        });
    }
}

/// A request's query, as the relay reads it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub label: Option<String>,
    pub watch: bool,
    pub version: Option<String>,
    pub timeout: Option<Duration>,
    pub bookmarks: bool,
}

impl Query {
    /// Parses `query`; errors name the parameter and value.
    pub fn parse(query: &str) -> Result<Query, String> {
        let mut parsed = Query::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "labelSelector" => parsed.label = Some(span_label(&value)?),
                "watch" => parsed.watch = is_true(&value),
                "resourceVersion" => parsed.version = Some(value.into_owned()),
                "allowWatchBookmarks" => parsed.bookmarks = is_true(&value),
                "timeoutSeconds" => {
                    let seconds: u64 = value
                        .parse()
                        .map_err(|_| format!("timeoutSeconds: '{value}' is not a number"))?;
                    parsed.timeout = Some(Duration::from_secs(seconds));
                }
                _ => {}
            }
        }
        Ok(parsed)
    }
}

/// A boolean query parameter as the apiserver reads it.
fn is_true(value: &str) -> bool {
    value == "true" || value == "1"
}

/// The one selector form the relay serves: a label that must exist, no operator.
fn span_label(selector: &str) -> Result<String, String> {
    let valid = !selector.is_empty()
        && selector
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/'));
    if valid {
        Ok(selector.to_owned())
    } else {
        Err(format!(
            "labelSelector: '{selector}' is not one label name; the relay serves watches of a span label (span.weft.dev/...)"
        ))
    }
}

impl Endpoint {
    async fn answer(&self, request: Request<Incoming>) -> Response<Body> {
        let path = request.uri().path();
        let relayed = path
            .strip_prefix("/apis/weft.dev/v1alpha1/")
            .and_then(Relayed::from_plural);
        let Some(relayed) = relayed else {
            return status(404, "NotFound", &format!("the relay does not serve {path}"));
        };
        if request.method() != Method::GET {
            return status(405, "MethodNotAllowed", "the relay serves GET only");
        }
        let query = match Query::parse(request.uri().query().unwrap_or("")) {
            Ok(query) => query,
            Err(message) => return status(400, "BadRequest", &message),
        };
        let Some(label) = query.label.clone() else {
            return status(
                400,
                "BadRequest",
                "labelSelector: required (one span label)",
            );
        };
        let verb = if query.watch { "watch" } else { "list" };
        let authorization = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let response = match self.gate.check(authorization, verb, relayed).await {
            Err(e) => {
                warn!(error = %e, "relay: reviewing a client");
                e.count(&self.metrics);
                status(503, "ServiceUnavailable", "cannot review the token now")
            }
            Ok(Err(Refusal { code, message })) => {
                let reason = if code == 401 {
                    "Unauthorized"
                } else {
                    "Forbidden"
                };
                status(code, reason, &message)
            }
            Ok(Ok(())) if query.watch => self.watch(relayed, &label, &query),
            Ok(Ok(())) => self.list(relayed, &label),
        };
        self.metrics
            .relay_requests
            .with_label_values(&[relayed.plural(), verb, response.status().as_str()])
            .inc();
        response
    }

    fn list(&self, relayed: Relayed, label: &str) -> Response<Body> {
        let listed = lock(self.hubs.of(relayed)).list(label);
        match listed {
            Ok((items, version)) => {
                let mut body = format!(
                    "{{\"apiVersion\":\"{}\",\"kind\":\"{}List\",\"metadata\":{{\"resourceVersion\":\"{version}\"}},\"items\":[",
                    relayed.api_version(),
                    relayed.kind()
                )
                .into_bytes();
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(item);
                }
                body.extend_from_slice(b"]}");
                json(StatusCode::OK, Bytes::from(body))
            }
            Err(refused) => not_ready(relayed, &refused),
        }
    }

    fn watch(&self, relayed: Relayed, label: &str, query: &Query) -> Response<Body> {
        let hub = self.hubs.of(relayed).clone();
        let since = match query.version.as_deref() {
            None | Some("") | Some("0") => None,
            Some(text) => match text.parse::<u64>() {
                Ok(number) => Some(number),
                Err(_) => {
                    return status(
                        400,
                        "BadRequest",
                        &format!("resourceVersion: '{text}' is not one the relay gave"),
                    )
                }
            },
        };
        let started = {
            let mut hub = lock(&hub);
            match since {
                Some(since) => hub.watch(label, since),
                // No version: what exists now as ADDED, then every change (the
                // apiserver's "start at most recent").
                None => hub.list(label).and_then(|(items, version)| {
                    let (_, lines) = hub.watch(label, version)?;
                    let added = items.iter().map(|i| event_line("ADDED", i)).collect();
                    Ok((added, lines))
                }),
            }
        };
        let (missed, lines) = match started {
            Ok(started) => started,
            Err(Refused::Expired { asked, oldest }) => {
                return gone(&format!("too old resource version: {asked} ({oldest})"));
            }
            Err(Refused::Ahead { asked, version }) => {
                return gone(&format!(
                    "resource version {asked} is newer than this relay's ({version}): list again"
                ));
            }
            Err(refused) => return not_ready(relayed, &refused),
        };
        let lasts = query
            .timeout
            .filter(|t| !t.is_zero())
            .map_or(WATCH_LONGEST, |t| t.min(WATCH_LONGEST));
        let gauge = self
            .metrics
            .relay_watches
            .with_label_values(&[relayed.plural()]);
        gauge.inc();
        let open = WatchOpen {
            missed: missed.into(),
            lines,
            hub,
            relayed,
            ends: Instant::now() + lasts,
            bookmark: query
                .bookmarks
                .then(|| tokio::time::interval_at(Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY)),
            _counted: Counted(gauge),
        };
        let body = StreamBody::new(stream::unfold(open, WatchOpen::next));
        json_typed(Response::new(BodyExt::boxed(body)))
    }
}

/// An open watch: what it missed, then its lines and bookmarks until it ends.
struct WatchOpen {
    missed: VecDeque<Bytes>,
    lines: Lines,
    hub: Arc<Mutex<Hub>>,
    relayed: Relayed,
    ends: Instant,
    /// Asked for (`allowWatchBookmarks`).
    bookmark: Option<tokio::time::Interval>,
    _counted: Counted,
}

/// Takes one off `weft_relay_watches` when the watch ends.
struct Counted(prometheus::IntGauge);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl WatchOpen {
    async fn next(mut self) -> Option<(Result<Frame<Bytes>, Infallible>, WatchOpen)> {
        if let Some(line) = self.missed.pop_front() {
            return Some((Ok(Frame::data(line)), self));
        }
        loop {
            let line = tokio::select! {
                // Lines first: a bookmark never overtakes a change queued before it.
                biased;
                line = self.lines.recv() => line?,
                _ = tick(&mut self.bookmark) => match self.bookmark_line() {
                    Some(line) => line,
                    None => continue,
                },
                () = tokio::time::sleep_until(self.ends) => return None,
            };
            return Some((Ok(Frame::data(line)), self));
        }
    }

    /// A bookmark at the hub's version, when this watch has every change up to it:
    /// nothing queued, and not cut off (a change that did not fit was never queued,
    /// and a bookmark past it would let the client resume beyond it). The hub queues
    /// under its lock, so the check and the version agree.
    fn bookmark_line(&self) -> Option<Bytes> {
        let hub = lock(&self.hub);
        if !self.lines.is_empty() || self.lines.is_closed() {
            return None;
        }
        let object = format!(
            "{{\"apiVersion\":\"{}\",\"kind\":\"{}\",\"metadata\":{{\"resourceVersion\":\"{}\"}}}}",
            self.relayed.api_version(),
            self.relayed.kind(),
            hub.version()
        );
        Some(event_line("BOOKMARK", object.as_bytes()))
    }
}

/// The next bookmark tick; never, when bookmarks were not asked for.
async fn tick(bookmark: &mut Option<tokio::time::Interval>) {
    match bookmark {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// A watch that must list again: an ERROR event with a 410 `Status`, as the apiserver
/// sends one (its client relists on it).
fn gone(message: &str) -> Response<Body> {
    let status = status_json(410, "Expired", message);
    json(StatusCode::OK, event_line("ERROR", &status))
}

fn not_ready(relayed: Relayed, refused: &Refused) -> Response<Body> {
    status(
        503,
        "ServiceUnavailable",
        &format!(
            "the relay has not listed {} yet ({refused:?})",
            relayed.plural()
        ),
    )
}

/// A `Status` object, as the apiserver sends with a failed request.
fn status_json(code: u16, reason: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    }))
    .unwrap_or_default()
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(
        code,
        Bytes::from(status_json(code.as_u16(), reason, message)),
    )
}

fn json(code: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = json_typed(Response::new(BodyExt::boxed(Full::new(body))));
    *response.status_mut() = code;
    response
}

/// `response`, said to be JSON.
fn json_typed(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
