//! One remote node's connection, used in both directions.
//!
//! A pair of nodes talks over one QUIC connection, whichever of the two
//! dialled it: the peer stream of each direction and the requests of both
//! sides share it, so the answer to a heartbeat carries the ACK of the
//! heartbeat instead of each side acknowledging a connection of its own
//! with a packet of its own. A side dials only when it has no live
//! connection to the peer; a connection the peer dialled is taken over as
//! soon as the peer opens its peer stream on it ([`PeerLink::offer`]).
//!
//! When both sides dial at once (both had something to send and no
//! connection), the connection dialled by the node with the lower id is
//! kept by both and the other one is closed, so the pair settles on one.

use super::quic::{dial, node_of};
use super::request::{round_trip, RequestLimits};
use super::wire::Hello;
use super::{PeerAddress, TransportError};
use crate::raft::types::NodeId;
use certs::Identity;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// The known peers' links by node id, shared by the transport (which adds
/// and removes them) and the inbound side (which offers them connections).
pub(crate) type Links = Arc<RwLock<BTreeMap<NodeId, Arc<PeerLink>>>>;

/// Starts serving the streams the peer opens on a connection this node
/// dialled (the accept loop serves those it accepted).
pub(crate) type ServeDialled = Arc<dyn Fn(quinn::Connection, Identity) + Send + Sync>;

/// Which side of a pair dialled a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialler {
    Us,
    Them,
}

/// The connections a link knows of.
#[derive(Default)]
struct Slot {
    /// The connection both directions use, and who dialled it.
    current: Option<(quinn::Connection, Dialler)>,
    /// A live connection the peer dialled while `current`, which this node
    /// prefers, looked alive: the peer sends on it (its view of `current`
    /// may be a connection that died with its previous process), and it is
    /// taken over at once if `current` turns out dead, instead of dialling.
    spare: Option<quinn::Connection>,
}

/// One remote node: its address and the connection to it.
///
/// Dials are serialised by `dialling` so that concurrent users wait for one
/// handshake instead of racing several; `slot` is a std mutex, never held
/// across an await, so an inbound connection is taken over even while a
/// dial is in progress.
pub(crate) struct PeerLink {
    pub(crate) id: NodeId,
    pub(crate) address: PeerAddress,
    local: NodeId,
    endpoint: quinn::Endpoint,
    /// How long one dial may take before it is abandoned for a fresh one.
    dial_timeout: Duration,
    serve_dialled: ServeDialled,
    slot: Mutex<Slot>,
    dialling: tokio::sync::Mutex<()>,
    /// The `stable_id` of the current connection, for the sender task:
    /// when it changes, the peer stream moves to the new connection.
    current_id: watch::Sender<Option<usize>>,
}

impl PeerLink {
    pub(crate) fn new(
        id: NodeId,
        address: PeerAddress,
        local: NodeId,
        endpoint: quinn::Endpoint,
        dial_timeout: Duration,
        serve_dialled: ServeDialled,
    ) -> Self {
        PeerLink {
            id,
            address,
            local,
            endpoint,
            dial_timeout,
            serve_dialled,
            slot: Mutex::new(Slot::default()),
            dialling: tokio::sync::Mutex::new(()),
            current_id: watch::channel(None).0,
        }
    }

    /// The live connection to this peer, dialling if there is none. A
    /// server whose certificate is not this node's is refused.
    pub(crate) async fn connection(&self) -> Result<quinn::Connection, TransportError> {
        if let Some(connection) = self.live() {
            return Ok(connection);
        }
        let _dialling = self.dialling.lock().await;
        // Another caller's dial, or the peer's, may have finished meanwhile.
        if let Some(connection) = self.live() {
            return Ok(connection);
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
        // Serving first: the peer may open its streams as soon as it sees
        // the connection.
        (self.serve_dialled)(connection.clone(), identity);
        Ok(self.install(connection, Dialler::Us))
    }

    /// Takes over `connection`, on which the peer (verified to be this
    /// link's node) has just opened its peer stream, unless the connection
    /// in use is one this pair prefers.
    pub(crate) fn offer(&self, connection: &quinn::Connection) {
        self.install(connection.clone(), Dialler::Them);
    }

    /// Follows the connection in use: the value is its `stable_id`, `None`
    /// before the first.
    pub(crate) fn watch_current(&self) -> watch::Receiver<Option<usize>> {
        self.current_id.subscribe()
    }

    /// Closes every connection of this link (the peer was removed or moved
    /// to another address).
    pub(crate) fn close(&self) {
        let mut slot = self.lock_slot();
        let current = slot.current.take().map(|(connection, _)| connection);
        for connection in current.into_iter().chain(slot.spare.take()) {
            connection.close(quinn::VarInt::from_u32(super::codes::CLOSED), b"forgotten");
        }
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

    /// Who dials the connection this pair keeps when both sides dialled:
    /// the node with the lower id.
    fn preferred(&self) -> Dialler {
        if self.local < self.id {
            Dialler::Us
        } else {
            Dialler::Them
        }
    }

    /// The current connection if it is alive, else a live spare, which
    /// then becomes current.
    fn live(&self) -> Option<quinn::Connection> {
        let mut slot = self.lock_slot();
        if let Some((connection, _)) = &slot.current {
            if connection.close_reason().is_none() {
                return Some(connection.clone());
            }
        }
        let spare = slot.spare.take()?;
        if spare.close_reason().is_some() {
            return None;
        }
        self.make_current(&mut slot, spare.clone(), Dialler::Them);
        Some(spare)
    }

    /// Records `new`, dialled by `dialler`, and returns the connection to
    /// use from now on.
    ///
    /// Against a live current connection of the other dialler the pair's
    /// preferred dialler wins, so that both sides keep the same one; a
    /// newer connection of the same dialler replaces the older (a side
    /// dials only once it holds no live connection, so the older one is
    /// dead to it). The loser is closed, except a connection the peer
    /// dialled, which is kept as the spare.
    fn install(&self, new: quinn::Connection, dialler: Dialler) -> quinn::Connection {
        let mut slot = self.lock_slot();
        let kept = match &slot.current {
            Some((current, _)) if current.stable_id() == new.stable_id() => return current.clone(),
            Some((current, current_dialler))
                if current.close_reason().is_none()
                    && dialler != *current_dialler
                    && dialler != self.preferred() =>
            {
                Some(current.clone())
            }
            _ => None,
        };
        if let Some(kept) = kept {
            match dialler {
                Dialler::Them => slot.spare = Some(new),
                Dialler::Us => superseded(&new),
            }
            return kept;
        }
        if let Some((old, _)) = slot.current.take() {
            superseded(&old);
        }
        if slot
            .spare
            .as_ref()
            .is_some_and(|spare| spare.stable_id() == new.stable_id())
        {
            slot.spare = None;
        }
        self.make_current(&mut slot, new.clone(), dialler);
        new
    }

    fn make_current(&self, slot: &mut Slot, connection: quinn::Connection, dialler: Dialler) {
        let id = connection.stable_id();
        slot.current = Some((connection, dialler));
        self.current_id.send_replace(Some(id));
    }

    fn lock_slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        // Every update of the slot is a few assignments with no panic
        // between them, so a poisoned lock still holds a consistent slot.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Closes a connection the pair no longer uses. Peer messages still in it
/// are lost, as Raft allows; a node request on it is sent again on the
/// connection kept (see [`PeerLink::request`]).
fn superseded(connection: &quinn::Connection) {
    connection.close(
        quinn::VarInt::from_u32(super::codes::CLOSED),
        b"superseded by the pair's other connection",
    );
}
