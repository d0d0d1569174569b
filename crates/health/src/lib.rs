//! What weftd and weft-controller share to be observed: the HTTP endpoint (/metrics,
//! /healthz and /readyz over HTTP/1.1 on every listen address), the limits that keep it
//! and its process standing under a connection flood ([`limits`]), and registering
//! their Prometheus metrics.
#![forbid(unsafe_code)]

mod limits;

pub use limits::{
    raise_fd_limit, Admission, Admitted, Refusal, CONNECTION_LIFETIME, HEADER_READ_TIMEOUT,
    MAX_CONNECTIONS, MAX_PER_SOURCE,
};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{Encoder, Registry, TextEncoder};
use socket2::{Domain, Socket, Type};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

/// Registers `metric` in `registry` and hands it back for use.
pub fn register<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: T,
) -> Result<T, prometheus::Error> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// The registry in the Prometheus text exposition format.
fn render(registry: &Registry) -> Vec<u8> {
    let mut out = Vec::new();
    // Encoding into a Vec cannot fail for well-formed metrics.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    out
}

/// Binds `addr` for `--metrics-addr`. An IPv6 wildcard also takes IPv4 (IPV6_V6ONLY
/// off), so `[::]:PORT` listens on both families whatever the host's bindv6only says.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    bind_as("--metrics-addr", addr, Sharing::Alone)
}

/// Whether other processes of this user may listen on the same address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Alone,
    /// SO_REUSEPORT: the kernel spreads new connections over the listeners, and one
    /// that stops leaves the others serving (socket(7)).
    Shared,
}

/// [`bind`] for another flag, errors naming it.
pub fn bind_as(flag: &str, addr: SocketAddr, sharing: Sharing) -> Result<TcpListener, String> {
    let fail = |e: std::io::Error| format!("{flag}: cannot listen on {addr}: {e}");
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(fail)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).map_err(fail)?;
    }
    socket.set_reuse_address(true).map_err(fail)?;
    if sharing == Sharing::Shared {
        socket.set_reuse_port(true).map_err(fail)?;
    }
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(128).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    TcpListener::from_std(socket.into()).map_err(fail)
}

/// Serves `/metrics` from `registry` until the process ends, within the [`limits`]
/// caps: [`MAX_PER_SOURCE`] connections per source address, [`MAX_CONNECTIONS`] in
/// all, [`HEADER_READ_TIMEOUT`] to send a request head, [`CONNECTION_LIFETIME`] in all.
pub async fn serve(listener: TcpListener, registry: Registry, ready: Arc<AtomicBool>) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "metrics listening");
    }
    let mut connections = Acceptor::new(
        listener,
        Admission::new(MAX_PER_SOURCE, MAX_CONNECTIONS),
        "metrics",
    );
    loop {
        let (stream, _, place) = connections.next().await;
        tokio::spawn(connection(stream, place, registry.clone(), ready.clone()));
    }
}

/// One client connection, HTTP/1.1 with keep-alive, until it ends or times out.
async fn connection(
    stream: TcpStream,
    place: Admitted,
    registry: Registry,
    ready: Arc<AtomicBool>,
) {
    let service = hyper::service::service_fn(move |req| {
        let response = route(&req, &registry, &ready);
        async move { Ok::<_, std::convert::Infallible>(response) }
    });
    let serving = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_LIFETIME, serving).await {
        Ok(Err(e)) => debug!(error = %e, "metrics connection ended"),
        Err(_) => debug!("metrics connection outlived {CONNECTION_LIFETIME:?}"),
        Ok(Ok(())) => {}
    }
    drop(place);
}

/// Accepts connections within an [`Admission`]'s caps, backing off when accepting fails.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    admission: Admission,
    backoff: AcceptBackoff,
}

impl Acceptor {
    /// Connections on `listener` for the listener `what` (`metrics`, `relay`: in logs).
    pub fn new(listener: TcpListener, admission: Admission, what: &'static str) -> Acceptor {
        Acceptor {
            listener,
            admission,
            backoff: AcceptBackoff::new(what),
        }
    }

