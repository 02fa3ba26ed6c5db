//! Outbound side of a peer: a task that drains the peer's bounded queue
//! onto one long-lived unidirectional stream, on the pair's connection
//! (see [`super::link`]).

use super::codec::{encode_frame, write_frame, FrameError};
use super::link::PeerLink;
use super::wire::{Hello, HELLO_LIMIT};
use super::TransportError;
use crate::raft::types::NodeId;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

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
/// waits (backoff) and redials, keeping the message that failed. When the
/// pair's connection changes (the peer's dial was taken over), the stream
/// moves to the new connection at once.
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
            Ok(Ended::Done) => return,
            Ok(Ended::Moved) => continue,
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

/// Why a peer stream ended without an error.
enum Ended {
    /// The queue closed or shutdown began.
    Done,
    /// The pair now uses another connection.
    Moved,
}

/// Opens a peer stream and writes messages to it until an error, the end
/// of the queue, or a change of the pair's connection.
async fn stream_messages<M: Serialize>(
    context: &mut SenderContext,
    queue: &mut mpsc::Receiver<M>,
    pending: &mut Option<M>,
) -> Result<Ended, TransportError> {
    let mut current = context.link.watch_current();
    let connection = context.link.connection().await?;
    current.borrow_and_update();
    let mut stream = connection.open_uni().await?;
    let hello = Hello::Peer {
        from: context.local_id,
    };
    write_frame(&mut stream, &hello, HELLO_LIMIT).await?;
    let ended = loop {
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
                None => break Ended::Done,
            },
            changed = current.changed() => {
                // The link outlives this task (the context holds it), so
                // its watch never closes; if it did, stop rather than spin.
                if changed.is_err() {
                    break Ended::Done;
                }
                if *current.borrow_and_update() != Some(connection.stable_id()) {
                    break Ended::Moved;
                }
            }
            _ = context.shutdown.changed() => break Ended::Done,
        }
    };
    let _ = stream.finish();
    Ok(ended)
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
