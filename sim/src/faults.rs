//! Random events that disturb the cluster: crashes and restarts, symmetric
//! and asymmetric partitions, network weather, membership changes and
//! leadership transfers. All drawn from the run's seeded RNG.

use super::application::{Application, Wipe};
use super::cluster::{Cluster, StepFailure};
use super::network::NetworkFaults;
use super::node::{Effects, SimNode};
use consensus::raft::{MembershipChange, NodeId, RaftCore, RestoreError};
use rand::seq::IteratorRandom;
use rand::Rng;
use std::collections::BTreeSet;

impl<A: Application> Cluster<A> {
    /// Injects one random fault or operator action, of a kind the run's
    /// swarm mix has switched on (see [`FaultMix`]).
    pub(crate) fn random_fault(
        &mut self,
        effects: &mut Effects<A::Machine>,
    ) -> Result<(), StepFailure> {
        let mut roll = self.rng.gen_range(0..100);
        if self.fault_mix.operator_heavy && self.rng.gen_bool(0.4) {
            // Operator-heavy runs: membership changes and replaced disks.
            roll = self.rng.gen_range(75..88);
        }
        if self.fault_mix.disabled & (1 << (roll / 10)) != 0 {
            return Ok(());
        }
        match roll {
            0..=9 => self.crash_random(),
            10..=19 => self.crash_leader(),
            20..=39 => self.restart_random()?,
            40..=44 => self.partition_random(),
            45..=49 => self.isolate_leader(),
            50..=57 => self.cut_random_link(),
            58..=69 => {
                self.network.heal();
                self.trace
                    .line(self.now, "Network healed: every link restored");
            }
            70..=74 => {
                let faults = NetworkFaults::random(&mut self.rng);
                self.network.set_faults(faults);
                self.trace
                    .line(self.now, format_args!("Network weather now {faults:?}"));
            }
            75..=84 => self.change_membership_random(effects)?,
            85..=87 if self.wipe_voters => self.wipe_voter()?,
            _ => self.transfer_leader_random(effects)?,
        }
        Ok(())
    }

