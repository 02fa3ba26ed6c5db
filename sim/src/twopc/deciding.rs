//! The coordinator runtime: carries out what the sans-IO
//! [`CoordinatorDriver`] asks for with simulated time, the 2PC network and
//! the Raft log, as `vault/src/server/twopc/coordinator.rs` does with
//! tokio. Both run the same driver, so the membership-change guard (read
//! the membership again before proposing; a change turns a commit into an
//! abort) is the same code here and there. The decision carries the
//! participants, so that a change landing after that check is caught where
//! the decision is applied, against the configuration in force at its log
//! index (`machine.rs`, SPEC §13).
//!
//! The decision is proposed through Raft (a follower forwards it to the
//! leader it knows). The coordinator learns the logged decision when its own
//! node has applied a decision for the transaction (the first one in the
//! log, which may be a recovery abort rather than its own), and only then
//! sends Decide. A proposal that does not show up in the applied state is
//! proposed again a few times (the driver's [`ProposalRetry`]); then the
//! coordinator gives up and leaves the transaction to recovery. A crash
//! loses every coordinator of the node.

use super::app::TwoPcApp;
use super::machine::{VaultCommand, VaultModel};
use super::messages::{SimSecret, TwoPcMessage};
use super::nemesis::CrashPoint;
use super::{MAX_PROPOSALS, PROPOSAL_RETRY, PROPOSAL_TIMEOUT, VOTE_TIMEOUT};
use crate::application::World;
use crate::invariants::Violation;
use crate::node::SimMachine;
use consensus::raft::NodeId;
use consensus::twopc::{
    CoordinatorAction, CoordinatorDriver, CoordinatorInput, CoordinatorOptions, DecisionProposal,
    Phase, ProposalRetry, Vote, VoteRequest,
};
use std::collections::VecDeque;

/// One transaction's coordinator on a node: the shared driver.
pub(crate) type CoordinatorRun = CoordinatorDriver<SimSecret>;

