//! Requests: one bidirectional stream per request, a request frame up and a
//! response frame down, or, for a streamed answer, response frames down
//! until the stream finishes (see [`Responder::respond_stream`]).

use super::codec::{read_frame, write_frame, FrameError};
use super::wire::{Hello, HELLO_LIMIT};
use super::TransportError;
use crate::raft::types::NodeId;
use certs::Identity;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// How many frames of a streamed answer may wait for the network: the
/// producer waits when they do, so a slow reader costs the node at most
/// this many frames of memory (plus QUIC's own send window).
const STREAM_QUEUE: usize = 2;

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

/// What the application answered: one frame, or frames from a channel.
#[derive(Debug)]
pub(crate) enum Answer<Resp> {
    /// One response frame, then the stream finishes.
    Single(Resp),
    /// Response frames in order, as they arrive; the stream finishes once
    /// the sending side ([`StreamResponder`]) is dropped.
    Stream(mpsc::Receiver<Resp>),
}

/// Sends the response of one request back on its stream. Dropping it
/// without answering resets the stream with [`super::codes::NO_RESPONSE`].
#[derive(Debug)]
pub struct Responder<Resp> {
    sender: oneshot::Sender<Answer<Resp>>,
}

impl<Resp> Responder<Resp> {
    pub(crate) fn new() -> (Self, oneshot::Receiver<Answer<Resp>>) {
        let (sender, receiver) = oneshot::channel();
        (Responder { sender }, receiver)
    }

    /// Answers the request. If the caller has gone away the response is
    /// discarded: there is nobody left to tell.
    pub fn respond(self, response: Resp) {
        let _ = self.sender.send(Answer::Single(response));
    }

    /// Answers with several frames instead of one (a large result, such as
    /// a backup, sent in chunks that each fit in a frame). Each frame sent
    /// on the returned [`StreamResponder`] is written in order; the answer
    /// ends, and the stream finishes cleanly, when it is dropped. At most a
    /// couple of frames wait for the network at a time: sending waits for
    /// the reader, so memory stays bounded however large the answer.
    pub fn respond_stream(self) -> StreamResponder<Resp> {
        let (sender, receiver) = mpsc::channel(STREAM_QUEUE);
        let _ = self.sender.send(Answer::Stream(receiver));
        StreamResponder { sender }
    }
}

/// The sending side of a streamed answer ([`Responder::respond_stream`]).
#[derive(Debug)]
pub struct StreamResponder<Resp> {
    sender: mpsc::Sender<Resp>,
}

/// The caller of a streamed answer went away (or the node is shutting
/// down): nothing more will be read, so the producer should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the caller is no longer reading the answer")]
pub struct StreamClosed;

impl<Resp> StreamResponder<Resp> {
    /// Queues the next frame of the answer, waiting while the frames
    /// before it have not been written yet.
    pub async fn send(&self, frame: Resp) -> Result<(), StreamClosed> {
        self.sender.send(frame).await.map_err(|_| StreamClosed)
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
    let mut stream = open_request(connection, hello, request, limits).await?;
    stream.next().await?.ok_or(TransportError::NoResponse)
}

/// Opens a bidirectional stream on `connection` and sends `hello` and
/// `request`; the answer is read from the returned stream.
pub(crate) async fn open_request<Req, Resp>(
    connection: &quinn::Connection,
    hello: &Hello,
    request: &Req,
    limits: RequestLimits,
) -> Result<ResponseStream<Resp>, TransportError>
where
    Req: Serialize,
    Resp: DeserializeOwned,
{
    let (mut send, receive) = connection.open_bi().await.map_err(connection_lost)?;
    write_frame(&mut send, hello, HELLO_LIMIT).await?;
    write_frame(&mut send, request, limits.request)
        .await
        .map_err(refusal)?;
    // The stream is ours alone; finishing cannot fail unless it was reset,
    // which the read below reports with its code.
    let _ = send.finish();
    Ok(ResponseStream {
        receive,
        limit: limits.response,
        _response: std::marker::PhantomData,
    })
}

/// The response frames of one request, read one at a time
/// ([`Client::request_stream`](super::Client::request_stream)). Each frame
/// is checked against the client's response limit before anything is
/// allocated for it.
#[derive(Debug)]
pub struct ResponseStream<Resp> {
    receive: quinn::RecvStream,
    limit: usize,
    _response: std::marker::PhantomData<fn() -> Resp>,
}

impl<Resp: DeserializeOwned> ResponseStream<Resp> {
    /// The next frame, or `None` once the node finished the stream on a
    /// frame boundary (the answer is complete). A stream reset by the node,
    /// a lost connection or a frame cut short is an error: the answer is
    /// incomplete.
    pub async fn next(&mut self) -> Result<Option<Resp>, TransportError> {
        read_frame(&mut self.receive, self.limit)
            .await
            .map_err(refusal)
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
