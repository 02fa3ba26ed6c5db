//! Inbound side: accept connections (up to a limit), read each stream's
//! hello, authorize it against the certificate identity, and hand peer
//! messages and requests to the application.
//!
//! Every task here selects on the shutdown signal wherever it could wait,
//! and holds a clone of the task guard so that shutdown can wait for all of
//! them (the mini-redis pattern).

use super::admission::{self, Admission, Admit};
use super::budget::{BudgetError, RequestBudgets, Reservation};
use super::codec::{encode_frame, read_frame, read_frame_body, read_frame_length, FrameError};
use super::link::Links;
use super::quic::{connection_identity, node_of};
use super::request::{Answer, InboundRequest, RequestOrigin, Responder};
use super::wire::{Hello, HELLO_LIMIT};
use super::{codes, TransportConfig};
use crate::metrics::RefusalReason;
use crate::raft::types::NodeId;
use certs::Identity;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, PoisonError};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

/// What the inbound tasks share.
pub(crate) struct InboundContext<M, Req, Resp> {
    pub(crate) config: Arc<TransportConfig>,
    /// Peer messages for the runtime; bounded so that a slow runtime pushes
    /// back on the senders through QUIC flow control instead of growing.
    pub(crate) peer_messages: mpsc::Sender<(NodeId, M)>,
    /// Requests for the application; bounded for the same reason.
    pub(crate) requests: mpsc::Sender<InboundRequest<Req, Resp>>,
    /// Bytes of requests in flight, by kind of caller and by identity.
    pub(crate) budgets: RequestBudgets,
    /// Handshake and connection slots.
    pub(crate) admission: Admission,
    /// Which node identities may connect (see [`Trust`]).
    pub(crate) trust: watch::Receiver<Trust>,
    /// The known peers, so that a connection a peer dialled becomes the
    /// pair's connection once the peer opens its peer stream on it.
    pub(crate) links: Links,
    /// Flips to `true` when the transport shuts down.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Never sent on: dropped by each task when it ends, so the transport
    /// knows when all are gone.
    pub(crate) _task_guard: mpsc::Sender<()>,
}

/// A refusal of one stream: the code sent to the peer and a reason for the
/// log.
type Refusal = (u32, String);

/// Which node certificates may connect: `None` for any node the CA signed,
/// or exactly these node ids (the members of the configuration in force;
/// SPEC §13, trust follows membership). Client and admin certificates are
/// not affected.
pub(crate) type Trust = Option<Arc<BTreeSet<NodeId>>>;

/// Whether `identity` may keep a connection under `trust`.
fn trusted(identity: &Identity, trust: &Trust) -> bool {
    match (node_of(identity), trust) {
        (Some(node), Some(members)) => members.contains(&node),
        _ => true,
    }
}

/// Runs `future` unless shutdown begins first.
async fn unless_shutdown<T>(
    shutdown: &mut watch::Receiver<bool>,
    future: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        value = future => Some(value),
        _ = shutdown.changed() => None,
    }
}

fn frame_error_code(error: &FrameError) -> u32 {
    match error {
        FrameError::TooLarge { .. } => codes::FRAME_TOO_LARGE,
        FrameError::Malformed(_) | FrameError::Truncated | FrameError::Io(_) => {
            codes::MALFORMED_FRAME
        }
    }
}

/// Accepts connections until shutdown, deciding for each arrival at once
/// (see [`Admission`]): a QUIC Retry when handshakes pile up, a refusal
/// before any TLS work when no slot is left, or a handshake on its own task.
pub(crate) async fn run_accept_loop<M, Req, Resp>(
    endpoint: quinn::Endpoint,
    context: Arc<InboundContext<M, Req, Resp>>,
) where
    M: DeserializeOwned + Send + 'static,
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    let mut shutdown = context.shutdown.clone();
    while let Some(Some(incoming)) = unless_shutdown(&mut shutdown, endpoint.accept()).await {
        let remote = incoming.remote_address();
        match context
            .admission
            .admit(remote, incoming.remote_address_validated())
        {
            Admit::Handshake(permit) => {
                tokio::spawn(serve_connection(incoming, context.clone(), permit));
            }
            Admit::Retry => {
                tracing::debug!(%remote, "asking for address validation (QUIC Retry)");
                // `retry` fails only for a packet that already carries a
                // Retry token, which `admit` never sends here.
                if let Err(error) = incoming.retry() {
                    error.into_incoming().ignore();
                }
            }
            Admit::Refuse(reason) => {
                tracing::warn!(%remote, reason, "refusing a connection");
                context.config.metrics.connection_refused(match reason {
                    admission::CONNECTION_LIMIT => RefusalReason::ConnectionLimit,
                    _ => RefusalReason::HandshakeLimit,
                });
                incoming.refuse();
            }
        }
    }
}

