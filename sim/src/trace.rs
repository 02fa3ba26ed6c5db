//! The readable trace of a run (`RAFT_SIM_TRACE=1`), worded like the log
//! lines of SPEC §7 so a simulated run reads like a real cluster's log:
//! `Node node1 sends RPC AppendEntries to Node node2`,
//! `Node node2 runs RPC AppendEntries called by Node node1`, plus crashes,
//! restarts, partitions, elections and client operations.

use consensus::raft::{Message, NodeId, Role, SoftState};
use std::fmt::Display;

/// Prints trace lines when enabled, nothing otherwise.
pub(crate) struct Trace {
    enabled: bool,
}

impl Trace {
    /// A trace that prints iff `enabled`.
    pub(crate) fn new(enabled: bool) -> Self {
        Self { enabled }
    }

    /// Prints one line stamped with the step.
    pub(crate) fn line(&self, step: u64, text: impl Display) {
        if self.enabled {
            println!("[step {step:>5}] {text}");
        }
    }

    /// A message handed to the network.
    pub(crate) fn sends(&self, step: u64, message: &Message) {
        if self.enabled {
            let (from, to, rpc) = (message.from, message.to, message.rpc_name());
            self.line(
                step,
                format_args!("Node {from} sends RPC {rpc} to Node {to}"),
            );
        }
    }

    /// A message delivered to its recipient.
    pub(crate) fn runs(&self, step: u64, message: &Message) {
        if self.enabled {
            let (from, to, rpc) = (message.from, message.to, message.rpc_name());
            self.line(
                step,
                format_args!("Node {to} runs RPC {rpc} called by Node {from}"),
            );
        }
    }

    /// A role change reported by a node's core.
    pub(crate) fn role(&self, step: u64, node: NodeId, soft_state: &SoftState) {
        let term = soft_state.term;
        match soft_state.role {
            Role::Leader => self.line(
                step,
                format_args!("Node {node} is elected leader of term {term}"),
            ),
            Role::Candidate => self.line(
                step,
                format_args!("Node {node} starts an election for term {term}"),
            ),
            Role::PreCandidate => self.line(
                step,
                format_args!("Node {node} starts a pre-vote after term {term}"),
            ),
            Role::Follower => {
                let leader = soft_state
                    .leader
                    .map_or("unknown".to_string(), |id| id.to_string());
                self.line(
                    step,
                    format_args!("Node {node} follows in term {term} (leader {leader})"),
                );
            }
        }
    }
}
