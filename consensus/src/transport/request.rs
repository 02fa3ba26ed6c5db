//! Requests: one bidirectional stream per request, a request frame up and a
//! response frame down.

use super::codec::{read_frame, write_frame, FrameError};
use super::wire::{Hello, HELLO_LIMIT};
use super::TransportError;
use crate::raft::types::NodeId;
use certs::Identity;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

/// Who is asking, as verified by the transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOrigin {
    /// The caller opened the stream itself; this is its certificate
    /// identity (a client, an admin, or a node making a node-to-node RPC).
    Direct(Identity),
    /// Node `by` forwarded a request on behalf of `client`, whom it
    /// authenticated. Accepted only from node certificates, and `client` is
    /// never a node identity.
    Forwarded {
        /// The forwarding node (its certificate identity).
        by: NodeId,
        /// The client the request is for.
        client: Identity,
    },
}

impl RequestOrigin {
    /// The identity the request acts for: the direct caller, or the client a
    /// node forwarded for. Authorization of secrets uses this.
    pub fn acting_for(&self) -> &Identity {
        match self {
            RequestOrigin::Direct(identity) => identity,
            RequestOrigin::Forwarded { client, .. } => client,
        }
    }

    /// The calling node, if a node certificate opened this stream directly.
    /// Node-to-node RPCs (2PC Vote/Decide) must be refused when this is
    /// `None`.
    pub fn node(&self) -> Option<NodeId> {
        match self {
            RequestOrigin::Direct(identity) => super::quic::node_of(identity),
            RequestOrigin::Forwarded { .. } => None,
        }
    }
}

/// A request handed to the application, with the means to answer it.
#[derive(Debug)]
pub struct InboundRequest<Req, Resp> {
    /// Who is asking.
    pub origin: RequestOrigin,
    /// What they ask.
    pub request: Req,
    /// Where the answer goes.
    pub responder: Responder<Resp>,
}

/// Sends the response of one request back on its stream. Dropping it
/// without answering resets the stream with [`super::codes::NO_RESPONSE`].
#[derive(Debug)]
pub struct Responder<Resp> {
    sender: oneshot::Sender<Resp>,
}

impl<Resp> Responder<Resp> {
    pub(crate) fn new() -> (Self, oneshot::Receiver<Resp>) {
        let (sender, receiver) = oneshot::channel();
        (Responder { sender }, receiver)
    }

    /// Answers the request. If the caller has gone away the response is
    /// discarded: there is nobody left to tell.
    pub fn respond(self, response: Resp) {
        let _ = self.sender.send(response);
    }
}

/// Frame limits of one outbound request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestLimits {
    pub(crate) request: usize,
    pub(crate) response: usize,
}

/// Opens a bidirectional stream on `connection`, sends `hello` and
/// `request`, and waits for the response.
pub(crate) async fn round_trip<Req, Resp>(
    connection: &quinn::Connection,
    hello: &Hello,
    request: &Req,
    limits: RequestLimits,
) -> Result<Resp, TransportError>
where
    Req: Serialize,
    Resp: DeserializeOwned,
{
    let (mut send, mut receive) = connection.open_bi().await.map_err(connection_lost)?;
    write_frame(&mut send, hello, HELLO_LIMIT).await?;
    write_frame(&mut send, request, limits.request)
        .await
        .map_err(refusal)?;
    // The stream is ours alone; finishing cannot fail unless it was reset,
    // which the read below reports with its code.
    let _ = send.finish();
    match read_frame(&mut receive, limits.response).await {
        Ok(Some(response)) => Ok(response),
        Ok(None) => Err(TransportError::NoResponse),
        Err(error) => Err(refusal(error)),
    }
}

/// A refusal with `code`: [`TransportError::Busy`] for
/// [`codes::BUSY`](super::codes::BUSY), so callers can tell "retry later"
/// from a refusal that will not change.
fn refused(code: u64) -> TransportError {
    if code == u64::from(super::codes::BUSY) {
        TransportError::Busy
    } else {
        TransportError::Refused(code)
    }
}

/// A lost connection; [`TransportError::Busy`] when the node closed it
/// because it had no connection slot left.
fn connection_lost(error: quinn::ConnectionError) -> TransportError {
    match &error {
        quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code == quinn::VarInt::from_u32(super::codes::BUSY) =>
        {
            TransportError::Busy
        }
        _ => TransportError::ConnectionLost(error),
    }
}

/// Turns a stream reset or STOP_SENDING from the other side into
/// [`TransportError::Refused`] with its code (or [`TransportError::Busy`]),
/// and a connection the node closed as busy into
/// [`TransportError::Busy`]; other errors pass through.
fn refusal(error: FrameError) -> TransportError {
    if let FrameError::Io(io) = &error {
        if let Some(inner) = io.get_ref() {
            if let Some(quinn::ReadError::Reset(code)) = inner.downcast_ref::<quinn::ReadError>() {
                return refused(code.into_inner());
            }
            if let Some(quinn::WriteError::Stopped(code)) =
                inner.downcast_ref::<quinn::WriteError>()
            {
                return refused(code.into_inner());
            }
            let lost = match inner.downcast_ref::<quinn::WriteError>() {
                Some(quinn::WriteError::ConnectionLost(lost)) => Some(lost),
                _ => match inner.downcast_ref::<quinn::ReadError>() {
                    Some(quinn::ReadError::ConnectionLost(lost)) => Some(lost),
                    _ => None,
                },
            };
            if let Some(lost) = lost {
                if let TransportError::Busy = connection_lost(lost.clone()) {
                    return TransportError::Busy;
                }
            }
        }
    }
    TransportError::Frame(error)
}