/// Runs the handshake of `incoming` within the handshake timeout, holding
/// `handshake` only until then, and returns the connection with its
/// identity.
async fn handshake(
    incoming: quinn::Incoming,
    config: &TransportConfig,
    handshake: OwnedSemaphorePermit,
) -> Option<(quinn::Connection, Identity)> {
    let remote = incoming.remote_address();
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(error) => {
            tracing::warn!(%remote, %error, "handshake refused");
            config
                .metrics
                .connection_refused(RefusalReason::HandshakeFailed);
            return None;
        }
    };
    // Dropping a handshake that timed out closes it: its slot goes back.
    let finished = tokio::time::timeout(config.handshake_timeout, connecting).await;
    drop(handshake);
    let connection = match finished {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            tracing::warn!(%remote, %error, "handshake refused");
            config
                .metrics
                .connection_refused(RefusalReason::HandshakeFailed);
            return None;
        }
        Err(_) => {
            tracing::debug!(%remote, "handshake not finished in time; dropped");
            return None;
        }
    };
    match connection_identity(&connection) {
        Ok(identity) => Some((connection, identity)),
        Err(reason) => {
            tracing::warn!(%remote, %reason, "closing a connection without a usable identity");
            config
                .metrics
                .connection_refused(RefusalReason::BadIdentity);
            connection.close(
                quinn::VarInt::from_u32(codes::BAD_IDENTITY),
                b"bad identity",
            );
            None
        }
    }
}

async fn serve_connection<M, Req, Resp>(
    incoming: quinn::Incoming,
    context: Arc<InboundContext<M, Req, Resp>>,
    handshake_slot: OwnedSemaphorePermit,
) where
    M: DeserializeOwned + Send + 'static,
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    let mut shutdown = context.shutdown.clone();
    let shaken = handshake(incoming, &context.config, handshake_slot);
    let Some(Some((connection, identity))) = unless_shutdown(&mut shutdown, shaken).await else {
        return;
    };
    serve_established(connection, Arc::new(identity), context, Dialled::ByThem).await;
}

/// Who dialled a connection being served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialled {
    /// It arrived at the accept loop: it takes a connection slot.
    ByThem,
    /// This node dialled a peer; the peer opens its streams on it too.
    ByUs,
}

