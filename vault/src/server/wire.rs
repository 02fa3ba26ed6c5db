//! What travels on request streams between clients and nodes, and between
//! nodes: one enum for the transport, so one endpoint serves both.
//!
//! Variants are only ever appended: postcard numbers them by position, so a
//! node of an older build still decodes the ones it knows.

use crate::protocol::{ClientRequest, Decision, Reply, Vote};
use consensus::node::{NodeReply, NodeRequest};
use serde::{Deserialize, Serialize};

/// A request on a vault node's endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireRequest {
    /// From a client (or forwarded by a node for a client).
    Client(ClientRequest),
    /// From another node; refused unless the caller's certificate is a node's.
    Node(NodeRequest),
    /// A two-phase-commit message from another node; refused unless the
    /// caller's certificate is a node's.
    TwoPc(TwoPcRequest),
}

/// The answer to a [`WireRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireResponse {
    /// The answer to a client request.
    Client(Reply),
    /// The answer to a node request.
    Node(NodeReply),
    /// The answer to a two-phase-commit message.
    TwoPc(TwoPcReply),
}

/// A two-phase-commit message between nodes (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TwoPcRequest {
    /// Coordinator → participant: vote on deleting `owner`'s `name` at
    /// `version` in transaction `tx`.
    Vote {
        /// The transaction id.
        tx: String,
        /// The secret's owner.
        owner: String,
        /// The secret's name.
        name: String,
        /// The version the coordinator read.
        version: u64,
        /// The log index the coordinator's read was linearized at: the
        /// participant first applies through it, so a merely lagging node
        /// votes on the state the coordinator saw instead of aborting.
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
        /// The secret's owner (the decision entry is that owner's command).
        owner: String,
        /// The secret's name.
        name: String,
        /// The version voted on.
        version: u64,
        /// How far the asking participant has applied the log: the leader
        /// proposes no abort for an asker below its pruning horizon, whose
        /// decision may be waiting in its own log (`store/pruning.rs`).
        applied_index: u64,
    },
}

/// The answer to a [`TwoPcRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TwoPcReply {
    /// The participant's vote; `reason` says why when it is an abort.
    Voted {
        /// `VOTE_COMMIT` or `VOTE_ABORT`.
        vote: Vote,
        /// Why the participant votes abort.
        reason: Option<String>,
    },
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
    /// time, a store failure); one sentence.
    Failed(String),
}
