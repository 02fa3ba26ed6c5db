//! The 2PC messages between simulated nodes, and their trace lines in the
//! wording of SPEC §7 (`Phase Coordinator of Node node1 sends RPC Vote to
//! Phase Participant-Vote of Node node4`, ...).
//!
//! They travel through their own [`Network`](super::super::network::Network)
//! that mirrors the Raft network's cut links and weather, so partitions and
//! losses hit both kinds of traffic alike.

use consensus::raft::NodeId;
use consensus::twopc::{TwoPcReply, TwoPcRequest};
use std::fmt;

/// What a simulated delete locks on each participant: a secret of the one
/// simulated owner at a version (the protocol's resource type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SimSecret {
    /// The secret's name.
    pub(crate) name: String,
    /// The version every participant must hold.
    pub(crate) version: u64,
}

/// One 2PC message: the protocol's own wire types, as the vault sends them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TwoPcMessage {
    /// Coordinator → participant (Vote, Decide) or participant → leader
    /// (Resolve).
    Request(TwoPcRequest<SimSecret>),
    /// Participant → coordinator: the answer to a request about `tx` (a
    /// vote, or an ack once the decision is applied).
    Reply {
        /// The transaction.
        tx: String,
        /// The answer.
        reply: TwoPcReply,
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
            TwoPcMessage::Request(TwoPcRequest::Vote { .. }) => write!(
                f,
                "Phase Coordinator of Node {from} sends RPC Vote to Phase Participant-Vote of Node {to}"
            ),
            TwoPcMessage::Reply {
                reply: TwoPcReply::Voted(_),
                ..
            } => write!(
                f,
                "Phase Participant-Vote of Node {from} sends RPC Vote to Phase Coordinator of Node {to}"
            ),
            TwoPcMessage::Request(TwoPcRequest::Decide { .. }) => write!(
                f,
                "Phase Coordinator of Node {from} sends RPC Decide to Phase Participant-Decision of Node {to}"
            ),
            TwoPcMessage::Reply {
                reply: TwoPcReply::Acked { .. },
                ..
            } => write!(
                f,
                "Phase Participant-Decision of Node {from} sends RPC Ack to Phase Coordinator of Node {to}"
            ),
            TwoPcMessage::Request(TwoPcRequest::Resolve { tx, .. }) => write!(
                f,
                "Phase Participant-Recovery of Node {from} asks Node {to} to resolve tx {tx}"
            ),
            TwoPcMessage::Reply { tx, reply } => {
                write!(f, "Node {from} answers Node {to} about tx {tx}: {reply:?}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus::twopc::{Decision, VoteRequest};

    #[test]
    fn trace_lines_use_the_spec_wording() {
        let vote = TwoPcMessage::Request(TwoPcRequest::Vote {
            request: VoteRequest {
                tx: "t1@node1".into(),
                resource: SimSecret {
                    name: "k0".into(),
                    version: 1,
                },
            },
            read_index: 3,
        });
        let line = Sends {
            from: NodeId(1),
            to: NodeId(4),
            message: &vote,
        };
        assert_eq!(
            line.to_string(),
            "Phase Coordinator of Node node1 sends RPC Vote to Phase Participant-Vote of Node node4"
        );
        let decide = TwoPcMessage::Request(TwoPcRequest::Decide {
            tx: "t1@node1".into(),
            decision: Decision::Commit,
        });
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