    fn running(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, node)| node.is_up())
            .map(|(id, _)| *id)
            .collect()
    }

    fn crash_random(&mut self) {
        let Some(id) = self.running().into_iter().choose(&mut self.rng) else {
            return;
        };
        self.crash(id);
    }

    /// Crashes `id`: unsynced writes, volatile state and its in-flight
    /// traffic are gone.
    pub(crate) fn crash(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.crash();
        }
        self.network.drop_node_traffic(id);
        self.app.on_crash(id);
        self.trace.line(self.now, format_args!("Node {id} crashes"));
    }

    /// Leader changes are where Raft's subtle cases live (Figure 8).
    fn crash_leader(&mut self) {
        if let Some(leader) = self.leader() {
            self.crash(leader);
        }
    }

    fn isolate_leader(&mut self) {
        let Some(leader) = self.leader() else { return };
        let side = BTreeSet::from([leader]);
        let all = self.all_ids.clone();
        self.network.partition(&side, &all);
        self.trace.line(
            self.now,
            format_args!("Partition: leader Node {leader} isolated"),
        );
    }

    fn restart_random(&mut self) -> Result<(), StepFailure> {
        let down = self
            .nodes
            .iter()
            .filter(|(_, node)| !node.is_up() && node.incarnation > 0);
        let Some(id) = down.map(|(id, _)| *id).choose(&mut self.rng) else {
            return Ok(());
        };
        self.restart(id)
    }

    /// Restarts `id` from its disk alone, as `node run` does: a joiner
    /// whose first state never reached its disk joins afresh; any other
    /// node with an empty disk refuses to start (SPEC §13) and stays down.
    pub(crate) fn restart(&mut self, id: NodeId) -> Result<(), StepFailure> {
        let config = self.config(id);
        let life = self.rng.gen_range(1..=u64::MAX);
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        let core = match node.restored(config.clone()) {
            Ok(core) => core,
            Err(RestoreError::NoState) if node.joiner => {
                RaftCore::join(config, life).map_err(|error| StepFailure {
                    step: self.now,
                    violation: contract(error.to_string()),
                })?
            }
            Err(RestoreError::NoState) => {
                self.trace.line(
                    self.now,
                    format_args!("Node {id} refuses to start: its disk holds no Raft state"),
                );
                return Ok(());
            }
            Err(error) => {
                let violation = super::invariants::Violation {
                    invariant: "restart",
                    section: "§5.1",
                    detail: format!("{id} cannot restart from its disk: {error}"),
                };
                return Err(StepFailure {
                    step: self.now,
                    violation,
                });
            }
        };
        node.start(core);
        self.trace
            .line(self.now, format_args!("Node {id} restarts from its disk"));
        if let Some(node) = self.nodes.get(&id) {
            self.app.on_restart(node);
        }
        Ok(())
    }

    fn partition_random(&mut self) {
        let all = self.all_ids.clone();
        let size = self.rng.gen_range(1..=all.len() / 2);
        let side: BTreeSet<NodeId> = all
            .iter()
            .copied()
            .choose_multiple(&mut self.rng, size)
            .into_iter()
            .collect();
        self.network.partition(&side, &all);
        let rest: BTreeSet<NodeId> = all.difference(&side).copied().collect();
        self.trace.line(
            self.now,
            format_args!("Partition: {} | {}", names(&side), names(&rest)),
        );
    }

    fn cut_random_link(&mut self) {
        let from = self.all_ids.iter().copied().choose(&mut self.rng);
        let to = self.all_ids.iter().copied().choose(&mut self.rng);
        if let (Some(from), Some(to)) = (from, to) {
            if from != to {
                self.network.cut(from, to);
                self.trace.line(
                    self.now,
                    format_args!("Link cut one way: Node {from} -> Node {to}"),
                );
            }
        }
    }

    fn change_membership_random(
        &mut self,
        effects: &mut Effects<A::Machine>,
    ) -> Result<(), StepFailure> {
        let Some(leader) = self.leader() else {
            return Ok(());
        };
        let Some(membership) = self
            .nodes
            .get(&leader)
            .and_then(|n| n.core.as_ref())
            .map(|c| c.membership().clone())
        else {
            return Ok(());
        };
        let members: BTreeSet<NodeId> = membership
            .voters
            .union(&membership.learners)
            .copied()
            .collect();
        let outsider = self
            .all_ids
            .difference(&members)
            .copied()
            .choose(&mut self.rng);
        let learner = membership.learners.iter().copied().choose(&mut self.rng);
        let removable = members
            .iter()
            .copied()
            .filter(|id| membership.learners.contains(id) || membership.voters.len() > 3);
        // A voter that lost its disk is what an operator removes first, to
        // add it back (SPEC §13: replacing a dead host).
        let forgotten = self
            .forgotten
            .iter()
            .copied()
            .find(|id| membership.voters.contains(id) && membership.voters.len() > 1);
        let removable = removable.choose(&mut self.rng);
        let kind = self.rng.gen_range(0..3);
        // The operator replaces the dead voter before anything else: a
        // learner catching up while a voter is lost for good can end up
        // holding the newest entries with no voter able to win (soak seed
        // 777735472404; see docs/simulation.md, Limits).
        let change = if let Some(node) = forgotten {
            MembershipChange::RemoveNode(node)
        } else {
            match (kind, outsider, learner, removable) {
                (0, Some(node), _, _) => MembershipChange::AddLearner {
                    node,
                    address: String::new(),
                },
                (1, _, Some(node), _) => MembershipChange::PromoteLearner(node),
                (_, _, _, Some(node)) => MembershipChange::RemoveNode(node),
                _ => return Ok(()),
            }
        };
        let Some(core) = self
            .nodes
            .get_mut(&leader)
            .and_then(|node| node.core.as_mut())
        else {
            return Ok(());
        };
        let result = core.change_membership(change.clone());
        self.trace.line(
            self.now,
            format_args!("Operator asks Node {leader} for {change:?}: {result:?}"),
        );
        if let (Ok(_), MembershipChange::AddLearner { node, .. }) = (result, change) {
            self.rejoin_wiped(node)?;
        }
        self.drain(leader, effects)
    }

    /// Starts `node` afresh with a wiped disk to join as a learner. A
    /// removed node rejoins this way, as an operator would do; its removal
    /// is committed (the leader allows one change at a time).
    pub(crate) fn rejoin_wiped(&mut self, node: NodeId) -> Result<(), StepFailure> {
        if self.nodes.get(&node).is_some_and(SimNode::is_up) {
            self.crash(node);
        }
        let incarnation = self.nodes.get(&node).map_or(0, |n| n.incarnation);
        let mut fresh = SimNode::new(node);
        fresh.incarnation = incarnation;
        fresh.joiner = true;
        self.forgotten.remove(&node);
        // A fresh life, as the runtime draws it from the OS for a joiner.
        let life = self.rng.gen_range(1..=u64::MAX);
        let core = RaftCore::join(self.config(node), life).map_err(|error| StepFailure {
            step: self.now,
            violation: contract(error.to_string()),
        })?;
        fresh.start(core);
        self.nodes.insert(node, fresh);
        self.app.on_wipe(node, Wipe::Rejoin);
        self.trace
            .line(self.now, format_args!("Node {node} starts empty to join"));
        Ok(())
    }

    /// A voter's disk is replaced without removing it first (SPEC §13),
    /// and the node is started again. With its own configuration (not a
    /// joiner) it must refuse to start; half the time the operator instead
    /// starts it as a joiner by mistake, and it runs as a new life of the
    /// id, which must never count as the voter it was. One forgotten voter
    /// at a time, so that a majority can still elect after healing.
    fn wipe_voter(&mut self) -> Result<(), StepFailure> {
        // Only where the survivors still make a majority: a voter of a
        // leader's configuration of three or more, no change in flight.
        let Some(core) = self
            .leader()
            .and_then(|leader| self.nodes.get(&leader))
            .and_then(|node| node.core.as_ref())
        else {
            return Ok(());
        };
        let voters = core.membership().voters.clone();
        let settled =
            core.membership_index() <= core.commit_index() && core.membership().learners.is_empty();
        // A removal of the last one may still be undone by a new leader,
        // so "one at a time" counts the forgotten in any running node's
        // configuration, not only those not removed yet.
        let still_forgotten = self
            .nodes
            .values()
            .filter_map(|node| node.core.as_ref())
            .any(|core| {
                core.membership()
                    .voters
                    .iter()
                    .any(|id| self.forgotten.contains(id))
            });
        if voters.len() < 3 || !settled || still_forgotten {
            return Ok(());
        }
        let Some(id) = voters.into_iter().choose(&mut self.rng) else {
            return Ok(());
        };
        if self.nodes.get(&id).is_some_and(SimNode::is_up) {
            self.crash(id);
        }
        let incarnation = self.nodes.get(&id).map_or(0, |node| node.incarnation);
        if let Some(node) = self.nodes.get(&id) {
            self.lost_disks.push((id, node.disk.view.clone()));
        }
        let mut wiped = SimNode::new(id);
        wiped.incarnation = incarnation.max(1);
        wiped.joiner = self.rng.gen_bool(0.5);
        self.nodes.insert(id, wiped);
        self.forgotten.insert(id);
        self.app.on_wipe(id, Wipe::DiskLost);
        self.trace.line(
            self.now,
            format_args!("Node {id} loses its disk (replaced without removal first)"),
        );
        self.restart(id)
    }

    fn transfer_leader_random(
        &mut self,
        effects: &mut Effects<A::Machine>,
    ) -> Result<(), StepFailure> {
        let Some(leader) = self.leader() else {
            return Ok(());
        };
        let Some(core) = self
            .nodes
            .get_mut(&leader)
            .and_then(|node| node.core.as_mut())
        else {
            return Ok(());
        };
        let voters = core.membership().voters.clone();
        let Some(target) = voters
            .into_iter()
            .filter(|id| *id != leader)
            .choose(&mut self.rng)
        else {
            return Ok(());
        };
        let result = core.transfer_leader(target);
        self.trace.line(
            self.now,
            format_args!(
                "Operator asks Node {leader} to transfer leadership to Node {target}: {result:?}"
            ),
        );
        self.drain(leader, effects)
    }

    /// Ends every fault: links restored, a calm network, every node that
    /// ever ran restarted.
    pub(crate) fn heal_all(&mut self) -> Result<(), StepFailure> {
        self.network.heal();
        let calm = NetworkFaults {
            max_delay: 3,
            ..NetworkFaults::RELIABLE
        };
        self.network.set_faults(calm);
        let down: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| !n.is_up() && n.incarnation > 0)
            .map(|(id, _)| *id)
            .collect();
        for id in down {
            self.restart(id)?;
        }
        self.trace.line(self.now, "All faults healed");
        Ok(())
    }
}

