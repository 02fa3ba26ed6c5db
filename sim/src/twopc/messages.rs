//! The 2PC messages between simulated nodes, and their trace lines in the
//! wording of SPEC §7 (`Phase Coordinator of Node node1 sends RPC Vote to
//! Phase Participant-Vote of Node node4`, ...).
//!
//! They travel through their own [`Network`](super::super::network::Network)
//! that mirrors the Raft network's cut links and weather, so partitions and
//! losses hit both kinds of traffic alike.

use consensus::raft::NodeId;
use consensus::twopc::{Decision, Vote, VoteRequest};
use std::fmt;

/// One 2PC message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TwoPcMessage {
    /// Coordinator -> participant: vote on `request`, once you applied the
    /// log through `read_index` (the index the coordinator read the
    /// version at).
    Vote {
        /// What to vote on.
        request: VoteRequest,
        /// Apply through this index before voting (bounded wait).
        read_index: u64,
    },
    /// Participant -> coordinator: the vote.
    Voted {
        /// The transaction.
        tx: String,
        /// The vote.
        vote: Vote,
    },
    /// Coordinator -> participant: the logged decision; acknowledge once
    /// applied.
    Decide {
        /// The transaction.
        tx: String,
        /// The decision the log holds.
        decision: Decision,
    },
    /// Participant -> coordinator: the decision is applied here.
    Acked {
        /// The transaction.
        tx: String,
    },
    /// Participant -> leader (recovery): the transaction is undecided here
    /// past the decision timeout.
    Resolve {
        /// The transaction.
        tx: String,
        /// The secret it locks.
        name: String,
        /// The version it voted on.
        version: u64,
        /// How far the asker has applied the log (the leader proposes no
        /// abort for an asker below its pruning horizon).
        applied_index: u64,
    },
}

/// A message leaving `from` for `to`, worded as SPEC §7 logs it.
pub(crate) struct Sends<'a> {
    /// Sender.
    pub(crate) from: NodeId,
    /// Recipient.
    pub(crate) to: NodeId,
    /// The message.
    pub(crate) message: &'a TwoPcMessage,
}

impl fmt::Display for Sends<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (from, to) = (self.from, self.to);
        match self.message {
            TwoPcMessage::Vote { .. } => write!(
                f,
                "Phase Coordinator of Node {from} sends RPC Vote to Phase Participant-Vote of Node {to}"
            ),
            TwoPcMessage::Voted { .. } => write!(
                f,
                "Phase Participant-Vote of Node {from} sends RPC Vote to Phase Coordinator of Node {to}"
            ),
            TwoPcMessage::Decide { .. } => write!(
                f,
                "Phase Coordinator of Node {from} sends RPC Decide to Phase Participant-Decision of Node {to}"
            ),
            TwoPcMessage::Acked { .. } => write!(
                f,
                "Phase Participant-Decision of Node {from} sends RPC Ack to Phase Coordinator of Node {to}"
            ),
            TwoPcMessage::Resolve { tx, .. } => write!(
                f,
                "Phase Participant-Recovery of Node {from} asks Node {to} to resolve tx {tx}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_lines_use_the_spec_wording() {
        let vote = TwoPcMessage::Vote {
            request: VoteRequest {
                tx: "t1@node1".into(),
                owner: "owner".into(),
                name: "k0".into(),
                version: 1,
            },
            read_index: 3,
        };
        let line = Sends {
            from: NodeId(1),
            to: NodeId(4),
            message: &vote,
        };
        assert_eq!(
            line.to_string(),
            "Phase Coordinator of Node node1 sends RPC Vote to Phase Participant-Vote of Node node4"
        );
        let decide = TwoPcMessage::Decide {
            tx: "t1@node1".into(),
            decision: Decision::Commit,
        };
        let line = Sends {
            from: NodeId(1),
            to: NodeId(4),
            message: &decide,
        };
        assert_eq!(
            line.to_string(),
            "Phase Coordinator of Node node1 sends RPC Decide to Phase Participant-Decision of Node node4"
        );
    }
}
