//! The 2PC layer as the application of a simulated Raft cluster: its state
//! (participants, coordinators, clients, the 2PC network, the nemesis, the
//! oracle) and the order in which it acts in each step.
//!
//! The mechanisms live next to this file: `voting.rs` (a participant's
//! vote), `deciding.rs` (the coordinator runtime), `recovery.rs` (prepared
//! transactions resolved through the leader), `clients.rs` (the workload).

use super::clients::Clients;
use super::deciding::CoordinatorRun;
use super::machine::{Effect, VaultCommand, VaultModel};
use super::messages::{Sends, TwoPcMessage};
use super::nemesis::{CrashNemesis, CrashPoint};
use super::oracle::Oracle;
use super::participant::ParticipantNode;
use super::{TwoPcBugs, RECOVERY_PERIOD};
use crate::application::{Application, PlannedCrash, Wipe, World};
use crate::invariants::Violation;
use crate::network::{Network, NetworkFaults};
use crate::node::{AppliedCommand, Effects, SimNode};
use consensus::raft::NodeId;
use consensus::twopc::{TransactionAge, TwoPcReply, TwoPcRequest, VotePolicy};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// Probability that a pending participant-table fsync completes in a step.
const SYNC_PROBABILITY: f64 = 0.6;

/// A node that votes abort for a while (its policy is `abort`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AbortWindow {
    /// The node.
    pub(crate) node: NodeId,
    /// First step of the window.
    pub(crate) from: u64,
    /// First step after it.
    pub(crate) until: u64,
}

/// Figures of one run.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stats {
    /// Recovery proposals made by leaders.
    pub(crate) recovery_proposals: u64,
    /// Coordinators that gave up on logging their decision.
    pub(crate) abandoned: u64,
    /// Adds answered.
    pub(crate) adds_answered: u64,
    /// Commits a coordinator turned into aborts before proposing them,
    /// because its membership changed while it voted.
    pub(crate) coordinator_membership_aborts: u64,
    /// Votes held under wait-die: an older transaction waiting for a
    /// younger one's decision.
    pub(crate) wait_die_waits: u64,
    /// Disks wiped (a node removed and added back empty, or a voter's
    /// disk replaced without its removal first).
    pub(crate) wipes: u64,
}

/// The 2PC layer of one run.
pub(crate) struct TwoPcApp {
    /// 2PC traffic; mirrors the Raft network's cuts and weather.
    pub(crate) network: Network<TwoPcMessage>,
    /// Every node's participant.
    pub(crate) participants: BTreeMap<NodeId, ParticipantNode>,
    /// Live coordinators per node (lost when the node crashes).
    pub(crate) coordinators: BTreeMap<NodeId, BTreeMap<String, CoordinatorRun>>,
    /// The workload.
    pub(crate) clients: Clients,
    /// Crashes at protocol steps.
    pub(crate) nemesis: CrashNemesis,
    /// Ghost state and the 2PC checks.
    pub(crate) oracle: Oracle,
    /// Planted protocol bugs (teeth tests).
    pub(crate) bugs: TwoPcBugs,
    /// When some node votes abort, if it does in this run.
    pub(crate) abort_window: Option<AbortWindow>,
    /// Figures.
    pub(crate) stats: Stats,
    /// Nodes crashing at the end of this turn: they do nothing more in it.
    crashing: BTreeSet<NodeId>,
    /// Numbers transaction ids.
    next_tx: u32,
    /// The leaders' pruning: each leader's mark from its last turn, and
    /// when the next turn comes.
    pub(crate) pruning: super::pruning::Pruning,
}

impl TwoPcApp {
    /// The 2PC layer over nodes `ids`, drawing its plan from `rng`.
    pub(crate) fn new(rng: &mut ChaCha8Rng, ids: &[NodeId], steps: u64, bugs: TwoPcBugs) -> Self {
        let participants = ids
            .iter()
            .map(|id| {
                let participant = ParticipantNode {
                    next_recovery: rng.gen_range(0..RECOVERY_PERIOD),
                    ..ParticipantNode::default()
                };
                (*id, participant)
            })
            .collect();
        let abort_window = rng.gen_bool(0.3).then(|| {
            let from = rng.gen_range(0..steps.max(2) / 2);
            AbortWindow {
                node: ids[rng.gen_range(0..ids.len())],
                from,
                until: from + rng.gen_range(100..=steps.max(101)),
            }
        });
        Self {
            network: Network::new(NetworkFaults::RELIABLE),
            participants,
            coordinators: BTreeMap::new(),
            clients: Clients::new(rng),
            nemesis: CrashNemesis::random(rng),
            oracle: Oracle::default(),
            bugs,
            abort_window,
            stats: Stats::default(),
            crashing: BTreeSet::new(),
            next_tx: 1,
            pruning: super::pruning::Pruning::default(),
        }
    }

