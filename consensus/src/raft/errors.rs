//! Errors of the core's operations: one enum per operation, each saying what
//! the caller should do next.

use super::types::{LogIndex, NodeId, Term};
use super::ConfigError;

/// This node is not the leader (the expected answer of a follower to a
/// leader-only request): forward the request to `leader`, or retry later
/// when it is `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not the leader (leader hint: {})", leader.map(|id| id.to_string()).unwrap_or_else(|| "unknown".into()))]
pub struct NotLeader {
    /// The leader this node knows, if any.
    pub leader: Option<NodeId>,
}

/// Why a proposal was refused. Nothing was appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Forward to the leader.
    #[error(transparent)]
    NotLeader(#[from] NotLeader),
    /// A leadership transfer is under way; retry at the new leader shortly.
    #[error("leadership transfer to {0} in progress")]
    TransferInProgress(NodeId),
    /// Nothing to propose.
    #[error("empty proposal")]
    Empty,
}

/// Why a membership change was refused. Nothing was appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// Forward to the leader.
    #[error(transparent)]
    NotLeader(#[from] NotLeader),
    /// Another change is not yet committed: one server at a time.
    #[error("membership change at index {0} is not committed yet")]
    ChangeInProgress(LogIndex),
    /// The leader has not yet committed an entry of its term, so a previous
    /// leader's change may still be pending; retry shortly.
    #[error("leader has not committed an entry of its term yet")]
    LeaderNotReady,
    /// A leadership transfer is under way.
    #[error("leadership transfer to {0} in progress")]
    TransferInProgress(NodeId),
    /// The node is already a member (voter or learner).
    #[error("{0} is already a member")]
    AlreadyMember(NodeId),
    /// Only learners can be promoted.
    #[error("{0} is not a learner")]
    NotLearner(NodeId),
    /// The learner has not caught up with the leader's commit index yet.
    #[error("learner {node} has matched index {match_index}, commit is {commit}")]
    LearnerBehind {
        /// The learner.
        node: NodeId,
        /// How far its log matches.
        match_index: LogIndex,
        /// The leader's commit index.
        commit: LogIndex,
    },
    /// The node is not a member.
    #[error("{0} is not a member")]
    UnknownNode(NodeId),
    /// Removing the node would leave no voter.
    #[error("cannot remove the last voter {0}")]
    LastVoter(NodeId),
}

/// Why a leadership transfer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// Ask the leader.
    #[error(transparent)]
    NotLeader(#[from] NotLeader),
    /// The target is not a voter.
    #[error("{0} is not a voter")]
    NotVoter(NodeId),
}

/// Why a snapshot produced by the application was not taken into account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The snapshot is not newer than the current one.
    #[error("snapshot at {index} is not newer than the current base {base}")]
    Stale {
        /// The snapshot's last index.
        index: LogIndex,
        /// The log's current base index.
        base: LogIndex,
    },
    /// The snapshot covers entries not yet applied or not durable.
    #[error("snapshot at {index} is beyond the applied and durable index {limit}")]
    Ahead {
        /// The snapshot's last index.
        index: LogIndex,
        /// How far it could go.
        limit: LogIndex,
    },
    /// The metadata disagrees with the log.
    #[error("snapshot meta at {index} (term {term}) does not match the log")]
    Mismatch {
        /// The snapshot's last index.
        index: LogIndex,
        /// The snapshot's last term.
        term: Term,
    },
}

/// Why the state loaded from disk cannot start a core.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The entries are not consecutive or do not follow the snapshot.
    #[error("restored log is not contiguous: expected index {expected}, found {found}")]
    Gap {
        /// The index that should come next.
        expected: LogIndex,
        /// The index found.
        found: LogIndex,
    },
    /// A term decreases along the log, or exceeds the hard state's term.
    #[error(
        "restored log has term {term} at index {index}, inconsistent with the terms before it"
    )]
    TermOrder {
        /// Where.
        index: LogIndex,
        /// The offending term.
        term: Term,
    },
    /// Bootstrapping needs at least one voter, and a node with no state.
    #[error("bootstrap needs an empty node and a non-empty voter set")]
    Bootstrap,
    /// There is no state at all: no term, no log, no snapshot. A member of
    /// a cluster always has some (its founding entry, or what it received
    /// as a joiner), so this node either lost its data or was never
    /// initialised. Starting it anyway would let it vote with forgotten
    /// state (SPEC §13); it must be removed and added back as a new member
    /// ([`RaftCore::join`](super::RaftCore::join)).
    #[error(
        "no Raft state: this node lost its data or was never initialised; \
         remove it from the cluster and add it back as a new member"
    )]
    NoState,
    /// A joiner needs a non-zero incarnation (0 belongs to founding members).
    #[error("a joining node needs a non-zero incarnation")]
    ZeroIncarnation,
}
