//! What runs on top of a simulated Raft cluster: the clients and, for the
//! 2PC simulation, the protocol layer around the replicated log.
//!
//! The cluster ([`super::cluster::Cluster`]) owns the Raft side (cores,
//! disks, the Raft network, faults, the Raft invariants); an
//! [`Application`] owns everything else and sees the nodes through a
//! [`World`] once per step. The register workload of the Raft simulation is
//! one application; the two-phase-commit layer of `twopc` is another.

use super::invariants::Violation;
use super::network::Network;
use super::node::{AppliedCommand, Effects, SimMachine, SimNode};
use super::trace::Trace;
use consensus::raft::{Message, NodeId, RequestId};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// The cluster as an application sees it during its turn of a step.
pub(crate) struct World<'a, M: SimMachine> {
    /// The current step.
    pub(crate) now: u64,
    /// Whether the run is in its faulty phase (an application may inject
    /// its own faults only then).
    pub(crate) faults: bool,
    /// The run's one source of randomness.
    pub(crate) rng: &'a mut ChaCha8Rng,
    /// Every node, running or not.
    pub(crate) nodes: &'a mut BTreeMap<NodeId, SimNode<M>>,
    /// The run's trace.
    pub(crate) trace: &'a Trace,
    /// The Raft network: its cut links and weather apply to every message
    /// between the nodes, so an application's own traffic mirrors them.
    pub(crate) network: &'a Network<Message>,
}

/// A crash an application asks for (a fault aimed at a protocol step): the
/// cluster crashes `node` at once and restarts it `restart_after` steps
/// later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PlannedCrash {
    /// The node to crash.
    pub(crate) node: NodeId,
    /// Steps until its restart.
    pub(crate) restart_after: u64,
}

/// Why a node's disk was emptied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wipe {
    /// The operator added the id (back) as a learner: it starts empty, a
    /// new member.
    Rejoin,
    /// A voter's disk was replaced without its removal first: by id it is
    /// still a member, but what it durably held is gone.
    DiskLost,
}

/// Clients and protocol layers driven by the cluster, once per step.
pub(crate) trait Application {
    /// The state machine every node applies committed commands to.
    type Machine: SimMachine;

    /// The application's turn in a step: after messages were delivered,
    /// nodes ticked and fsyncs completed (so `effects` holds everything
    /// applied so far in this step), before the new Ready batches are
    /// drained and routed. Returns the crashes it wants now, or the
    /// violation of one of its own invariants.
    fn act(
        &mut self,
        world: World<'_, Self::Machine>,
        effects: &Effects<Self::Machine>,
    ) -> Result<Vec<PlannedCrash>, Violation>;

    /// A node applied a command (at the end of the step): returns whether
    /// a client waiting for exactly that was answered (an acknowledgement
    /// the durable-ack invariant checks).
    fn on_applied(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: u64,
        applied: &AppliedCommand<Self::Machine>,
    ) -> bool;

    /// `node` may now serve ReadIndex request `request`.
    fn on_read_served(
        &mut self,
        _rng: &mut ChaCha8Rng,
        _now: u64,
        _node: &SimNode<Self::Machine>,
        _request: RequestId,
    ) {
    }

    /// `request` will never be served.
    fn on_read_aborted(&mut self, _request: RequestId, _now: u64) {}

    /// `node` crashed: whatever the application kept in its memory is gone.
    fn on_crash(&mut self, node: NodeId);

    /// `node`'s disk is empty now: it was wiped to rejoin as a new learner,
    /// or lost while the node was a voter (see [`Wipe`]).
    fn on_wipe(&mut self, _node: NodeId, _wipe: Wipe) {}

    /// `node` restarted from its disk (its state machine restored from its
    /// own snapshot; the core hands the later entries again).
    fn on_restart(&mut self, _node: &SimNode<Self::Machine>) {}
}
