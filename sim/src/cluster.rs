//! A simulated cluster: nodes, network, the application on top (clients,
//! protocol layers) and the invariant checkers, advanced one step at a time.
//! In a step, due messages are delivered, nodes whose tick falls due tick,
//! pending fsyncs complete at random, the application acts, and then every
//! invariant is checked.

use super::abstract_log::AbstractLog;
use super::application::{Application, PlannedCrash, World};
use super::faults::FaultMix;
use super::invariants::{Acknowledged, ClusterView, Invariants, NodeView, StepEvents, Violation};
use super::network::{Network, NetworkFaults};
use super::node::{AppliedCommand, Effects, SimNode};
use super::trace::Trace;
use super::workload::Workload;
use consensus::raft::{Config, Message, NodeId, PlantedBugs, RaftCore, Role};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// Steps per core tick: with elections after 10 to 20 ticks, an election
/// timeout is 50 to 100 steps, against message delays of 1 to 12 steps.
pub(crate) const STEPS_PER_TICK: u64 = 5;

/// Probability that a pending fsync completes in a given step.
const SYNC_PROBABILITY: f64 = 0.6;

/// Typical probability of a fault or operator action in a step of the
/// faulty phase (each run scales it by 0.5, 1, 2 or 4).
pub(crate) const FAULT_PROBABILITY: f64 = 0.02;

/// The cluster under test, with application `A` on top (by default the
/// register clients of the Raft simulation).
pub(crate) struct Cluster<A: Application = Workload> {
    pub(crate) rng: ChaCha8Rng,
    pub(crate) now: u64,
    pub(crate) seed: u64,
    pub(crate) nodes: BTreeMap<NodeId, SimNode<A::Machine>>,
    /// Node ids that may ever run: the initial voters and spares to add.
    pub(crate) all_ids: BTreeSet<NodeId>,
    pub(crate) network: Network<Message>,
    pub(crate) invariants: Invariants,
    pub(crate) app: A,
    pub(crate) trace: Trace,
    pub(crate) planted_bugs: PlantedBugs,
    /// Entries per AppendEntries: small batches widen the windows in which
    /// a follower holds old entries but not the new leader's (Raft §5.4.2).
    max_entries_per_message: usize,
    /// Snapshot chunk size and chunks in flight: most runs cut their
    /// snapshots (tens of bytes) into many chunks, so that streaming ahead,
    /// go-back-N after a lost or overtaken chunk, duplicates and the stall
    /// resend all happen; some send each snapshot whole.
    snapshot_chunk_bytes: usize,
    max_inflight_snapshot_chunks: usize,
    /// Probability of a fault or operator action in a step of the faulty
    /// phase.
    pub(crate) fault_probability: f64,
    /// Probability that a newly elected leader is crashed a few steps later
    /// (before its first entries spread), and restarted a little after:
    /// the leader churn of Raft Figure 8.
    pub(crate) leader_crash_probability: f64,
    /// Faults planned for a later step: (step, order) -> (node, crash?).
    pub(crate) scheduled: BTreeMap<(u64, u64), (NodeId, bool)>,
    /// The next `order` of a planned fault: unique, so that no plan ever
    /// overwrites another planned for the same step.
    pub(crate) next_order: u64,
    /// Whether the faults include voters whose disk is replaced without
    /// their removal first (both simulations; the 2PC one, which needs
    /// every member back to settle, has the operator replace such a voter
    /// when it heals).
    pub(crate) wipe_voters: bool,
    /// Voters that lost their disk and were not removed yet: they must
    /// never again count as the voter they were.
    pub(crate) forgotten: BTreeSet<NodeId>,
    /// Every disk a voter lost, as it was: for the checkers that life of
    /// the voter failed for good, and what it had durably accepted still
    /// counts toward the majorities that committed it (also after the id
    /// was removed, or came back as a new life).
    pub(crate) lost_disks: Vec<(NodeId, AbstractLog)>,
    /// Which kinds of fault this run has (swarm testing).
    pub(crate) fault_mix: FaultMix,
    /// Last commit index traced per node and incarnation.
    pub(crate) commits_seen: BTreeMap<NodeId, (u64, u64)>,
    /// The step of each node's next tick; random offsets keep the nodes
    /// from ticking in lockstep.
    next_tick: BTreeMap<NodeId, u64>,
}

