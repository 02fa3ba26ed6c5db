//! What travels on request streams between clients and vault nodes, and
//! between vault nodes: the bus's [`bus::WireRequest`] with the vault's
//! client request and its two-phase-commit messages.
//!
//! Variants are only ever appended: postcard numbers them by position, so a
//! node of an older build still decodes the ones it knows. The bus's
//! `Client`, `Node`, `Peer` are the vault's former `Client`, `Node`,
//! `TwoPc`, so the encoding is unchanged.

use crate::protocol::{ClientRequest, Decision, Reply, Vote};
use serde::{Deserialize, Serialize};

/// A request on a vault node's endpoint: from a client (or forwarded by a
/// node for a client), a runtime request from another node, or a
/// two-phase-commit message from another node.
pub type WireRequest = bus::WireRequest<ClientRequest, TwoPcRequest>;

/// The answer to a [`WireRequest`].
pub type WireResponse = bus::WireResponse<Reply, TwoPcReply>;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{encode, Request};

    /// The vault's requests keep the wire numbers they had before the bus:
    /// Client 0, Node 1, TwoPc 2.
    #[test]
    fn the_wire_encoding_is_the_one_before_the_bus() {
        let client = encode(&WireRequest::Client(ClientRequest {
            session: None,
            request: Request::Status,
        }));
        let node = encode(&WireRequest::Node(consensus::node::NodeRequest::ReadIndex));
        let twopc = encode(&WireRequest::Peer(TwoPcRequest::Decide {
            tx: "tx".into(),
            decision: Decision::Commit,
        }));
        assert_eq!((client[0], node[0], twopc[0]), (0, 1, 2));
        let reply = encode(&WireResponse::Peer(TwoPcReply::Failed("no".into())));
        assert_eq!(reply[0], 2);
    }
}
