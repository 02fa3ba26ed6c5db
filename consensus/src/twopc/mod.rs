//! Two-phase commit (SPEC §6) as a pure protocol, generic over the resource
//! a transaction locks. Fully deterministic: no async runtime, no sockets,
//! no files, no clock (time arrives as `now_ms`, a number the caller read),
//! no randomness. Like the Raft core, it takes inputs and returns typed
//! outputs the runtime carries out; CI checks that this module stays so.
//!
//! - [`CoordinatorDriver`]: one transaction seen from the node that started
//!   it, sans I/O. It produces the [`TwoPcRequest`]s to send, reads the
//!   membership again before it decides (a changed membership turns a
//!   commit into an abort), asks for the decision entry to be proposed
//!   ([`DecisionProposal`]), sends the decision the log holds and collects
//!   acks, arming one deadline at a time. The vault's node runtime and the
//!   2PC simulation both run it; [`Coordinator`] is its bare protocol core.
//! - [`participant`]: what a participant does with a vote request (through
//!   a [`ResourceManager`] that checks and durably locks), when it may
//!   acknowledge a decision, which prepared transactions recovery must ask
//!   the leader about, and what the leader answers. A vote that finds the
//!   resource locked by another transaction follows wait-die
//!   ([`participant::vote_wait_die`], [`participant::wait_or_die`]): the
//!   older transaction waits, the younger aborts, so concurrent transactions
//!   on one resource cannot deadlock and cannot all abort.
//! - [`VoteDriver`] and [`AckDriver`]: one vote request and one Decide
//!   seen from a participant, sans I/O: the wait for the coordinator's read
//!   index, the wait-die attempts within their budget, the wait for the
//!   applied decision, each as "wait until applied through N or a
//!   deadline" actions. The node runtime, the simulation and the scenario
//!   files run them.
//! - [`TwoPcRequest`], [`TwoPcReply`], [`Vote`], [`Decision`]: the one set
//!   of 2PC wire types; an application embeds them in its own wire enum and
//!   picks the resource type `R` (the vault: a secret at a version).
//!
//! # Ordering rules the runtime must keep
//!
//! - A participant answers [`Vote::Commit`] only once the lock is durable:
//!   after [`ResourceManager::prepare`] returned, or, for a resource
//!   manager that groups prepares into one durable write (the vault's
//!   `PrepareBatch`), after that write.
//! - [`CoordinatorAction::Propose`] must be durable (committed in the log)
//!   before the runtime reports [`CoordinatorInput::DecisionLogged`], with
//!   the decision the log holds, which may differ from the one proposed
//!   (the first decision for a transaction in the log wins). Decide
//!   messages are only produced after that.
//! - A participant acknowledges only once its state machine applied the
//!   decision ([`participant::ack`]).
//!
//! ```
//! use consensus::raft::NodeId;
//! use consensus::twopc::{
//!     CoordinatorAction, CoordinatorDriver, CoordinatorInput, CoordinatorOptions, Decision,
//!     Vote, VoteRequest,
//! };
//!
//! // The resource is whatever the application locks; here a name.
//! let request = VoteRequest { tx: "tx1".to_string(), resource: "mail" };
//! let options = CoordinatorOptions { vote_timeout_ms: 100, proposal_retry: None };
//! let members = [NodeId(1), NodeId(2)];
//! let (mut driver, actions) = CoordinatorDriver::start(request, 0, members, 0, options);
//! assert_eq!(actions.len(), 3); // a vote request to each participant, the vote deadline
//! driver.step(CoordinatorInput::Voted { from: NodeId(1), vote: Vote::Commit }, 5);
//! let actions = driver.step(CoordinatorInput::Voted { from: NodeId(2), vote: Vote::Commit }, 6);
//! // Before deciding, the driver checks that the membership did not change.
//! assert_eq!(actions, vec![CoordinatorAction::ReadMembership]);
//! let actions = driver.step(CoordinatorInput::Members(members.to_vec()), 7);
//! let CoordinatorAction::Propose(proposal) = &actions[0] else { panic!("{actions:?}") };
//! assert_eq!(proposal.decision, Decision::Commit);
//! ```

mod coordinator;
mod coordinator_driver;
mod messages;
pub mod participant;
mod participant_driver;

pub use coordinator::{Coordinator, CoordinatorOutput, Phase, TransactionReport};
pub use coordinator_driver::{
    CoordinatorAction, CoordinatorDriver, CoordinatorInput, CoordinatorOptions, DecisionProposal,
    ProposalRetry,
};
pub use messages::{TwoPcReply, TwoPcRequest, VoteRequest};
pub use participant::{
    LockConflict, LockTable, PrepareOutcome, ResourceManager, TransactionAge, VoteAttempt,
    VotePolicy,
};
pub use participant_driver::{
    AckAction, AckDriver, ParticipantOptions, VoteAction, VoteDriver, VoteInput,
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
mod participant_driver_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod wait_die_tests;
