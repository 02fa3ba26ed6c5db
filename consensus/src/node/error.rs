//! Errors of the node runtime, as seen by the application and its clients.

use crate::raft::NodeId;

/// Why a proposal or read through a [`Node`](super::Node) did not produce a
/// response. Every variant except `StateMachine` and `Storage` is expected in
/// normal operation and says what the caller should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum NodeError {
    /// This node is not the leader; ask `leader` (forwarding does this).
    #[error("not the leader (leader: {})", leader.map(|id| id.to_string()).unwrap_or_else(|| "unknown".into()))]
    NotLeader {
        /// The leader this node knows, if any.
        leader: Option<NodeId>,
    },
    /// No leader or quorum could be reached before the deadline.
    #[error("cluster unavailable: no leader or quorum within the timeout")]
    Unavailable,
    /// The entry proposed was replaced by another leader's entry: it was
    /// never committed. Retrying is safe (client sessions dedup).
    #[error("leadership changed before the command committed; retry")]
    Superseded,
    /// The state machine failed; the node stops applying.
    #[error("state machine failure: {0}")]
    StateMachine(String),
    /// The durable log failed for good (the writer stopped); the node stops.
    /// A full disk is [`NodeError::DiskFull`] instead.
    #[error("storage failure: {0}")]
    Storage(String),
    /// The request was refused by Raft for a reason given in the text
    /// (membership or transfer rules).
    #[error("refused: {0}")]
    Refused(String),
    /// The node named is not a member of the cluster.
    #[error("{0} is not a member of the cluster")]
    NotMember(NodeId),
    /// The node is shutting down.
    #[error("node is shutting down")]
    ShuttingDown,
    /// The node already has as many proposals and reads in progress as it
    /// accepts ([`NodeOptions::max_pending_requests`](super::NodeOptions));
    /// nothing was done. Retry later, or on another node.
    #[error("the node is busy: too many requests in progress; retry later")]
    Busy,
    /// The node cannot write its log (the disk is full or refuses writes)
    /// and refuses new writes until it can; reads are still served. It
    /// carries on by itself once space is back.
    #[error("the node cannot write to its disk, writes are refused: {0}")]
    DiskFull(String),
}

impl NodeError {
    /// Whether trying again (soon, maybe elsewhere) can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            NodeError::NotLeader { .. } | NodeError::Unavailable | NodeError::Superseded
        )
    }
}