    /// The next connection within the caps, with its peer and its place. One over a cap
    /// is closed at once, so it never waits in the backlog ahead of one within them.
    pub async fn next(&mut self) -> (TcpStream, SocketAddr, Admitted) {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => {
                    self.backoff.reset();
                    accepted
                }
                Err(e) => {
                    self.backoff.wait(&e).await;
                    continue;
                }
            };
            match self.admission.admit(peer.ip()) {
                Ok(place) => return (stream, peer, place),
                Err(refusal) => {
                    debug!(%peer, ?refusal, listener = self.backoff.what, "connection refused");
                }
            }
        }
    }
}

/// Waits after a failed accept. Running out of file descriptors or memory (EMFILE,
/// ENFILE, ENOBUFS, ENOMEM) fails every accept until something closes, so those double
/// the wait up to a second instead of spinning a core; anything else (a connection
/// reset before it was accepted) waits the minimum.
#[derive(Debug)]
struct AcceptBackoff {
    wait: Duration,
    /// The listener, in what is logged.
    what: &'static str,
}

const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

impl AcceptBackoff {
    fn new(what: &'static str) -> AcceptBackoff {
        AcceptBackoff {
            wait: ACCEPT_BACKOFF_MIN,
            what,
        }
    }

    fn reset(&mut self) {
        self.wait = ACCEPT_BACKOFF_MIN;
    }

    async fn wait(&mut self, error: &std::io::Error) {
        use nix::errno::Errno;
        let exhausted = matches!(
            error.raw_os_error().map(Errno::from_raw),
            Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
        );
        if !exhausted {
            debug!(%error, listener = self.what, "accept failed");
            tokio::time::sleep(ACCEPT_BACKOFF_MIN).await;
            return;
        }
        warn!(%error, listener = self.what, wait = ?self.wait, "accept failed: out of resources, backing off");
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(ACCEPT_BACKOFF_MAX);
    }
}

fn route(
    req: &Request<Incoming>,
    registry: &Registry,
    ready: &AtomicBool,
) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    match req.uri().path() {
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(render(registry))));
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(to).await.unwrap()
    }

    /// Reads until the server closes; the time that took from `since`.
    async fn closed_after(mut stream: TcpStream, since: std::time::Instant) -> Duration {
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink).await;
        since.elapsed()
    }

    #[tokio::test]
    async fn silent_and_trickling_clients_are_cut_at_the_header_timeout() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            Registry::new(),
            Arc::new(AtomicBool::new(true)),
        ));
        let started = std::time::Instant::now();
        let silent = connect_from("127.0.0.1", addr).await;
        // Slowloris: a request head one byte a second, never finished.
        let mut trickle = connect_from("127.0.0.1", addr).await;
        let trickling = tokio::spawn(async move {
            for byte in b"GET /metrics HTTP/1.1\r\nhost: x\r\nx-slow: "
                .iter()
                .cycle()
            {
                if trickle.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            trickle
        });
        // Kept alive after one answered request, then silent.
        let mut kept = connect_from("127.0.0.1", addr).await;
        kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let bound = HEADER_READ_TIMEOUT + Duration::from_secs(3);
        for (what, stream) in [("silent", silent), ("kept alive", kept)] {
            let took = tokio::time::timeout(bound, closed_after(stream, started))
                .await
                .unwrap_or_else(|_| panic!("a {what} connection outlived {bound:?}"));
            assert!(
                took >= HEADER_READ_TIMEOUT - Duration::from_secs(1),
                "{what}: {took:?}"
            );
        }
        tokio::time::timeout(Duration::from_secs(3), trickling)
            .await
            .expect("a trickling request head outlived the header timeout")
            .unwrap();
    }

    #[tokio::test]
    async fn a_source_holding_idle_connections_does_not_starve_another() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let registry = Registry::new();
        tokio::spawn(serve(listener, registry, Arc::new(AtomicBool::new(true))));
        let mut idle = Vec::new();
        for _ in 0..MAX_PER_SOURCE + 50 {
            idle.push(connect_from("127.0.0.1", addr).await);
        }
        // Those over the cap are closed at once: reading them ends.
        let mut closed = 0;
        for stream in &mut idle {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte));
            if let Ok(Ok(0)) = read.await {
                closed += 1;
            }
        }
        assert_eq!(closed, 50);
        let mut scrape = connect_from("127.0.0.2", addr).await;
        scrape
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(2), scrape.read_to_string(&mut answer))
            .await
            .expect("the second source was starved")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}
