//! Who gets a handshake and who gets a connection slot (SPEC §9, handshake
//! floods).
//!
//! A connection passes two gates, each with its own budget:
//!
//! 1. **Handshake.** When a first packet arrives, nothing is known but its
//!    source address, which may be forged. While few handshakes are in
//!    progress, it gets one of `max_handshakes` slots at once; beyond
//!    `retry_above`, it must first prove its address with a QUIC Retry
//!    (one round trip, no state kept on the node), so a flood of forged or
//!    abandoned Initial packets can hold at most `retry_above` slots, and
//!    each for at most `handshake_timeout`. A connection from the address
//!    of a configured peer always proves its address and may then use
//!    `reserved_peer_handshakes` slots nobody else can.
//! 2. **Connection.** Once the handshake is done the certificate says who
//!    is calling. Clients and admins share `max_connections` slots; node
//!    identities first use `reserved_node_connections` slots clients
//!    cannot take.
//!
//! The decisions are plain functions of counters, tested without sockets;
//! the accept loop carries them out on quinn's `Incoming`.

use super::quic::node_of;
use super::TransportConfig;
use crate::raft::types::NodeId;
use certs::Identity;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The reason of [`Admit::Refuse`] when no connection slot is left.
pub(crate) const CONNECTION_LIMIT: &str = "connection limit reached";
/// The reason of [`Admit::Refuse`] when no handshake slot is left.
pub(crate) const HANDSHAKE_LIMIT: &str = "too many handshakes in progress";

/// The addresses of the configured peers, kept by the transport as peers
/// are added and removed. A node dials from the socket it listens on, so a
/// peer's connections come from its configured address.
pub(crate) type PeerAddresses = Arc<RwLock<BTreeMap<NodeId, SocketAddr>>>;

/// What to do with a connection attempt that has just arrived.
#[derive(Debug)]
pub(crate) enum Admit {
    /// Ask the sender to prove its address (QUIC Retry); no state is kept.
    Retry,
    /// Refuse at once, before any TLS work, for this reason.
    Refuse(&'static str),
    /// Run the handshake, holding this slot until it ends.
    Handshake(OwnedSemaphorePermit),
}

/// The two gates and their budgets; see the module documentation.
#[derive(Debug)]
pub(crate) struct Admission {
    handshakes: Arc<Semaphore>,
    handshakes_total: usize,
    peer_handshakes: Arc<Semaphore>,
    peer_handshakes_total: usize,
    retry_above: usize,
    client_connections: Arc<Semaphore>,
    node_connections: Arc<Semaphore>,
    peers: PeerAddresses,
}

impl Admission {
    /// Budgets from `config`; `peers` is watched for peer addresses.
    pub(crate) fn new(config: &TransportConfig, peers: PeerAddresses) -> Self {
        let peer_handshakes_total = config.reserved_peer_handshakes.min(config.max_handshakes);
        let handshakes_total = config.max_handshakes - peer_handshakes_total;
        Admission {
            handshakes: Arc::new(Semaphore::new(handshakes_total)),
            handshakes_total,
            peer_handshakes: Arc::new(Semaphore::new(peer_handshakes_total)),
            peer_handshakes_total,
            retry_above: config.retry_above,
            client_connections: Arc::new(Semaphore::new(config.max_connections)),
            node_connections: Arc::new(Semaphore::new(config.reserved_node_connections)),
            peers,
        }
    }

    /// Handshakes in progress now.
    pub(crate) fn handshakes_in_progress(&self) -> usize {
        (self.handshakes_total - self.handshakes.available_permits())
            + (self.peer_handshakes_total - self.peer_handshakes.available_permits())
    }

    fn is_peer_address(&self, remote: SocketAddr) -> bool {
        self.peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .any(|address| *address == remote)
    }

