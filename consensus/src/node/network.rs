//! What the runtime needs from the network, as a seam between the driver and
//! the QUIC transport.

use super::NodeError;
use crate::raft::{LogIndex, Membership, Message, NodeId};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;

/// A request one node makes of another (the leader, usually).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeRequest {
    /// Propose this command on your log (a follower forwarding a write).
    Propose(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Confirm leadership and tell me the index a linearizable read must
    /// wait for (a follower serving a read).
    ReadIndex,
}

/// The answer to a [`NodeRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeReply {
    /// The proposal was applied; the state machine's response.
    Applied(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Reads are linearizable once applied through this index.
    ReadIndex(LogIndex),
    /// The request failed.
    Failed(NodeError),
}

/// The future returned by [`PeerNetwork::call`].
pub type RpcFuture<'a> = Pin<Box<dyn Future<Output = Result<NodeReply, NodeError>> + Send + 'a>>;

/// Sends Raft messages and node-to-node requests. Implemented by the QUIC
/// transport.
///
/// # Contract
///
/// - `send` never blocks and never fails loudly: Raft tolerates lost
///   messages, so a full queue or a down peer means the message is dropped.
/// - Messages to one peer arrive in the order sent, or not at all.
/// - `call` returns `Err(NodeError::Unavailable)` when the peer cannot be
///   reached in reasonable time.
pub trait PeerNetwork: Send + Sync + 'static {
    /// Queues `message` for `message.to`.
    fn send(&self, message: Message);

    /// Asks node `to` to handle `request` and waits for its reply.
    fn call(&self, to: NodeId, request: NodeRequest) -> RpcFuture<'_>;

    /// The membership in force changed (or is first known): from now on
    /// send to the members of `latest` and `committed` and accept traffic
    /// only from them (SPEC §13, trust follows membership). `latest` is the
    /// membership of the newest entry in the log, `committed` the newest
    /// known committed; they differ while a change is pending, and a node
    /// being removed must be heard until its removal commits (a leader
    /// removing itself leads until then). Called by the driver whenever
    /// either changes, including for an entry a later leader discards
    /// again; it must not block. Empty memberships (a joiner that has heard
    /// from no leader yet) mean "keep the peers you were configured with".
    /// The default does nothing.
    fn members_changed(&self, latest: &Membership, committed: &Membership) {
        let _ = (latest, committed);
    }
}