/// How the simulated coordinators wait and re-propose.
const OPTIONS: CoordinatorOptions = CoordinatorOptions {
    vote_timeout_ms: VOTE_TIMEOUT,
    proposal_retry: Some(ProposalRetry {
        timeout_ms: PROPOSAL_TIMEOUT,
        retry_ms: PROPOSAL_RETRY,
        most: MAX_PROPOSALS,
    }),
};

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
        let tx = self.next_tx_id(coordinator, world.now);
        let request = VoteRequest {
            tx: tx.clone(),
            resource: SimSecret {
                name: name.into(),
                version,
            },
        };
        let (driver, actions) =
            CoordinatorDriver::start(request, read_index, participants, world.now, OPTIONS);
        self.oracle
            .on_start(&tx, coordinator, driver.participants());
        world.trace.line(
            world.now,
            format_args!(
                "Node {coordinator} coordinates tx {tx}: delete {name} at version {version}"
            ),
        );
        let runs = self.coordinators.entry(coordinator).or_default();
        runs.insert(tx.clone(), driver);
        self.carry_out(world, coordinator, &tx, actions)?;
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
        self.step(world, at, tx, CoordinatorInput::Voted { from, vote })
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
        let actions = run.step(CoordinatorInput::Acked { from }, world.now);
        let waiting = matches!(run.phase(), Phase::Acknowledging(_));
        if waiting && self.strikes(world, CrashPoint::CoordinatorBetweenAcks, at) {
            return Ok(());
        }
        self.carry_out(world, at, tx, actions)
    }

    /// Feeds `input` to `tx`'s coordinator on `node` and carries out what
    /// it asks.
    fn step(
        &mut self,
        world: &mut World<'_, VaultModel>,
        node: NodeId,
        tx: &str,
        input: CoordinatorInput,
    ) -> Result<(), Violation> {
        let now = world.now;
        let Some(run) = self.run_mut(node, tx) else {
            return Ok(());
        };
        let actions = run.step(input, now);
        self.carry_out(world, node, tx, actions)
    }

    /// Advances every coordinator: learning the logged decision, and the
    /// deadlines the drivers armed (votes, acks, proposing again).
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
            if run.is_done() {
                self.finish(node, &tx);
                continue;
            }
            if matches!(run.phase(), Phase::Deciding(_)) && self.learn_decision(world, node, &tx)? {
                continue;
            }
            let due = self
                .run_mut(node, &tx)
                .and_then(|run| run.deadline_ms())
                .is_some_and(|deadline| world.now >= deadline);
            if due {
                let planted = self.commit_on_missing_vote(world.now, node, &tx);
                self.carry_out(world, node, &tx, planted)?;
                self.step(world, node, &tx, CoordinatorInput::Tick)?;
            }
        }
        Ok(())
    }

    /// The planted bug `commit_on_missing_vote`: at the vote deadline, the
    /// votes still missing are fed to the driver as commits. Returns what
    /// the driver asks for then.
    fn commit_on_missing_vote(
        &mut self,
        now: u64,
        node: NodeId,
        tx: &str,
    ) -> Vec<CoordinatorAction<SimSecret>> {
        let bug = self.bugs.commit_on_missing_vote;
        let Some(run) = self.run_mut(node, tx) else {
            return Vec::new();
        };
        let (Some(deadline), Phase::Voting) = (run.deadline_ms(), run.phase()) else {
            return Vec::new();
        };
        if !bug || now < deadline {
            return Vec::new();
        }
        // The driver keeps a participant's first vote, so only the missing
        // ones become commits.
        let mut actions = Vec::new();
        for from in run.participants().to_vec() {
            let vote = CoordinatorInput::Voted {
                from,
                vote: Vote::Commit,
            };
            actions.extend(run.step(vote, deadline));
        }
        actions
    }

    /// Deciding: once the coordinator's node applied a decision for `tx`,
    /// the driver learns it and sends Decide. Returns whether it did.
    fn learn_decision(
        &mut self,
        world: &mut World<'_, VaultModel>,
        node: NodeId,
        tx: &str,
    ) -> Result<bool, Violation> {
        let logged = world.nodes.get(&node).and_then(|n| n.machine.decision(tx));
        let Some(logged) = logged else {
            return Ok(false);
        };
        if self.strikes(world, CrashPoint::CoordinatorBeforeDecide, node) {
            return Ok(true);
        }
        world.trace.line(
            world.now,
            format_args!("Coordinator decision for tx {tx}: {logged}"),
        );
        self.step(world, node, tx, CoordinatorInput::DecisionLogged(logged))?;
        Ok(true)
    }

    /// Carries out the driver's actions in order.
    fn carry_out(
        &mut self,
        world: &mut World<'_, VaultModel>,
        node: NodeId,
        tx: &str,
        actions: Vec<CoordinatorAction<SimSecret>>,
    ) -> Result<(), Violation> {
        let mut pending = VecDeque::from(actions);
        while let Some(action) = pending.pop_front() {
            if !self.is_alive(world, node) {
                return Ok(());
            }
            match action {
                CoordinatorAction::Send { to, message } => {
                    self.send(world, node, to, TwoPcMessage::Request(message));
                }
                CoordinatorAction::ReadMembership => {
                    let members = world
                        .nodes
                        .get(&node)
                        .and_then(|n| n.core.as_ref())
                        .map(|core| members_known(core, node));
                    let now = world.now;
                    let Some(run) = self.run_mut(node, tx) else {
                        return Ok(());
                    };
                    // A node without a core has crashed: is_alive above.
                    let members = members.unwrap_or_else(|| run.participants().to_vec());
                    pending.extend(run.step(CoordinatorInput::Members(members), now));
                }
                CoordinatorAction::Propose(proposal) => {
                    if let Some(input) = self.propose_decision(world, node, &proposal) {
                        let now = world.now;
                        if let Some(run) = self.run_mut(node, tx) {
                            pending.extend(run.step(input, now));
                        }
                    }
                }
                // Polled through `deadline_ms` every step.
                CoordinatorAction::ArmDeadline { .. } => {}
                CoordinatorAction::GaveUp => {
                    world.trace.line(
                        world.now,
                        format_args!(
                            "Coordinator of Node {node} gives up logging a decision for tx {tx}; \
                             recovery will settle it"
                        ),
                    );
                    self.stats.abandoned += 1;
                    self.finish(node, tx);
                }
                CoordinatorAction::Finished(report) => {
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

    /// Proposes the driver's decision entry to the log. The nemesis may
    /// crash the coordinator, or the leader that took the proposal, before
    /// it commits. Returns the input for the driver if no leader took it.
    fn propose_decision(
        &mut self,
        world: &mut World<'_, VaultModel>,
        node: NodeId,
        proposal: &DecisionProposal<SimSecret>,
    ) -> Option<CoordinatorInput> {
        let (tx, decision) = (&proposal.tx, proposal.decision);
        if proposal.membership_changed {
            world.trace.line(
                world.now,
                format_args!(
                    "Coordinator of Node {node} aborts tx {tx}: the membership changed while \
                     it voted"
                ),
            );
            self.stats.coordinator_membership_aborts += 1;
        }
        let command = VaultCommand::Decide {
            tx: tx.clone(),
            name: proposal.resource.name.clone(),
            version: proposal.resource.version,
            decision,
            participants: proposal.participants.clone(),
        };
        world.trace.line(
            world.now,
            format_args!("Coordinator of Node {node} proposes {decision} for tx {tx}"),
        );
        let leader = self.propose(world, node, &command);
        if self.strikes(world, CrashPoint::CoordinatorAfterProposingDecision, node) {
            return None;
        }
        match leader {
            Some(leader) => {
                self.strikes(world, CrashPoint::LeaderAfterDecisionProposed, leader);
                None
            }
            None => Some(CoordinatorInput::ProposalNotTaken),
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
