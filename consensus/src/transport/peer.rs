//! Outbound side of a peer: one cached connection, and a task that drains
//! the peer's bounded queue onto one long-lived unidirectional stream.

use super::codec::{encode_frame, write_frame, FrameError};
use super::quic::{dial, node_of};
use super::request::{round_trip, RequestLimits};
use super::wire::{Hello, HELLO_LIMIT};
use super::{PeerAddress, TransportError};
use crate::raft::types::NodeId;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::time::Instant;

/// One remote node as seen by the dialling side.
///
/// The connection is shared by the peer stream and by requests to that
/// node, and dialled only when first needed. The mutex is held across the
/// dial so that concurrent users wait for one handshake instead of racing
/// several.
pub(crate) struct PeerLink {
    pub(crate) id: NodeId,
    pub(crate) address: PeerAddress,
    endpoint: quinn::Endpoint,
    /// How long one dial may take before it is abandoned for a fresh one.
    dial_timeout: Duration,
    connection: Mutex<Option<quinn::Connection>>,
}

impl PeerLink {
    pub(crate) fn new(
        id: NodeId,
        address: PeerAddress,
        endpoint: quinn::Endpoint,
        dial_timeout: Duration,
    ) -> Self {
        PeerLink {
            id,
            address,
            endpoint,
            dial_timeout,
            connection: Mutex::new(None),
        }
    }

    /// The live connection to this peer, dialling if there is none. A
    /// server whose certificate is not this node's is refused.
    pub(crate) async fn connection(&self) -> Result<quinn::Connection, TransportError> {
        let mut cached = self.connection.lock().await;
        if let Some(connection) = cached.as_ref() {
            if connection.close_reason().is_none() {
                return Ok(connection.clone());
            }
        }
        let address = self.address.address;
        // A handshake whose packets were lost while the peer could not hear
        // us retransmits with exponential backoff (seconds apart by now),
        // and the peer gives up on it after its own handshake timeout
        // anyway: a fresh dial after that long starts from the shortest
        // retransmission delay.
        let dialled = tokio::time::timeout(
            self.dial_timeout,
            dial(&self.endpoint, address, &self.address.server_name),
        )
        .await
        .map_err(|_| TransportError::Connect {
            address,
            reason: format!(
                "handshake not finished within {} ms",
                self.dial_timeout.as_millis()
            ),
        })?;
        let (connection, identity) = dialled?;
        if node_of(&identity) != Some(self.id) {
            connection.close(
                quinn::VarInt::from_u32(super::codes::BAD_IDENTITY),
                b"wrong node",
            );
            return Err(TransportError::WrongPeer {
                address,
                expected: self.id.to_string(),
                actual: identity.to_string(),
            });
        }
        *cached = Some(connection.clone());
        Ok(connection)
    }

    /// Sends a request to this peer and waits for the response.
    ///
    /// With `once_more_if_lost`, a request whose connection turns out to be
    /// dead (the peer restarted: its new process cannot read the old
    /// connection's packets) is sent once more on a fresh connection
    /// instead of failing. Only for requests that are safe to repeat.
    pub(crate) async fn request<Req, Resp>(
        &self,
        hello: &Hello,
        request: &Req,
        limits: RequestLimits,
        once_more_if_lost: bool,
    ) -> Result<Resp, TransportError>
    where
        Req: Serialize,
        Resp: serde::de::DeserializeOwned,
    {
        let connection = self.connection().await?;
        match round_trip(&connection, hello, request, limits).await {
            Err(error) if once_more_if_lost && connection.close_reason().is_some() => {
                tracing::debug!("connection to {} lost ({error}); redialling", self.id);
                let connection = self.connection().await?;
                round_trip(&connection, hello, request, limits).await
            }
            outcome => outcome,
        }
    }
}

/// Exponential backoff between redials, capped.
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay to wait now; the next one is twice as long, up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// What a sender task needs besides its queue.
pub(crate) struct SenderContext {
    pub(crate) local_id: NodeId,
    pub(crate) link: Arc<PeerLink>,
    pub(crate) max_frame: usize,
    pub(crate) backoff: Backoff,
    pub(crate) dropped: Arc<AtomicU64>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// Drains `queue` to the peer until the queue closes or the transport shuts
/// down. Dials only once there is something to send; after a failure it
/// waits (backoff) and redials, keeping the message that failed.
pub(crate) async fn run_sender<M: Serialize>(
    mut context: SenderContext,
    mut queue: mpsc::Receiver<M>,
) {
    let mut pending: Option<M> = None;
    loop {
        if pending.is_none() {
            tokio::select! {
                message = queue.recv() => match message {
                    Some(message) => pending = Some(message),
                    None => return,
                },
                _ = context.shutdown.changed() => return,
            }
        }
        let started = Instant::now();
        let error = match stream_messages(&mut context, &mut queue, &mut pending).await {
            Ok(()) => return,
            Err(error) => error,
        };
        tracing::debug!(peer = %context.link.id, %error, "peer stream failed; redialling after backoff");
        // A stream that stayed up longer than the longest backoff was
        // healthy: start again from the shortest delay.
        if started.elapsed() > context.backoff.max {
            context.backoff.reset();
        }
        let delay = context.backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = context.shutdown.changed() => return,
        }
    }
}

/// Opens a peer stream and writes messages to it until an error. Returns
/// `Ok` only when the queue closed or shutdown began.
async fn stream_messages<M: Serialize>(
    context: &mut SenderContext,
    queue: &mut mpsc::Receiver<M>,
    pending: &mut Option<M>,
) -> Result<(), TransportError> {
    let connection = context.link.connection().await?;
    let mut stream = connection.open_uni().await?;
    let hello = Hello::Peer {
        from: context.local_id,
    };
    write_frame(&mut stream, &hello, HELLO_LIMIT).await?;
    loop {
        if let Some(message) = pending.as_ref() {
            match encode_frame(message, context.max_frame) {
                Ok(frame) => stream
                    .write_all(&frame)
                    .await
                    .map_err(|error| FrameError::Io(error.into()))?,
                Err(error) => {
                    context.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(peer = %context.link.id, %error, "dropping a peer message that cannot be framed");
                }
            }
            *pending = None;
        }
        tokio::select! {
            message = queue.recv() => match message {
                Some(message) => *pending = Some(message),
                None => break,
            },
            _ = context.shutdown.changed() => break,
        }
    }
    let _ = stream.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(300));
        let delays: Vec<u64> = (0..6)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(delays, [50, 100, 200, 300, 300, 300]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(50));
    }
}
