//! The coordinator runtime: drives the pure [`Coordinator`] with simulated
//! time, the 2PC network and the Raft log, as `vault/src/server/twopc/
//! coordinator.rs` does with tokio.
//!
//! Before it proposes a commit, the coordinator reads its membership again
//! and proposes an abort instead if it changed (the vault's
//! `unless_membership_changed`); the decision carries the participants, so
//! that a change landing after that check is caught where the decision is
//! applied, against the configuration in force at its log index
//! (`machine.rs`, SPEC §13).
//!
//! The decision is proposed through Raft (a follower forwards it to the
//! leader it knows). The coordinator learns the logged decision when its own
//! node has applied a decision for the transaction (the first one in the
//! log, which may be a recovery abort rather than its own), and only then
//! sends Decide. A proposal that does not show up in the applied state is
//! proposed again a few times; then the coordinator gives up and leaves the
//! transaction to recovery. A crash loses every coordinator of the node.

use super::app::TwoPcApp;
use super::machine::{VaultCommand, VaultModel};
use super::messages::TwoPcMessage;
use super::nemesis::CrashPoint;
use super::{MAX_PROPOSALS, OWNER, PROPOSAL_RETRY, PROPOSAL_TIMEOUT, VOTE_TIMEOUT};
use crate::application::World;
use crate::invariants::Violation;
use crate::node::SimMachine;
use consensus::raft::NodeId;
use consensus::twopc::{Coordinator, CoordinatorOutput, Decision, Phase, Vote, VoteRequest};

/// One transaction's coordinator on a node, with what the runtime needs
/// around it.
#[derive(Debug)]
pub(crate) struct CoordinatorRun {
    /// The pure protocol state.
    pub(crate) coordinator: Coordinator,
    /// What every participant is asked.
    pub(crate) request: VoteRequest,
    /// Whom it asked.
    pub(crate) participants: Vec<NodeId>,
    /// The index the version was read at.
    pub(crate) read_index: u64,
    /// Decision proposals made so far.
    pub(crate) proposals: u32,
    /// When to propose again if no decision shows up.
    pub(crate) next_proposal: u64,
    /// The decision it proposes: the protocol's, or an abort if the
    /// membership changed while it voted.
    pub(crate) proposing: Option<Decision>,
}

impl TwoPcApp {
    fn run_mut(&mut self, node: NodeId, tx: &str) -> Option<&mut CoordinatorRun> {
        self.coordinators.get_mut(&node)?.get_mut(tx)
    }

    /// Starts a delete of `name` at `version` with `coordinator` as the
    /// coordinator and every member it knows as a participant. Returns the
    /// transaction id.
    pub(crate) fn start_transaction(
        &mut self,
        world: &mut World<'_, VaultModel>,
        coordinator: NodeId,
        name: &str,
        version: u64,
    ) -> Result<Option<String>, Violation> {
        let Some(node) = world.nodes.get(&coordinator) else {
            return Ok(None);
        };
        let Some(core) = node.core.as_ref() else {
            return Ok(None);
        };
        let participants = members_known(core, coordinator);
        let read_index = node.machine.applied_index();
        let tx = self.next_tx_id(coordinator);
        let request = VoteRequest {
            tx: tx.clone(),
            owner: OWNER.into(),
            name: name.into(),
            version,
        };
        let (protocol, outputs) =
            Coordinator::start(tx.clone(), participants.clone(), world.now, VOTE_TIMEOUT);
        self.oracle.on_start(&tx, coordinator, &participants);
        world.trace.line(
            world.now,
            format_args!(
                "Node {coordinator} coordinates tx {tx}: delete {name} at version {version}"
            ),
        );
        let run = CoordinatorRun {
            coordinator: protocol,
            request,
            participants,
            read_index,
            proposals: 0,
            next_proposal: 0,
            proposing: None,
        };
        let runs = self.coordinators.entry(coordinator).or_default();
        runs.insert(tx.clone(), run);
        self.carry_out(world, coordinator, &tx, outputs)?;
        self.strikes(world, CrashPoint::CoordinatorAfterVoteRequests, coordinator);
        Ok(Some(tx))
    }

    /// A vote for `tx` reached its coordinator `at`.
    pub(crate) fn on_voted(
        &mut self,
        world: &mut World<'_, VaultModel>,
        at: NodeId,
        from: NodeId,
        tx: &str,
        vote: Vote,
    ) -> Result<(), Violation> {
        let now = world.now;
        let Some(run) = self.run_mut(at, tx) else {
            return Ok(());
        };
        let outputs = run.coordinator.on_vote(from, vote, now);
        self.carry_out(world, at, tx, outputs)
    }

