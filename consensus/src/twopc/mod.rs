//! Two-phase commit (SPEC §6), as a pure protocol: no tokio, no sockets, no
//! clock, no randomness. Like the Raft core, it takes inputs (a vote, an
//! acknowledgement, the time `now_ms` as a number the caller read) and
//! returns typed outputs the runtime carries out.
//!
//! - [`Coordinator`]: one transaction seen from the node that received the
//!   delete. It asks every participant (itself included) to vote, decides
//!   once every vote is in or the vote deadline passed, asks the runtime to
//!   make the decision durable (in the vault: a Raft log entry), then sends
//!   the decision the log holds to every participant and collects acks.
//! - [`participant`]: what a participant does with a vote request (through
//!   a [`ResourceManager`] that checks and durably locks), when it may
//!   acknowledge a decision, and which prepared transactions recovery must
//!   ask the leader about, and what the leader answers. A vote that finds
//!   the resource locked by another transaction follows wait-die
//!   ([`participant::vote_wait_die`], [`participant::wait_or_die`]): the
//!   older transaction waits, the younger aborts, so concurrent transactions
//!   on one resource cannot deadlock and cannot all abort.
//!
//! # Ordering rules the runtime must keep
//!
//! - A participant answers [`Vote::Commit`] only once the lock is durable:
//!   after [`ResourceManager::prepare`] returned, or, for a resource
//!   manager that groups prepares into one durable write (the vault's
//!   `PrepareBatch`), after that write.
//! - [`CoordinatorOutput::ProposeDecision`] must be durable (committed in
//!   the log) before any [`CoordinatorOutput::SendDecide`] is produced: the
//!   coordinator only emits those after [`Coordinator::on_decision_logged`],
//!   and with the decision the log holds, which may differ from the one it
//!   proposed (the first decision for a transaction in the log wins).
//! - A participant acknowledges only once its state machine applied the
//!   decision ([`participant::ack`]).
//!
//! ```
//! use consensus::twopc::{Coordinator, CoordinatorOutput, Decision, Vote};
//! use consensus::raft::NodeId;
//!
//! let participants = [NodeId(1), NodeId(2)];
//! let (mut coordinator, outputs) = Coordinator::start("tx1", participants, 0, 100);
//! assert_eq!(outputs.len(), 2); // a Vote request to each participant
//! coordinator.on_vote(NodeId(1), Vote::Commit, 5);
//! let outputs = coordinator.on_vote(NodeId(2), Vote::Commit, 6);
//! assert_eq!(outputs, vec![CoordinatorOutput::ProposeDecision(Decision::Commit)]);
//! ```

mod coordinator;
pub mod participant;

pub use coordinator::{Coordinator, CoordinatorOutput, Phase, TransactionReport};
pub use participant::{
    LockConflict, LockTable, PrepareOutcome, ResourceManager, TransactionAge, VoteAttempt,
    VotePolicy, VoteRequest,
};

use serde::{Deserialize, Serialize};

/// A participant's vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Vote {
    /// `VOTE_COMMIT`: the participant prepared and holds the lock durably.
    Commit,
    /// `VOTE_ABORT`, with the reason in one sentence (no secret data). No
    /// answer before the vote deadline is recorded as an abort too.
    Abort(String),
}

impl Vote {
    /// Whether this is a commit vote.
    pub fn is_commit(&self) -> bool {
        matches!(self, Vote::Commit)
    }
}

/// The outcome of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// `GLOBAL_COMMIT`: every participant voted commit.
    Commit,
    /// `GLOBAL_ABORT`: some participant voted abort or did not vote in time,
    /// or recovery aborted a transaction left undecided.
    Abort,
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decision::Commit => "GLOBAL_COMMIT",
            Decision::Abort => "GLOBAL_ABORT",
        })
    }
}

/// The reason recorded for a participant that did not vote before the
/// vote deadline.
pub const NO_VOTE_IN_TIME: &str = "no vote before the vote timeout";

#[cfg(test)]
mod tests;
#[cfg(test)]
mod wait_die_tests;