/// A violation or a broken contract, with the step it happened at.
#[derive(Debug, Clone)]
pub(crate) struct StepFailure {
    pub(crate) step: u64,
    pub(crate) violation: Violation,
}

impl<A: Application> Cluster<A> {
    /// Bootstraps `voters` nodes (node1..) plus `spares` nodes that are not
    /// members yet, with `app` on top.
    pub(crate) fn new(seed: u64, rng: ChaCha8Rng, voters: u64, spares: u64, app: A) -> Self {
        let all_ids: BTreeSet<NodeId> = (1..=voters + spares).map(NodeId).collect();
        let mut cluster = Self {
            rng,
            now: 0,
            seed,
            nodes: all_ids.iter().map(|id| (*id, SimNode::new(*id))).collect(),
            all_ids: all_ids.clone(),
            network: Network::new(NetworkFaults::RELIABLE),
            invariants: Invariants::new(),
            app,
            trace: Trace::new(false),
            planted_bugs: PlantedBugs::default(),
            max_entries_per_message: 8,
            snapshot_chunk_bytes: 64,
            max_inflight_snapshot_chunks: 3,
            fault_probability: FAULT_PROBABILITY,
            leader_crash_probability: 0.0,
            scheduled: BTreeMap::new(),
            next_order: 0,
            wipe_voters: false,
            forgotten: BTreeSet::new(),
            lost_disks: Vec::new(),
            fault_mix: FaultMix::default(),
            commits_seen: BTreeMap::new(),
            next_tick: BTreeMap::new(),
        };
        cluster.leader_crash_probability = [0.0, 0.0, 0.2, 0.5, 1.0][cluster.rng.gen_range(0..5)];
        cluster.max_entries_per_message = [1, 3, 8, 64][cluster.rng.gen_range(0..4)];
        cluster.snapshot_chunk_bytes = [4, 8, 16, 64][cluster.rng.gen_range(0..4)];
        cluster.max_inflight_snapshot_chunks = [1, 3, 8][cluster.rng.gen_range(0..3)];
        cluster.fault_probability =
            [0.5, 1.0, 2.0, 4.0][cluster.rng.gen_range(0..4)] * FAULT_PROBABILITY;
        for id in &all_ids {
            let first = cluster.rng.gen_range(1..=STEPS_PER_TICK);
            cluster.next_tick.insert(*id, first);
        }
        cluster
    }

    /// Starts the initial voters as `cluster init` + `node run` do: the
    /// founding state (entry 1, the membership) is written to each disk
    /// first, and each node starts from its disk.
    pub(crate) fn bootstrap(&mut self, voters: u64) -> Result<(), StepFailure> {
        let members: BTreeSet<NodeId> = (1..=voters).map(NodeId).collect();
        for id in &members {
            let mut founding = RaftCore::bootstrap(self.config(*id), members.clone())
                .map_err(|error| self.failure("bootstrap", error.to_string()))?;
            let ready = founding.ready();
            let config = self.config(*id);
            let Some(node) = self.nodes.get_mut(id) else {
                continue;
            };
            if let Some(hard_state) = ready.hard_state {
                node.disk.write_hard_state(hard_state);
            }
            let written = node.disk.write_entries(&ready.entries);
            let started = written.and_then(|()| node.restart(config));
            started.map_err(|detail| self.failure("bootstrap", detail))?;
        }
        Ok(())
    }

    /// The configuration every node of this run uses.
    pub(crate) fn config(&self, id: NodeId) -> Config {
        let mut config = Config::new(id, self.seed);
        // Small batches and chunks so that batching, backtracking and
        // chunked snapshots all happen in short runs.
        config.max_entries_per_message = self.max_entries_per_message;
        config.max_inflight_appends = 4;
        config.snapshot_chunk_bytes = self.snapshot_chunk_bytes;
        config.max_inflight_snapshot_chunks = self.max_inflight_snapshot_chunks;
        config.planted_bugs = self.planted_bugs;
        config
    }