    /// Decides about a connection attempt from `remote`; `validated` says
    /// whether it carries a Retry token, proving that `remote` is its real
    /// address.
    pub(crate) fn admit(&self, remote: SocketAddr, validated: bool) -> Admit {
        let from_peer = self.is_peer_address(remote);
        if !validated && (from_peer || self.handshakes_in_progress() >= self.retry_above) {
            return Admit::Retry;
        }
        if self.client_connections.available_permits() == 0
            && self.node_connections.available_permits() == 0
        {
            return Admit::Refuse(CONNECTION_LIMIT);
        }
        let reserved = from_peer
            .then(|| self.peer_handshakes.clone().try_acquire_owned().ok())
            .flatten();
        match reserved.or_else(|| self.handshakes.clone().try_acquire_owned().ok()) {
            Some(permit) => Admit::Handshake(permit),
            None => Admit::Refuse(HANDSHAKE_LIMIT),
        }
    }

    /// An established-connection slot for `identity`, held for the life of
    /// the connection, or `None` when every slot it may use is taken.
    pub(crate) fn connection_slot(&self, identity: &Identity) -> Option<OwnedSemaphorePermit> {
        let reserved =
            node_of(identity).and_then(|_| self.node_connections.clone().try_acquire_owned().ok());
        reserved.or_else(|| self.client_connections.clone().try_acquire_owned().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TransportConfig {
        let mut config = TransportConfig::new(NodeId(1), "127.0.0.1:0".parse().unwrap());
        config.max_handshakes = 6;
        config.reserved_peer_handshakes = 2;
        config.retry_above = 3;
        config.max_connections = 1;
        config.reserved_node_connections = 1;
        config
    }

    fn address(last: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], 4000))
    }

    fn admission(peer: SocketAddr) -> Admission {
        let peers: PeerAddresses = Arc::default();
        peers.write().unwrap().insert(NodeId(2), peer);
        Admission::new(&settings(), peers)
    }

    #[test]
    fn beyond_the_threshold_only_validated_addresses_get_a_handshake() {
        let admission = admission(address(200));
        let mut held = Vec::new();
        for last in 1..=3 {
            match admission.admit(address(last), false) {
                Admit::Handshake(permit) => held.push(permit),
                other => panic!("below the threshold: {other:?}"),
            }
        }
        assert_eq!(admission.handshakes_in_progress(), 3);
        assert!(matches!(admission.admit(address(4), false), Admit::Retry));
        // A validated address gets one of the general slots left (4 of 6
        // minus the 2 kept for peers).
        match admission.admit(address(4), true) {
            Admit::Handshake(permit) => held.push(permit),
            other => panic!("a validated address: {other:?}"),
        }
        assert!(matches!(
            admission.admit(address(5), true),
            Admit::Refuse(HANDSHAKE_LIMIT)
        ));
        drop(held);
        assert!(matches!(
            admission.admit(address(5), false),
            Admit::Handshake(_)
        ));
    }

    #[test]
    fn a_peer_proves_its_address_and_then_has_slots_nobody_else_can_take() {
        let peer = address(200);
        let admission = admission(peer);
        // A forged packet from the peer's address gets nothing but a Retry.
        assert!(matches!(admission.admit(peer, false), Admit::Retry));
        let mut held = Vec::new();
        while let Admit::Handshake(permit) = admission.admit(address(9), true) {
            held.push(permit);
        }
        assert_eq!(held.len(), 4, "general slots: 6 minus 2 kept for peers");
        for _ in 0..2 {
            match admission.admit(peer, true) {
                Admit::Handshake(permit) => held.push(permit),
                other => panic!("the peer's reserve: {other:?}"),
            }
        }
        assert!(matches!(admission.admit(peer, true), Admit::Refuse(_)));
    }

    #[test]
    fn clients_cannot_take_the_connection_slots_kept_for_nodes() {
        let admission = admission(address(200));
        let alice = Identity::client("alice").unwrap();
        let node2 = Identity::node("node2").unwrap();
        let first = admission.connection_slot(&alice);
        assert!(first.is_some());
        assert!(admission.connection_slot(&alice).is_none());
        let node = admission.connection_slot(&node2);
        assert!(node.is_some(), "the node reserve is still free");
        assert!(matches!(
            admission.admit(address(3), true),
            Admit::Refuse(CONNECTION_LIMIT)
        ));
        drop(first);
        // A node falls back to the shared slots once its reserve is used.
        assert!(admission.connection_slot(&node2).is_some());
    }
}