/// Serves the streams the other side opens on an established connection,
/// accepted or dialled, until it ends, shutdown begins, or its node
/// certificate stops being trusted.
pub(crate) async fn serve_established<M, Req, Resp>(
    connection: quinn::Connection,
    identity: Arc<Identity>,
    context: Arc<InboundContext<M, Req, Resp>>,
    dialled: Dialled,
) where
    M: DeserializeOwned + Send + 'static,
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    let remote = connection.remote_address();
    let mut shutdown = context.shutdown.clone();
    let mut trust = context.trust.clone();
    if !trusted(&identity, &trust.borrow_and_update()) {
        context
            .config
            .metrics
            .connection_refused(RefusalReason::NotMember);
        refuse_stranger(&connection, remote, &identity);
        return;
    }
    // Held for the life of the connection.
    let _slot = match dialled {
        Dialled::ByUs => None,
        Dialled::ByThem => {
            let Some(slot) = context.admission.connection_slot(&identity) else {
                tracing::warn!(%remote, %identity, "connection limit reached; closing");
                context
                    .config
                    .metrics
                    .connection_refused(RefusalReason::ConnectionLimit);
                connection.close(
                    quinn::VarInt::from_u32(codes::BUSY),
                    b"connection limit reached",
                );
                return;
            };
            Some(slot)
        }
    };
    tracing::debug!(%remote, %identity, ?dialled, "serving a connection");
    loop {
        tokio::select! {
            changed = trust.changed() => {
                if changed.is_err() || !trusted(&identity, &trust.borrow_and_update()) {
                    if changed.is_ok() {
                        context.config.metrics.connection_refused(RefusalReason::NotMember);
                    }
                    refuse_stranger(&connection, remote, &identity);
                    return;
                }
            }
            stream = connection.accept_uni() => match stream {
                Ok(receive) => {
                    tokio::spawn(serve_peer_stream(context.clone(), identity.clone(), connection.clone(), receive));
                }
                Err(error) => {
                    tracing::debug!(%remote, %identity, %error, "connection ended");
                    return;
                }
            },
            stream = connection.accept_bi() => match stream {
                Ok((send, receive)) => {
                    tokio::spawn(serve_request_stream(context.clone(), identity.clone(), send, receive));
                }
                Err(error) => {
                    tracing::debug!(%remote, %identity, %error, "connection ended");
                    return;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Closes the connection of a node certificate that is not (or no longer)
/// a member: the CA signed it, but the cluster does not count it in.
fn refuse_stranger(
    connection: &quinn::Connection,
    remote: std::net::SocketAddr,
    identity: &Identity,
) {
    tracing::warn!(%remote, %identity, "refusing a node that is not a member of the cluster");
    connection.close(
        quinn::VarInt::from_u32(codes::UNAUTHORIZED),
        b"not a member of the cluster",
    );
}

/// Runs one read of a new stream within the read timeout; errors become
/// refusals naming `what` was being read.
async fn within<T>(
    config: &TransportConfig,
    what: &str,
    read: impl Future<Output = Result<T, FrameError>>,
) -> Result<T, Refusal> {
    match tokio::time::timeout(config.read_timeout, read).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err((frame_error_code(&error), format!("bad {what}: {error}"))),
        Err(_) => Err((codes::TIMEOUT, format!("no {what} in time"))),
    }
}

/// Reads the hello of a new stream within the read timeout.
async fn read_hello(
    receive: &mut quinn::RecvStream,
    config: &TransportConfig,
) -> Result<Hello, Refusal> {
    within(
        config,
        "hello",
        read_frame::<Hello, _>(receive, HELLO_LIMIT),
    )
    .await?
    .ok_or_else(|| {
        (
            codes::MALFORMED_FRAME,
            "stream ended before its hello".into(),
        )
    })
}

/// Checks that a peer stream's hello names the node of the certificate.
fn authorize_peer(identity: &Identity, hello: Hello) -> Result<NodeId, Refusal> {
    match (hello, node_of(identity)) {
        (Hello::Peer { from }, Some(node)) if node == from => Ok(from),
        (Hello::Peer { from }, _) => Err((
            codes::UNAUTHORIZED,
            format!("certificate does not speak for {from}"),
        )),
        (other, _) => Err((
            codes::UNAUTHORIZED,
            format!("{other:?} hello on a unidirectional stream"),
        )),
    }
}

async fn serve_peer_stream<M, Req, Resp>(
    context: Arc<InboundContext<M, Req, Resp>>,
    identity: Arc<Identity>,
    connection: quinn::Connection,
    mut receive: quinn::RecvStream,
) where
    M: DeserializeOwned + Send + 'static,
{
    let mut shutdown = context.shutdown.clone();
    let hello = unless_shutdown(&mut shutdown, read_hello(&mut receive, &context.config)).await;
    let from = match hello.map(|hello| hello.and_then(|hello| authorize_peer(&identity, hello))) {
        Some(Ok(from)) => from,
        Some(Err((code, reason))) => {
            tracing::warn!(peer = %identity, %reason, "refusing a peer stream");
            let _ = receive.stop(quinn::VarInt::from_u32(code));
            return;
        }
        None => return,
    };
    // The peer sends on this connection: from now on so does this node,
    // unless the pair keeps another (see `PeerLink::offer`).
    let link = context
        .links
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&from)
        .cloned();
    if let Some(link) = link {
        link.offer(&connection);
    }
    let limit = context.config.max_peer_frame;
    loop {
        let frame = unless_shutdown(&mut shutdown, read_frame::<M, _>(&mut receive, limit)).await;
        match frame {
            Some(Ok(Some(message))) => {
                let delivered =
                    unless_shutdown(&mut shutdown, context.peer_messages.send((from, message)))
                        .await;
                if !matches!(delivered, Some(Ok(()))) {
                    return;
                }
            }
            Some(Ok(None)) | None => return,
            // The peer went away (it shut down, restarted, or the network
            // dropped the connection): nothing was malformed, and the
            // connection's own loss is reported where it is tracked.
            Some(Err(FrameError::Io(error))) => {
                tracing::debug!(peer = %identity, %error, "a peer stream ended with its connection");
                return;
            }
            Some(Err(error)) => {
                tracing::warn!(peer = %identity, %error, "closing a peer stream after a bad frame");
                let _ = receive.stop(quinn::VarInt::from_u32(frame_error_code(&error)));
                return;
            }
        }
    }
}

/// Decides who a request stream acts for, from its hello and the
/// certificate identity.
fn authorize_request(identity: &Identity, hello: Hello) -> Result<RequestOrigin, Refusal> {
    match hello {
        Hello::Request => Ok(RequestOrigin::Direct(identity.clone())),
        Hello::Forwarded { client } => {
            let by = node_of(identity).ok_or((
                codes::UNAUTHORIZED,
                "only nodes may forward requests".to_string(),
            ))?;
            let client = Identity::from_uri(&client)
                .map_err(|error| (codes::UNAUTHORIZED, error.to_string()))?;
            if client.node_id().is_some() {
                return Err((
                    codes::UNAUTHORIZED,
                    "a forwarded request cannot act for a node".into(),
                ));
            }
            Ok(RequestOrigin::Forwarded { by, client })
        }
        Hello::Peer { .. } => Err((codes::UNAUTHORIZED, "peer hello on a request stream".into())),
    }
}

/// Reads and authorizes a request. Nodes may send requests up to the peer
/// frame limit, everyone else up to the client one, and nobody more than
/// its budget (see [`RequestBudgets`]). Each read has the read timeout, and
/// waiting for budget has the budget wait: past it the request is refused
/// as busy rather than left waiting.
async fn accept_request<Req: DeserializeOwned>(
    config: &TransportConfig,
    budgets: &RequestBudgets,
    identity: &Identity,
    receive: &mut quinn::RecvStream,
) -> Result<(RequestOrigin, Req, Reservation), Refusal> {
    let origin = authorize_request(identity, read_hello(receive, config).await?)?;
    let frame_limit = match node_of(identity) {
        Some(_) => config.max_peer_frame,
        None => config.max_client_frame,
    };
    let limit = frame_limit.min(budgets.limit(identity));
    let length = within(config, "request", read_frame_length(receive, limit))
        .await?
        .ok_or_else(|| {
            (
                codes::MALFORMED_FRAME,
                "stream ended before the request".into(),
            )
        })?;
    let reservation = budgets
        .reserve(identity, length)
        .await
        .map_err(|error| match error {
            BudgetError::Busy => (codes::BUSY, error.to_string()),
            BudgetError::TooLarge { .. } => (codes::FRAME_TOO_LARGE, error.to_string()),
        })?;
    let request = within(config, "request", read_frame_body(receive, length)).await?;
    Ok((origin, request, reservation))
}

async fn serve_request_stream<M, Req, Resp>(
    context: Arc<InboundContext<M, Req, Resp>>,
    identity: Arc<Identity>,
    mut send: quinn::SendStream,
    mut receive: quinn::RecvStream,
) where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
{
    let mut shutdown = context.shutdown.clone();
    let accepted = unless_shutdown(
        &mut shutdown,
        accept_request::<Req>(&context.config, &context.budgets, &identity, &mut receive),
    )
    .await;
    // The reservation is held until this function returns: after the
    // response is written or the request is abandoned.
    let (origin, request, _reservation) = match accepted {
        Some(Ok(accepted)) => accepted,
        Some(Err((code, reason))) => {
            tracing::warn!(caller = %identity, %reason, "refusing a request stream");
            let _ = receive.stop(quinn::VarInt::from_u32(code));
            let _ = send.reset(quinn::VarInt::from_u32(code));
            return;
        }
        None => return,
    };
    let (responder, response) = Responder::new();
    let inbound = InboundRequest {
        origin,
        request,
        responder,
    };
    let answered = match unless_shutdown(&mut shutdown, context.requests.send(inbound)).await {
        Some(Ok(())) => unless_shutdown(&mut shutdown, response).await,
        _ => None,
    };
    let Some(Ok(answer)) = answered else {
        let _ = send.reset(quinn::VarInt::from_u32(codes::NO_RESPONSE));
        return;
    };
    let limit = context.config.max_peer_frame;
    let written = match answer {
        Answer::Single(response) => write_response(&mut send, response, limit).await,
        Answer::Stream(frames) => write_streamed(&mut send, frames, limit, &mut shutdown).await,
    };
    match written {
        Ok(()) => {
            let _ = send.finish();
        }
        Err(error) => {
            tracing::warn!(caller = %identity, %error, "cannot send a response");
            let _ = send.reset(quinn::VarInt::from_u32(codes::NO_RESPONSE));
        }
    }
}

/// Writes one response frame.
async fn write_response<Resp: Serialize>(
    send: &mut quinn::SendStream,
    response: Resp,
    limit: usize,
) -> Result<(), FrameError> {
    // Encoding in a function of its own keeps `response` out of the await,
    // so `Resp` need not be `Sync`.
    let frame = encode(response, limit)?;
    send.write_all(&frame)
        .await
        .map_err(|error| FrameError::Io(error.into()))
}

fn encode<Resp: Serialize>(response: Resp, limit: usize) -> Result<Vec<u8>, FrameError> {
    encode_frame(&response, limit)
}

/// Writes the frames of a streamed answer as the application produces
/// them, until it drops its sender. Shutdown cuts the answer short: the
/// stream is then reset, so the caller sees an incomplete answer as an
/// error, never as a shorter complete one. Returning drops `frames`, which
/// tells a producer still sending that nobody reads any more.
async fn write_streamed<Resp: Serialize>(
    send: &mut quinn::SendStream,
    mut frames: mpsc::Receiver<Resp>,
    limit: usize,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), FrameError> {
    loop {
        match unless_shutdown(shutdown, frames.recv()).await {
            Some(Some(frame)) => write_response(send, frame, limit).await?,
            Some(None) => return Ok(()),
            None => {
                return Err(FrameError::Io(std::io::Error::other(
                    "the node is shutting down",
                )))
            }
        }
    }
}