    /// An ack for `tx` reached its coordinator `at`.
    pub(crate) fn on_acked(
        &mut self,
        world: &mut World<'_, VaultModel>,
        at: NodeId,
        from: NodeId,
        tx: &str,
    ) -> Result<(), Violation> {
        let Some(run) = self.run_mut(at, tx) else {
            return Ok(());
        };
        let outputs = run.coordinator.on_ack(from);
        let waiting = matches!(run.coordinator.phase(), Phase::Acknowledging(_));
        if waiting && self.strikes(world, CrashPoint::CoordinatorBetweenAcks, at) {
            return Ok(());
        }
        self.carry_out(world, at, tx, outputs)
    }

    /// Advances every coordinator: vote and ack deadlines, learning the
    /// logged decision, proposing again.
    pub(crate) fn drive_coordinators(
        &mut self,
        world: &mut World<'_, VaultModel>,
    ) -> Result<(), Violation> {
        let runs: Vec<(NodeId, String)> = self
            .coordinators
            .iter()
            .flat_map(|(node, runs)| runs.keys().map(|tx| (*node, tx.clone())))
            .collect();
        for (node, tx) in runs {
            if !self.is_alive(world, node) {
                continue;
            }
            let Some(run) = self.run_mut(node, &tx) else {
                continue;
            };
            match run.coordinator.phase() {
                Phase::Voting => {
                    let outputs = self.vote_deadline(world.now, node, &tx);
                    self.carry_out(world, node, &tx, outputs)?;
                }
                Phase::Deciding(decision) => self.await_decision(world, node, &tx, decision)?,
                Phase::Acknowledging(_) => {
                    let outputs = run.coordinator.on_tick(world.now);
                    self.carry_out(world, node, &tx, outputs)?;
                }
                Phase::Finished(_) => self.finish(node, &tx),
            }
        }
        Ok(())
    }

    /// The vote deadline: missing votes count as aborts. The planted bug
    /// `commit_on_missing_vote` counts them as commits instead.
    fn vote_deadline(&mut self, now: u64, node: NodeId, tx: &str) -> Vec<CoordinatorOutput> {
        let bug = self.bugs.commit_on_missing_vote;
        let Some(run) = self.run_mut(node, tx) else {
            return Vec::new();
        };
        let mut outputs = Vec::new();
        let due = run.coordinator.next_deadline_ms().filter(|at| now >= *at);
        if let (true, Some(deadline)) = (bug, due) {
            for participant in run.participants.clone() {
                let vote = run.coordinator.on_vote(participant, Vote::Commit, deadline);
                outputs.extend(vote);
            }
        }
        outputs.extend(run.coordinator.on_tick(now));
        outputs
    }

    /// Deciding: once the coordinator's node applied a decision for `tx`,
    /// send it; otherwise propose again after a while, or give up.
    fn await_decision(
        &mut self,
        world: &mut World<'_, VaultModel>,
        node: NodeId,
        tx: &str,
        proposed: Decision,
    ) -> Result<(), Violation> {
        let logged = world.nodes.get(&node).and_then(|n| n.machine.decision(tx));
        if let Some(logged) = logged {
            if self.strikes(world, CrashPoint::CoordinatorBeforeDecide, node) {
                return Ok(());
            }
            world.trace.line(
                world.now,
                format_args!("Coordinator decision for tx {tx}: {logged}"),
            );
            let now = world.now;
            let Some(run) = self.run_mut(node, tx) else {
                return Ok(());
            };
            let outputs = run.coordinator.on_decision_logged(logged, now);
            return self.carry_out(world, node, tx, outputs);
        }
        let Some(run) = self.run_mut(node, tx) else {
            return Ok(());
        };
        if world.now < run.next_proposal {
            return Ok(());
        }
        let proposed = run.proposing.unwrap_or(proposed);
        if run.proposals >= MAX_PROPOSALS {
            world.trace.line(
                world.now,
                format_args!(
                    "Coordinator of Node {node} gives up logging a decision for tx {tx}; \
                     recovery will settle it"
                ),
            );
            self.stats.abandoned += 1;
            self.finish(node, tx);
            return Ok(());
        }
        self.propose_decision(world, node, tx, proposed);
        Ok(())
    }