    /// A fresh transaction id naming its coordinator, in the vault's form
    /// (coordinator, start time, a number unique per run), so that
    /// concurrent deletes of one secret are ordered by age and wait-die
    /// makes the older one wait as it does on a real node.
    pub(crate) fn next_tx_id(&mut self, coordinator: NodeId, now: u64) -> String {
        let age = TransactionAge {
            started_ms: now,
            coordinator,
            nonce: self.next_tx,
        };
        self.next_tx = self.next_tx.wrapping_add(1);
        age.to_string()
    }

    /// Whether `node` runs and is not crashing in this turn.
    pub(crate) fn is_alive(&self, world: &World<'_, VaultModel>, node: NodeId) -> bool {
        !self.crashing.contains(&node) && world.nodes.get(&node).is_some_and(SimNode::is_up)
    }

    /// Whether the nemesis crashes `node` at `point` (faulty phase only).
    pub(crate) fn strikes(
        &mut self,
        world: &mut World<'_, VaultModel>,
        point: CrashPoint,
        node: NodeId,
    ) -> bool {
        if !world.faults || self.crashing.contains(&node) {
            return false;
        }
        let struck = self
            .nemesis
            .strikes(world.rng, world.trace, world.now, point, node);
        if struck {
            self.crashing.insert(node);
        }
        struck
    }

    /// Sends a 2PC message (a node's message to itself skips the network).
    pub(crate) fn send(
        &mut self,
        world: &mut World<'_, VaultModel>,
        from: NodeId,
        to: NodeId,
        message: TwoPcMessage,
    ) {
        let line = Sends {
            from,
            to,
            message: &message,
        };
        world.trace.line(world.now, line);
        if from == to {
            self.network.send_local(world.now, from, message);
        } else {
            self.network.send(world.rng, world.now, from, to, message);
        }
    }

    /// Sets each node's vote policy for this step.
    fn apply_policies(&mut self, now: u64) {
        let window = self.abort_window;
        for (id, participant) in &mut self.participants {
            let aborts = window.is_some_and(|w| w.node == *id && (w.from..w.until).contains(&now));
            participant.policy = if aborts {
                VotePolicy::Abort
            } else {
                VotePolicy::Commit
            };
        }
    }

    /// Looks at everything applied this step: the oracle checks each
    /// effect, and an applied decision settles the node's row (the vault
    /// does both in the apply transaction). A state machine replaced by a
    /// snapshot settles every row the snapshot decides.
    fn observe_applied(
        &mut self,
        world: &World<'_, VaultModel>,
        effects: &Effects<VaultModel>,
    ) -> Result<(), Violation> {
        for applied in &effects.commands {
            let named = match &applied.command {
                VaultCommand::Decide { participants, .. } => participants.as_slice(),
                VaultCommand::Add { .. } | VaultCommand::Prune { .. } => &[],
            };
            let first = self.oracle.on_effect(
                applied.node,
                applied.index,
                &applied.output,
                &applied.members,
                named,
            )?;
            if let (
                true,
                Effect::Decided {
                    tx,
                    members_changed: true,
                    ..
                },
            ) = (first, &applied.output)
            {
                world.trace.line(
                    world.now,
                    format_args!(
                        "GLOBAL_COMMIT of tx {tx} at index {} is applied as GLOBAL_ABORT: it \
                         names {named:?}, the members in force are {:?}",
                        applied.index, applied.members
                    ),
                );
            }
            if let Effect::Pruned { txs, .. } = &applied.output {
                let participant = self.participants.entry(applied.node).or_default();
                for tx in txs {
                    participant.table.forget_settled(tx);
                }
            }
            let settled = match &applied.output {
                Effect::Decided { tx, decision, .. } => Some((tx, *decision)),
                Effect::AlreadyDecided { tx, first } => Some((tx, *first)),
                _ => None,
            };
            for note in self.oracle.notes.drain(..) {
                world.trace.line(world.now, note);
            }
            let participant = self.participants.entry(applied.node).or_default();
            if let Some((tx, decision)) = settled {
                participant.table.settle(tx, decision);
            }
        }
        for id in &effects.restored {
            if let Some(node) = world.nodes.get(id) {
                self.settle_restored(node);
            }
        }
        Ok(())
    }

    /// Settles the rows a restored state machine decides (skipped by the
    /// planted bug `skip_settle_on_restore`).
    fn settle_restored(&mut self, node: &SimNode<VaultModel>) {
        if self.bugs.skip_settle_on_restore {
            return;
        }
        let participant = self.participants.entry(node.id).or_default();
        participant.table.settle_decided(&node.machine);
    }