/// Swarm testing (Groce et al., "Swarm Testing", ISSTA 2012): each run
/// switches some kinds of fault off and may weigh operator actions up, so
/// that runs differ in *which* faults meet, not only in when. A fault kind
/// that masks another (a partition that keeps a membership change from
/// committing, say) is then absent from some runs altogether.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FaultMix {
    /// Bit `k` set: fault rolls `10k..10k+9` of [`Cluster::random_fault`]
    /// do nothing in this run.
    pub(crate) disabled: u16,
    /// Four in ten faults are membership changes or replaced disks.
    pub(crate) operator_heavy: bool,
}

impl FaultMix {
    /// A random mix: each of the ten kinds off with probability 0.25, and
    /// operator-heavy one run in three.
    pub(crate) fn random(rng: &mut impl Rng) -> FaultMix {
        let mut disabled = 0;
        for kind in 0..10 {
            if rng.gen_bool(0.25) {
                disabled |= 1 << kind;
            }
        }
        FaultMix {
            disabled,
            operator_heavy: rng.gen_bool(1.0 / 3.0),
        }
    }
}

fn contract(detail: String) -> super::invariants::Violation {
    super::invariants::Violation {
        invariant: "runtime contract",
        section: "core API",
        detail,
    }
}

fn names(nodes: &BTreeSet<NodeId>) -> String {
    let names: Vec<String> = nodes.iter().map(NodeId::to_string).collect();
    format!("{{{}}}", names.join(", "))
}