    /// Carries out the coordinator's outputs in order.
    fn carry_out(
        &mut self,
        world: &mut World<'_, VaultModel>,
        node: NodeId,
        tx: &str,
        outputs: Vec<CoordinatorOutput>,
    ) -> Result<(), Violation> {
        for output in outputs {
            if !self.is_alive(world, node) {
                return Ok(());
            }
            match output {
                CoordinatorOutput::SendVote { to } => {
                    let Some(run) = self.run_mut(node, tx) else {
                        return Ok(());
                    };
                    let message = TwoPcMessage::Vote {
                        request: run.request.clone(),
                        read_index: run.read_index,
                    };
                    self.send(world, node, to, message);
                }
                CoordinatorOutput::ProposeDecision(decision) => {
                    let decision = self.unless_membership_changed(world, node, tx, decision);
                    self.propose_decision(world, node, tx, decision);
                }
                CoordinatorOutput::SendDecide { to, decision } => {
                    let tx = tx.to_string();
                    self.send(world, node, to, TwoPcMessage::Decide { tx, decision });
                }
                CoordinatorOutput::Finished(report) => {
                    self.oracle.on_report(&report)?;
                    world.trace.line(
                        world.now,
                        format_args!(
                            "Node {node} tells the client: tx {tx} {}, acked by {:?}",
                            report.decision, report.acked
                        ),
                    );
                    self.finish(node, tx);
                }
            }
        }
        Ok(())
    }

    /// A commit only if the coordinator's membership is still the one whose
    /// every member was asked (the vault's `unless_membership_changed`);
    /// otherwise an abort. A change after this check is the state
    /// machine's to catch.
    fn unless_membership_changed(
        &mut self,
        world: &World<'_, VaultModel>,
        node: NodeId,
        tx: &str,
        decision: Decision,
    ) -> Decision {
        let now_members = world
            .nodes
            .get(&node)
            .and_then(|n| n.core.as_ref())
            .map(|core| members_known(core, node));
        let Some(run) = self.run_mut(node, tx) else {
            return decision;
        };
        let changed = now_members.is_some_and(|members| members != run.participants);
        let decision = if decision == Decision::Commit && changed {
            world.trace.line(
                world.now,
                format_args!(
                    "Coordinator of Node {node} aborts tx {tx}: the membership changed while \
                     it voted"
                ),
            );
            self.stats.coordinator_membership_aborts += 1;
            Decision::Abort
        } else {
            decision
        };
        if let Some(run) = self.run_mut(node, tx) {
            run.proposing = Some(decision);
        }
        decision
    }

    /// Proposes `decision` for `tx` to the log. The nemesis may crash the
    /// coordinator, or the leader that took the proposal, before it commits.
    fn propose_decision(
        &mut self,
        world: &mut World<'_, VaultModel>,
        node: NodeId,
        tx: &str,
        decision: Decision,
    ) {
        let Some(run) = self.run_mut(node, tx) else {
            return;
        };
        let command = VaultCommand::Decide {
            tx: tx.to_string(),
            name: run.request.name.clone(),
            version: run.request.version,
            decision,
            participants: run.participants.clone(),
        };
        world.trace.line(
            world.now,
            format_args!("Coordinator of Node {node} proposes {decision} for tx {tx}"),
        );
        let leader = self.propose(world, node, &command);
        let wait = if leader.is_some() {
            PROPOSAL_TIMEOUT
        } else {
            PROPOSAL_RETRY
        };
        if let Some(run) = self.run_mut(node, tx) {
            run.proposals += 1;
            run.next_proposal = world.now + wait;
        }
        if self.strikes(world, CrashPoint::CoordinatorAfterProposingDecision, node) {
            return;
        }
        if let Some(leader) = leader {
            self.strikes(world, CrashPoint::LeaderAfterDecisionProposed, leader);
        }
    }

    /// The transaction is over for this coordinator: forget it and tell its
    /// client.
    fn finish(&mut self, node: NodeId, tx: &str) {
        if let Some(runs) = self.coordinators.get_mut(&node) {
            runs.remove(tx);
        }
        self.clients.on_finished(tx);
    }
}

/// The members a coordinator's node knows (voters and learners of its
/// latest membership, in id order), or itself alone if it knows none: the
/// participants of a transaction it starts (the vault's
/// `TwoPc::participants`).
fn members_known(core: &consensus::raft::RaftCore, node: NodeId) -> Vec<NodeId> {
    let membership = core.membership();
    let members: Vec<NodeId> = membership
        .voters
        .union(&membership.learners)
        .copied()
        .collect();
    if members.is_empty() {
        vec![node]
    } else {
        members
    }
}