    /// Completes participant-table fsyncs at random; a completed prepare
    /// lets its held commit votes leave.
    fn sync_prepares(&mut self, world: &mut World<'_, VaultModel>) {
        let ids: Vec<NodeId> = self.participants.keys().copied().collect();
        for id in ids {
            while self.is_alive(world, id)
                && self
                    .participants
                    .get(&id)
                    .is_some_and(|p| p.table.has_pending())
                && world.rng.gen_bool(SYNC_PROBABILITY)
            {
                let synced = self
                    .participants
                    .get_mut(&id)
                    .and_then(|p| p.table.sync_one());
                if let Some(tx) = synced {
                    self.oracle.on_durable(id, &tx);
                    self.release_held_votes(world, id, &tx);
                }
            }
        }
    }

    /// Delivers the 2PC messages due now.
    fn deliver(&mut self, world: &mut World<'_, VaultModel>) -> Result<(), Violation> {
        while let Some(delivery) = self.network.deliver(world.now) {
            if !self.is_alive(world, delivery.to) {
                continue;
            }
            let (from, to) = (delivery.from, delivery.to);
            match delivery.message {
                TwoPcMessage::Request(TwoPcRequest::Vote {
                    request,
                    read_index,
                }) => self.on_vote_request(world, to, from, request, read_index),
                TwoPcMessage::Request(TwoPcRequest::Decide { tx, .. }) => {
                    self.on_decide(world, to, from, tx)
                }
                TwoPcMessage::Request(TwoPcRequest::Resolve {
                    tx,
                    resource,
                    applied_index,
                }) => {
                    let question = super::recovery::Question {
                        asker: from,
                        tx,
                        name: resource.name,
                        version: resource.version,
                        applied_index,
                    };
                    self.on_resolve(world, to, &question)?
                }
                TwoPcMessage::Reply { tx, reply } => match reply {
                    TwoPcReply::Acked { .. } => self.on_acked(world, to, from, &tx)?,
                    other => self.on_voted(world, to, from, &tx, other.into_vote())?,
                },
            }
        }
        Ok(())
    }

    /// Proposes `command` from `from` through the leader it knows (a
    /// follower forwards; the forward needs the link to the leader).
    /// Returns the leader that took it.
    pub(crate) fn propose(
        &mut self,
        world: &mut World<'_, VaultModel>,
        from: NodeId,
        command: &VaultCommand,
    ) -> Option<NodeId> {
        let core = world.nodes.get(&from)?.core.as_ref()?;
        let target = match core.role() {
            consensus::raft::Role::Leader => from,
            _ => core.leader()?,
        };
        if target != from && (world.network.is_cut(from, target) || !self.is_alive(world, target)) {
            return None;
        }
        let core = world.nodes.get_mut(&target)?.core.as_mut()?;
        core.propose(vec![command.encode()]).ok().map(|_| target)
    }
}

impl Application for TwoPcApp {
    type Machine = VaultModel;

    fn act(
        &mut self,
        mut world: World<'_, VaultModel>,
        effects: &Effects<VaultModel>,
    ) -> Result<Vec<PlannedCrash>, Violation> {
        self.crashing.clear();
        self.network.mirror(world.network);
        self.apply_policies(world.now);
        self.observe_applied(&world, effects)?;
        self.sync_prepares(&mut world);
        self.deliver(&mut world)?;
        self.serve_waiting(&mut world);
        self.drive_coordinators(&mut world)?;
        self.recover(&mut world);
        self.prune(&mut world);
        self.clients_act(&mut world)?;
        Ok(self.nemesis.take_requests())
    }

    fn on_applied(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: u64,
        applied: &AppliedCommand<VaultModel>,
    ) -> bool {
        let answered = self
            .clients
            .on_applied(rng, now, applied.node, &applied.command);
        if answered {
            self.stats.adds_answered += 1;
        }
        answered
    }

    fn on_crash(&mut self, node: NodeId) {
        if let Some(participant) = self.participants.get_mut(&node) {
            for tx in participant.table.pending_txs() {
                self.oracle.on_prepare_lost(node, &tx);
            }
            participant.crash();
        }
        self.pruning.forget(node);
        if self.coordinators.remove(&node).is_some() {
            self.clients.coordinator_lost(node);
        }
        self.clients.node_lost(node);
        self.network.drop_traffic_to(node);
    }

    fn on_wipe(&mut self, node: NodeId, wipe: Wipe) {
        let participant = self.participants.entry(node).or_default();
        let prepared: Vec<String> = participant
            .table
            .durable_prepared()
            .into_iter()
            .map(str::to_string)
            .collect();
        participant.table = Default::default();
        self.oracle.on_wipe(node, wipe, &prepared);
        self.stats.wipes += 1;
    }

    fn on_restart(&mut self, node: &SimNode<VaultModel>) {
        self.settle_restored(node);
    }
}
