//! The safety properties checked after every simulation step, one per file,
//! each tagged with the section of the Raft paper (Ongaro & Ousterhout, 2014)
//! it checks. Checkers see the cluster only through [`ClusterView`], an
//! abstract picture (roles, terms, commit indices, chain-hashed logs and the
//! events of the step), so they can be tested without a Raft core.

mod commit_monotonic;
mod durable_ack;
mod election_safety;
mod leader_completeness;
mod log_matching;
mod state_machine_safety;

pub(crate) use log_matching::LogMatching;

use super::abstract_log::{AbstractLog, Digest};
use consensus::raft::{LogIndex, NodeId, Term};
use std::collections::BTreeSet;

/// One node as the checkers see it.
#[derive(Debug)]
pub(crate) struct NodeView<'a> {
    /// The node.
    pub(crate) id: NodeId,
    /// Counts restarts: volatile state starts over with each incarnation.
    pub(crate) incarnation: u64,
    /// Whether the node believes it leads `term`.
    pub(crate) is_leader: bool,
    /// The node's current term.
    pub(crate) term: Term,
    /// The node's commit index.
    pub(crate) commit: LogIndex,
    /// The log the core has asked to persist, in order: its view of the log.
    pub(crate) log: &'a AbstractLog,
    /// Lowest index of `log` written during this step, if any.
    pub(crate) log_written_from: Option<LogIndex>,
}

/// A state machine applied a command entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Applied {
    /// Which node applied it.
    pub(crate) node: NodeId,
    /// The entry's index.
    pub(crate) index: LogIndex,
    /// The entry's term.
    pub(crate) term: Term,
    /// Digest of the entry's payload.
    pub(crate) digest: Digest,
}

/// A client was told its command succeeded.
#[derive(Clone, Debug)]
pub(crate) struct Acknowledged {
    /// The node that answered.
    pub(crate) node: NodeId,
    /// Where the command sits in the log.
    pub(crate) index: LogIndex,
    /// Chain hash of the log up to it on the answering node.
    pub(crate) chain: Digest,
    /// Voter sets any of which may have committed the entry.
    pub(crate) voter_sets: Vec<BTreeSet<NodeId>>,
}

/// Things that happened during one step, as opposed to standing state.
#[derive(Clone, Debug, Default)]
pub(crate) struct StepEvents {
    /// Entries applied to state machines.
    pub(crate) applied: Vec<Applied>,
    /// Acknowledgements sent to clients.
    pub(crate) acknowledged: Vec<Acknowledged>,
}

/// The whole cluster after a step. Crashed nodes are absent from `nodes`
/// but their disks are in `disks`.
#[derive(Debug)]
pub(crate) struct ClusterView<'a> {
    /// Running nodes.
    pub(crate) nodes: Vec<NodeView<'a>>,
    /// Every node's durable log, running or not, and the disk a forgotten
    /// voter lost (under the same id: count holders by id).
    pub(crate) disks: Vec<(NodeId, &'a AbstractLog)>,
    /// What happened in the step.
    pub(crate) events: &'a StepEvents,
}

/// A broken safety property.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invariant {invariant} (Raft {section}) violated: {detail}")]
pub(crate) struct Violation {
    /// The property's name.
    pub(crate) invariant: &'static str,
    /// The section of the Raft paper that states it.
    pub(crate) section: &'static str,
    /// What exactly went wrong.
    pub(crate) detail: String,
}

/// A safety property checked after every step. Checkers may keep history
/// (terms seen, entries applied) across steps.
pub(crate) trait Invariant {
    /// The property's name, as printed in a violation.
    fn name(&self) -> &'static str;
    /// The section of the Raft paper that states it.
    fn section(&self) -> &'static str;
    /// Checks the property against the cluster after a step; `Err` carries
    /// the details of the violation.
    fn check(&mut self, view: &ClusterView<'_>) -> Result<(), String>;
}

/// Every checker, run in a fixed order.
pub(crate) struct Invariants {
    /// Log Matching also records the chain hash of every (index, term) ever
    /// seen, which the cluster needs to build a snapshot's base.
    pub(crate) log_matching: LogMatching,
    others: Vec<Box<dyn Invariant>>,
}

impl Invariants {
    /// All the checkers, with empty memories.
    pub(crate) fn new() -> Self {
        Self {
            log_matching: LogMatching::default(),
            others: vec![
                Box::new(election_safety::ElectionSafety::default()),
                Box::new(leader_completeness::LeaderCompleteness::default()),
                Box::new(state_machine_safety::StateMachineSafety::default()),
                Box::new(commit_monotonic::CommitMonotonic::default()),
                Box::new(durable_ack::DurableAck),
            ],
        }
    }

    /// Runs every checker; the first violation wins.
    pub(crate) fn check(&mut self, view: &ClusterView<'_>) -> Result<(), Violation> {
        let checkers = std::iter::once(&mut self.log_matching as &mut dyn Invariant)
            .chain(self.others.iter_mut().map(|boxed| boxed.as_mut()));
        for checker in checkers {
            checker.check(view).map_err(|detail| Violation {
                invariant: checker.name(),
                section: checker.section(),
                detail,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