    fn failure(&self, invariant: &'static str, detail: String) -> StepFailure {
        let violation = Violation {
            invariant,
            section: "runtime contract",
            detail,
        };
        StepFailure {
            step: self.now,
            violation,
        }
    }

    /// Advances the simulation by one step, injecting a random fault now and
    /// then when `faults` is set, and checks every invariant.
    pub(crate) fn step(&mut self, faults: bool) -> Result<(), StepFailure> {
        self.now += 1;
        let mut effects = Effects::<A::Machine>::default();
        if faults {
            self.run_scheduled()?;
            if self.rng.gen_bool(self.fault_probability) {
                self.random_fault(&mut effects)?;
            }
        }
        while let Some(delivery) = self.network.deliver(self.now) {
            let Some(node) = self.nodes.get_mut(&delivery.to) else {
                continue;
            };
            let Some(core) = node.core.as_mut() else {
                continue;
            };
            self.trace.runs(self.now, &delivery.message);
            core.step(delivery.message);
            self.drain(delivery.to, &mut effects)?;
        }
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in &ids {
            let next = self.next_tick.entry(*id).or_insert(0);
            if *next <= self.now {
                *next = self.now + STEPS_PER_TICK;
                let mut quiet_tick_spoke = None;
                if let Some(core) = self.nodes.get_mut(id).and_then(|node| node.core.as_mut()) {
                    // The runtime sleeps through ticks the core says are
                    // not due (`ticks_until_due`): such a tick must do
                    // nothing but count.
                    let due = core.ticks_until_due();
                    let before = (core.role(), core.term(), core.has_ready());
                    core.tick();
                    let after = (core.role(), core.term(), core.has_ready());
                    if due > 1 && !before.2 && after != before {
                        quiet_tick_spoke = Some(format!(
                            "node {id}: a tick with {due} ticks to go changed {before:?} into {after:?}"
                        ));
                    }
                }
                if let Some(detail) = quiet_tick_spoke {
                    return Err(self.failure("ticks_until_due", detail));
                }
                self.drain(*id, &mut effects)?;
            }
        }
        for id in &ids {
            while self.nodes.get(id).is_some_and(SimNode::has_pending_writes)
                && self.rng.gen_bool(SYNC_PROBABILITY)
            {
                self.sync(*id, &mut effects)?;
            }
        }
        let world = World {
            now: self.now,
            faults,
            rng: &mut self.rng,
            nodes: &mut self.nodes,
            trace: &self.trace,
            network: &self.network,
        };
        let crashes = self.app.act(world, &effects);
        let crashes = crashes.map_err(|violation| StepFailure {
            step: self.now,
            violation,
        })?;
        self.carry_out(crashes);
        for id in &ids {
            self.drain(*id, &mut effects)?;
        }
        let events = self.route(effects);
        self.observe_commits(faults);
        self.check(&events)
    }

    /// Crashes the nodes the application asked for and plans their
    /// restarts.
    fn carry_out(&mut self, crashes: Vec<PlannedCrash>) {
        for crash in crashes {
            if !self.nodes.get(&crash.node).is_some_and(SimNode::is_up) {
                continue;
            }
            self.crash(crash.node);
            let order = self.next_order;
            self.next_order += 1;
            let restart_at = self.now + crash.restart_after.max(1);
            self.scheduled
                .insert((restart_at, order), (crash.node, false));
        }
    }

    /// Drains a node's Ready batches into `effects`.
    pub(crate) fn drain(
        &mut self,
        id: NodeId,
        effects: &mut Effects<A::Machine>,
    ) -> Result<(), StepFailure> {
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        let result = node.drain(&self.invariants.log_matching, effects);
        result.map_err(|detail| self.failure("ready contract", detail))
    }

    /// Completes one pending fsync of a node.
    pub(crate) fn sync(
        &mut self,
        id: NodeId,
        effects: &mut Effects<A::Machine>,
    ) -> Result<(), StepFailure> {
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        let result = node.sync(&self.invariants.log_matching, effects);
        result.map_err(|detail| self.failure("ready contract", detail))
    }

