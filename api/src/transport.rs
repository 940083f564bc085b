//! The server's connections and what bounds them.
//!
//! `axum::serve` has no header, body or request timeout and no connection
//! cap: a few hundred sockets that send half a request hold the server. So
//! the server runs its own accept loop on hyper's HTTP/1 connection
//! (`hyper::server::conn::http1`, with its header-read timeout, which also
//! closes idle keep-alive connections) and hyper-util's graceful shutdown,
//! and bounds connections with a semaphore (the total: further connections
//! wait in the kernel's backlog until a place frees) and a count per client
//! address (further connections of that address are closed at once). The
//! router gets tower-http's whole-request timeout and a per-read body
//! timeout, both answered 408 `request_timeout`; and every refusal the
//! framework makes itself (a path or query that does not parse, a method a
//! route does not have, a timeout) is turned into the same problem+json as
//! the handlers' refusals.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::edge::Settings;

/// How long the accept loop pauses after an accept error (out of file
/// descriptors, say), so it does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// The longest detail taken from a framework refusal's text.
const DETAIL_CHARS_MAX: usize = 300;
/// The most of a framework refusal's body read to make its detail (axum's
/// are one line).
const REFUSAL_BODY_BYTES_MAX: usize = 4096;

/// Connections open per client address (an IPv6 client by its /64, as the
/// rate limits count). Entries exist only while a connection is open, so
/// the map never holds more than the connection cap.
struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
    max: usize,
}

/// A connection's place in [`PerAddress`], given back when dropped.
struct Place {
    counts: Arc<PerAddress>,
    address: IpAddr,
}

impl PerAddress {
    fn enter(counts: &Arc<Self>, address: IpAddr) -> Option<Place> {
        let mut open = counts.open.lock().expect("the per-address count is never poisoned");
        let count = open.entry(address).or_insert(0);
        if *count >= counts.max {
            return None;
        }
        *count += 1;
        Some(Place { counts: counts.clone(), address })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().expect("the per-address count is never poisoned");
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the
/// open connections finish (for at most the request timeout). Handlers see
/// the peer as `ConnectInfo<SocketAddr>`. A peer in `exempt` (a trusted
/// proxy, which carries many clients) is not held to the per-address cap.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: &Settings,
    exempt: impl Fn(IpAddr) -> bool,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let places = Arc::new(Semaphore::new(settings.connections_max));
    let per_address = Arc::new(PerAddress { open: Mutex::default(), max: settings.connections_per_address_max });
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(settings.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        // A place first: while all are taken, nothing is accepted and new
        // connections wait in the listen backlog.
        let place = tokio::select! {
            place = places.clone().acquire_owned() => place.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let address_place = if exempt(peer.ip()) {
            None
        } else {
            match PerAddress::enter(&per_address, crate::address::limit_key(peer.ip())) {
                Some(place) => Some(place),
                // Closed at once (dropping the stream), and its place freed.
                None => continue,
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            tower::Service::call(&mut router.clone(), request)
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection closed");
            }
            drop((place, address_place));
        });
    }
    drop(listener);
    if tokio::time::timeout(settings.request_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open at shutdown were cut off");
    }
    Ok(())
}

/// The whole-request and body timeouts, around every route.
pub fn layers<S: Clone + Send + Sync + 'static>(router: Router<S>, settings: &Settings) -> Router<S> {
    let request_timeout =
        tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, settings.request_timeout);
    router.layer(axum::middleware::from_fn_with_state(settings.body_read_timeout, body_timeout)).layer(request_timeout)
}

/// A problem+json answer with a code, as `ApiError`'s.
pub fn problem(status: StatusCode, code: &'static str, detail: String) -> Response {
    #[derive(serde::Serialize)]
    struct Extensions {
        code: &'static str,
    }
    problem_details::ProblemDetails::from_status_code(status)
        .with_detail(detail)
        .with_extensions(Extensions { code })
        .into_response()
}

/// Middleware: a request body that pauses longer than the body timeout
/// ends the request with 408 `request_timeout`, whatever the handler made
/// of the failed read (tower-http's `TimeoutBody` notices; the flag tells
/// this layer it was the timeout and not, say, a too-large body).
async fn body_timeout(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = timed_out.clone();
    let request = request.map(|body| {
        let body = tower_http::timeout::TimeoutBody::new(timeout, body).map_err(move |error| {
            if error.is::<tower_http::timeout::TimeoutError>() {
                flag.store(true, Ordering::Relaxed);
            }
            error
        });
        Body::new(body)
    });
    let response = next.run(request).await;
    if timed_out.load(Ordering::Relaxed) {
        let detail = format!("the request body paused for more than {} s", timeout.as_secs());
        return problem(StatusCode::REQUEST_TIMEOUT, "request_timeout", detail);
    }
    response
}

/// The code of a refusal the framework made, by its status.
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        status if status.is_client_error() => "bad_request",
        _ => "internal",
    }
}

/// Middleware: an error answer that is not JSON (axum's rejections of a
/// path or query, its 405 for a method a route lacks, tower-http's
/// timeout) becomes problem+json with the code of its status, keeping its
/// headers (`Allow`, `Retry-After`) and its text as the detail. Handlers'
/// own answers (problem+json, or JSON such as `/ready`'s) pass unchanged.
pub async fn problems(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let json = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        let v = v.to_ascii_lowercase();
        // The portal's HTML error pages (`/portal`) are answers of their own.
        v.starts_with("application/json") || v.starts_with("application/problem+json") || v.starts_with("text/html")
    });
    if !(status.is_client_error() || status.is_server_error()) || json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match http_body_util::Limited::new(body, REFUSAL_BODY_BYTES_MAX).collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).trim().to_owned(),
        Err(_) => String::new(),
    };
    let detail = match text.as_str() {
        "" if status == StatusCode::METHOD_NOT_ALLOWED => "this route does not take that method".to_owned(),
        "" if status == StatusCode::REQUEST_TIMEOUT => "the request did not complete in time".to_owned(),
        "" => status.canonical_reason().unwrap_or("refused").to_owned(),
        text => text.chars().take(DETAIL_CHARS_MAX).collect(),
    };
    let mut answer = problem(status, code_of(status), detail);
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &parts.headers {
        answer.headers_mut().insert(name.clone(), value.clone());
    }
    answer
}

/// Sets `Retry-After` (whole seconds) on an answer.
pub fn retry_after(mut response: Response, seconds: u64) -> Response {
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// 429 `rate_limited` with `Retry-After`.
pub fn rate_limited(seconds: u64, detail: &str) -> Response {
    crate::error::ApiError::RateLimited { limit: None, retry_after_seconds: seconds, message: detail.to_owned() }
        .into_response()
}

/// Ctrl-C or SIGTERM, heard by every listener. The handlers are installed
/// when it is made: a signal is never met by the default action (death
/// mid-start) once `serve` has begun.
#[derive(Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let (requested, heard) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            requested.send_replace(true);
        });
        Ok(Self(heard))
    }

    pub async fn requested(mut self) {
        // An error means the sender is gone, which happens only after a send.
        let _ = self.0.wait_for(|requested| *requested).await;
    }
}
