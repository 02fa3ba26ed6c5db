//! The messages of two-phase commit between nodes, generic over the
//! resource a transaction locks. They are the only 2PC wire types: an
//! application embeds them in its own wire enum (the vault's
//! `WireRequest::TwoPc`) and chooses `R`, the description of what one
//! participant checks and locks (the vault: a secret at a version).
//!
//! postcard numbers enum variants by position: variants are only ever
//! appended, so a node of an older build still decodes the ones it knows.

use super::{Decision, Vote};
use serde::{Deserialize, Serialize};

/// What a coordinator asks a participant to vote on: locking `resource`
/// for transaction `tx`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRequest<R> {
    /// The transaction id.
    pub tx: String,
    /// What the participant must check and lock; opaque to the protocol.
    pub resource: R,
}

/// A two-phase-commit message from one node to another (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TwoPcRequest<R> {
    /// Coordinator → participant: vote on `request`, once you applied the
    /// log through `read_index`.
    Vote {
        /// What to vote on.
        request: VoteRequest<R>,
        /// The log index the coordinator's read of the resource was
        /// linearized at: the participant first applies through it, so a
        /// merely lagging node votes on the state the coordinator saw
        /// instead of aborting.
        read_index: u64,
    },
    /// Coordinator → participant: the log decided `tx`; answer once applied.
    Decide {
        /// The transaction id.
        tx: String,
        /// The decision the log holds.
        decision: Decision,
    },
    /// Participant → leader: `tx` is still undecided here after the decision
    /// timeout; make sure the log holds a decision and tell me which.
    Resolve {
        /// The transaction id.
        tx: String,
        /// The resource the transaction locks here (a decision entry the
        /// leader proposes names it).
        resource: R,
        /// How far the asking participant has applied the log: the leader
        /// proposes no abort for an asker below its pruning horizon, whose
        /// decision may be waiting in its own log.
        applied_index: u64,
    },
}

impl<R> TwoPcRequest<R> {
    /// The transaction the message is about.
    pub fn tx(&self) -> &str {
        match self {
            TwoPcRequest::Vote { request, .. } => &request.tx,
            TwoPcRequest::Decide { tx, .. } | TwoPcRequest::Resolve { tx, .. } => tx,
        }
    }
}

/// The answer to a [`TwoPcRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TwoPcReply {
    /// The participant's vote (an abort carries its reason).
    Voted(Vote),
    /// The participant applied the decision (deleted, or released its lock).
    Acked {
        /// The decision it applied.
        decision: Decision,
    },
    /// The log holds this decision for the transaction (answer to Resolve).
    Resolved {
        /// The decision.
        decision: Decision,
    },
    /// The message could not be served (not the leader, not applied in
    /// time, a store failure, no answer); one sentence.
    Failed(String),
}

impl TwoPcReply {
    /// The vote this reply to a vote request counts as at the coordinator:
    /// anything but a vote (a failure, no answer, another reply) is an
    /// abort, with the reason.
    pub fn into_vote(self) -> Vote {
        match self {
            TwoPcReply::Voted(vote) => vote,
            TwoPcReply::Failed(reason) => Vote::Abort(reason),
            other => Vote::Abort(format!("unexpected answer {other:?}")),
        }
    }
}