    /// Hands messages to the network and answers clients; returns the
    /// events the invariants look at.
    fn route(&mut self, effects: Effects<A::Machine>) -> StepEvents {
        for (node, soft_state) in &effects.role_changes {
            self.trace.role(self.now, *node, soft_state);
            if soft_state.role == Role::Leader {
                self.maybe_plan_leader_crash(*node, 1.0, 30);
            }
        }
        for message in effects.messages {
            self.trace.sends(self.now, &message);
            let (from, to) = (message.from, message.to);
            self.network
                .send(&mut self.rng, self.now, from, to, message);
        }
        let acknowledged = self.answer_clients(&effects.commands);
        let events = StepEvents {
            applied: effects.applied,
            acknowledged,
        };
        for (node, request) in effects.reads_served {
            if let Some(node) = self.nodes.get(&node) {
                self.app
                    .on_read_served(&mut self.rng, self.now, node, request);
            }
        }
        for (_, request) in effects.reads_aborted {
            self.app.on_read_aborted(request, self.now);
        }
        events
    }

    /// Answers the clients waiting for the applied commands; returns the
    /// acknowledgements, which must be durable on a majority.
    fn answer_clients(&mut self, commands: &[AppliedCommand<A::Machine>]) -> Vec<Acknowledged> {
        let mut acknowledged = Vec::new();
        for applied in commands {
            let command = &applied.command;
            let (id, index, chain) = (applied.node, applied.index, applied.chain);
            let answered = self.app.on_applied(&mut self.rng, self.now, applied);
            let Some(node) = self.nodes.get(&id).filter(|_| answered) else {
                continue;
            };
            self.trace.line(
                self.now,
                format_args!(
                    "Node {id} answers a client: {command:?} at index {index} -> {:?}",
                    applied.output
                ),
            );
            // A leader commits by the configuration in force in its own
            // log when it counts: the one at the entry or any later change
            // (soak seed 60065559542: entries 75..78 committed under a
            // change at 79, answered after the removal at 80 was appended),
            // possibly one the answering node has not received yet (soak
            // seed 60065288171: entry 85 committed by {3, 7} of {2, 3, 7},
            // after node3 had appended the removal of node1 at 86).
            let mut voter_sets = applied.voters.clone();
            voter_sets.push(node.latest_voters());
            voter_sets.extend(
                self.nodes
                    .values()
                    .filter(|other| {
                        other
                            .core
                            .as_ref()
                            .is_some_and(|core| core.role() == Role::Leader)
                    })
                    .map(SimNode::latest_voters),
            );
            acknowledged.push(Acknowledged {
                node: id,
                index,
                chain,
                voter_sets,
            });
        }
        acknowledged
    }

    fn check(&mut self, events: &StepEvents) -> Result<(), StepFailure> {
        let written: BTreeMap<NodeId, Option<u64>> = self
            .nodes
            .iter_mut()
            .map(|(id, node)| (*id, node.log.take_dirty()))
            .collect();
        let nodes = self
            .nodes
            .iter()
            .filter_map(|(id, node)| {
                let core = node.core.as_ref()?;
                Some(NodeView {
                    id: *id,
                    incarnation: node.incarnation,
                    is_leader: core.role() == Role::Leader,
                    term: core.term(),
                    commit: core.commit_index(),
                    log: &node.log,
                    log_written_from: written.get(id).copied().flatten(),
                })
            })
            .collect();
        let lost = self.lost_disks.iter();
        let disks = self
            .nodes
            .iter()
            .map(|(id, node)| (*id, &node.disk.view))
            .chain(lost.map(|(id, view)| (*id, view)))
            .collect();
        let view = ClusterView {
            nodes,
            disks,
            events,
        };
        let now = self.now;
        self.invariants
            .check(&view)
            .map_err(|violation| StepFailure {
                step: now,
                violation,
            })
    }

    /// The leader with the highest term among running nodes, if any.
    pub(crate) fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|(id, node)| {
                node.core
                    .as_ref()
                    .map(|core| (core.term(), core.role(), *id))
            })
            .filter(|(_, role, _)| *role == Role::Leader)
            .max()
            .map(|(_, _, id)| id)
    }
}
