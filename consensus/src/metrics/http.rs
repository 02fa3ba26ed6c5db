//! The metrics listener: `GET /metrics` and `GET /health` over HTTP/1.1.
//!
//! It must never be able to take the node down, so every resource it uses
//! is bounded, as in mini-redis's listener:
//!
//! - a semaphore of [`MAX_HTTP_CONNECTIONS`] permits: a connection that
//!   finds none is closed at once instead of queueing;
//! - a header read timeout, so a client that opens a connection and sends
//!   nothing (or one byte a minute) gives its permit back;
//! - a lifetime limit per connection, so a keep-alive client cannot hold a
//!   permit for ever;
//! - accept and connection errors are logged and the loop goes on; the
//!   handler does no I/O besides `/proc` reads and cannot panic on input.

use super::{Health, Metrics};
use crate::node::NodeStatus;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Most HTTP connections served at once; Prometheus uses one per scrape
/// target, an operator's curl another.
pub const MAX_HTTP_CONNECTIONS: usize = 16;

/// A client must send its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection is closed after this long, kept alive or not.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Pause after a failed `accept` (out of descriptors, say) before the next,
/// so a persistent failure does not spin a core.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The node's current status, asked for at each `/health` request.
pub type StatusSource = Arc<dyn Fn() -> NodeStatus + Send + Sync>;

/// Why the metrics listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address could not be bound (in use, not local, no permission).
    #[error("cannot listen for metrics on {address}: {source}")]
    Bind {
        /// The `[metrics] listen` address.
        address: SocketAddr,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// Binds `address` and returns the address bound (for port 0, the one
/// chosen) and the future that serves `/metrics` and `/health` on it until
/// it is dropped (the node aborts its task at shutdown). Only binding can
/// fail; once listening, errors are logged and served around.
pub async fn serve(
    address: SocketAddr,
    metrics: Metrics,
    status: StatusSource,
) -> Result<(SocketAddr, impl std::future::Future<Output = ()>), HttpError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| HttpError::Bind { address, source })?;
    let bound = listener.local_addr().unwrap_or(address);
    tracing::info!("metrics and health served on http://{bound}/metrics and /health");
    Ok((bound, accept_loop(listener, metrics, status)))
}

async fn accept_loop(listener: TcpListener, metrics: Metrics, status: StatusSource) {
    let permits = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!("metrics listener: accept failed: {error}");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%remote, "metrics listener: connection limit reached; closing");
            drop(stream);
            continue;
        };
        let metrics = metrics.clone();
        let status = status.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = respond(&request, &metrics, &status);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%remote, "metrics listener: connection ended: {error}")
                }
                Err(_) => tracing::debug!(%remote, "metrics listener: connection lifetime over"),
            }
            drop(permit);
        });
    }
}

/// The answer to one request; see the module documentation.
fn respond(
    request: &Request<Incoming>,
    metrics: &Metrics,
    status: &StatusSource,
) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if !matches!(path, "/metrics" | "/health") {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: try /metrics or /health\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if path == "/metrics" {
        let mut response = Response::new(Full::new(Bytes::from(metrics.encode())));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        return response;
    }
    let health = Health::of(&status());
    let mut response = Response::new(Full::new(Bytes::from(health.to_json())));
    *response.status_mut() =
        StatusCode::from_u16(health.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn plain(code: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = code;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
