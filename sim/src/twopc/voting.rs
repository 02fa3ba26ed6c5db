//! The participant runtime: voting and acknowledging through the shared
//! [`VoteDriver`] and [`AckDriver`], as `vault/src/server/twopc/participant.rs`
//! runs them.
//!
//! - A vote request waits until the node applied the log through the
//!   coordinator's read index (at most the vote timeout), then attempts the
//!   vote under wait-die through the [`SimResource`]. A commit vote is held
//!   until the prepare's fsync completes (SPEC §6.1: the lock is durable
//!   before the vote leaves); the planted bug `vote_before_durable_prepare`
//!   sends it at once.
//! - A Decide waits (at most the decision timeout) until the node applied a
//!   decision for the transaction, then acknowledges it, or answers that it
//!   has not applied it in time.

use super::app::TwoPcApp;
use super::machine::VaultModel;
use super::messages::{SimSecret, TwoPcMessage};
use super::nemesis::CrashPoint;
use super::participant::{SimResource, WaitingDecide, WaitingVote};
use super::{DECISION_TIMEOUT, VOTE_TIMEOUT};
use crate::application::World;
use crate::node::SimMachine;
use consensus::raft::NodeId;
use consensus::twopc::participant;
use consensus::twopc::{
    AckAction, AckDriver, Decision, ParticipantOptions, TwoPcReply, Vote, VoteAction, VoteAttempt,
    VoteDriver, VoteInput, VoteRequest,
};

/// How long a simulated participant waits, in steps.
const OPTIONS: ParticipantOptions = ParticipantOptions {
    vote_timeout_ms: VOTE_TIMEOUT,
    decision_timeout_ms: DECISION_TIMEOUT,
};

impl TwoPcApp {
    /// A vote request reached participant `at`: its driver starts.
    pub(crate) fn on_vote_request(
        &mut self,
        world: &mut World<'_, VaultModel>,
        at: NodeId,
        from: NodeId,
        request: VoteRequest<SimSecret>,
        read_index: u64,
    ) {
        let applied = self.applied_index(world, at);
        let (driver, action) =
            VoteDriver::start(from, request, read_index, applied, world.now, OPTIONS);
        self.carry_vote(world, at, driver, action);
    }

    /// A Decide reached participant `at`: it is answered from the next
    /// serving on, once the decision is applied.
    pub(crate) fn on_decide(
        &mut self,
        world: &World<'_, VaultModel>,
        at: NodeId,
        from: NodeId,
        tx: String,
    ) {
        let participant = self.participants.entry(at).or_default();
        participant.waiting_decides.push(WaitingDecide {
            from,
            driver: AckDriver::start(at, tx, world.now, OPTIONS),
            wake: None,
        });
    }

    /// Answers the vote requests and Decides whose wait is over.
    pub(crate) fn serve_waiting(&mut self, world: &mut World<'_, VaultModel>) {
        let ids: Vec<NodeId> = self.participants.keys().copied().collect();
        for id in ids {
            if self.is_alive(world, id) {
                self.serve_votes(world, id);
            }
            if self.is_alive(world, id) {
                self.serve_decides(world, id);
            }
        }
    }

    fn applied_index(&self, world: &World<'_, VaultModel>, id: NodeId) -> u64 {
        world
            .nodes
            .get(&id)
            .map_or(0, |node| node.machine.applied_index())
    }

    fn serve_votes(&mut self, world: &mut World<'_, VaultModel>, id: NodeId) {
        let applied = self.applied_index(world, id);
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        let now = world.now;
        let (ready, waiting): (Vec<WaitingVote>, Vec<WaitingVote>) = participant
            .waiting_votes
            .drain(..)
            .partition(|wait| applied >= wait.index || now >= wait.deadline);
        participant.waiting_votes = waiting;
        for mut wait in ready {
            if !self.is_alive(world, id) {
                return;
            }
            if let Some(action) = wait.driver.step(VoteInput::Applied(applied), now) {
                self.carry_vote(world, id, wait.driver, action);
            }
        }
    }

    /// Carries out what the vote driver of participant `id` asks until it
    /// waits (for the log, a lock holder or the prepare's fsync) or its
    /// vote left. Returns false if the participant crashed meanwhile.
    fn carry_vote(
        &mut self,
        world: &mut World<'_, VaultModel>,
        id: NodeId,
        mut driver: VoteDriver<SimSecret>,
        mut action: VoteAction,
    ) -> bool {
        loop {
            let input = match action {
                VoteAction::AwaitApplied {
                    index,
                    deadline_ms,
                    holder,
                } => {
                    if let Some(holder) = holder {
                        self.stats.wait_die_waits += 1;
                        let tx = &driver.request().tx;
                        world.trace.line(
                            world.now,
                            format_args!(
                                "Phase Participant-Vote of Node {id} holds the vote on tx {tx} \
                                 until younger tx {holder} is decided (wait-die)"
                            ),
                        );
                    }
                    let participant = self.participants.entry(id).or_default();
                    participant.waiting_votes.push(WaitingVote {
                        driver,
                        index,
                        deadline: deadline_ms,
                    });
                    return true;
                }
                VoteAction::Attempt { may_wait } => {
                    let Some(attempt) =
                        self.attempt(world, id, driver.request(), driver.read_index(), may_wait)
                    else {
                        return true;
                    };
                    let durable = self
                        .participants
                        .get(&id)
                        .is_some_and(|p| p.table.is_durable(&driver.request().tx));
                    if attempt == VoteAttempt::Voted(Vote::Commit)
                        && !durable
                        && !self.bugs.vote_before_durable_prepare
                    {
                        // The vote leaves once the prepare is on disk
                        // (`release_held_votes`).
                        let participant = self.participants.entry(id).or_default();
                        participant.held_votes.push(driver);
                        return true;
                    }
                    VoteInput::Attempted(attempt)
                }
                VoteAction::Send(vote) => return self.send_vote(world, id, &driver, vote),
            };
            match driver.step(input, world.now) {
                Some(next) => action = next,
                None => return true,
            }
        }
    }

    /// One vote attempt under wait-die at participant `id`, traced as the
    /// vault logs it. `None` if `id` is not a running node.
    fn attempt(
        &mut self,
        world: &mut World<'_, VaultModel>,
        id: NodeId,
        request: &VoteRequest<SimSecret>,
        read_index: u64,
        may_wait: bool,
    ) -> Option<VoteAttempt> {
        let (Some(node), Some(participant)) =
            (world.nodes.get(&id), self.participants.get_mut(&id))
        else {
            return None;
        };
        let policy = participant.policy;
        let mut resource = SimResource {
            table: &mut participant.table,
            machine: &node.machine,
            read_index,
        };
        let attempt =
            match participant::vote_wait_die(policy, &mut resource, request, world.now, may_wait) {
                Ok(attempt) => attempt,
                Err(never) => match never {},
            };
        let tx = request.tx.as_str();
        match &attempt {
            VoteAttempt::Voted(Vote::Commit) => world.trace.line(
                world.now,
                format_args!("Phase Participant-Vote of Node {id} votes VOTE_COMMIT for tx {tx}"),
            ),
            VoteAttempt::Voted(Vote::Abort(reason)) => world.trace.line(
                world.now,
                format_args!(
                    "Phase Participant-Vote of Node {id} votes VOTE_ABORT for tx {tx}: {reason}"
                ),
            ),
            VoteAttempt::Wait { .. } => {}
        }
        Some(attempt)
    }

    /// Sends the vote the driver handed out. Returns false if the
    /// participant crashed around a commit vote.
    fn send_vote(
        &mut self,
        world: &mut World<'_, VaultModel>,
        id: NodeId,
        driver: &VoteDriver<SimSecret>,
        vote: Vote,
    ) -> bool {
        let (coordinator, tx) = (driver.coordinator(), driver.request().tx.as_str());
        match vote {
            Vote::Commit => self.send_commit_vote(world, id, coordinator, tx),
            abort @ Vote::Abort(_) => {
                self.oracle.on_vote_sent(id, tx, &abort);
                let message = TwoPcMessage::Reply {
                    tx: tx.to_string(),
                    reply: TwoPcReply::Voted(abort),
                };
                self.send(world, id, coordinator, message);
                true
            }
        }
    }

    /// `tx`'s prepare reached the disk of `id`: its held commit votes leave.
    pub(crate) fn release_held_votes(
        &mut self,
        world: &mut World<'_, VaultModel>,
        id: NodeId,
        tx: &str,
    ) {
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        let (released, held): (Vec<_>, Vec<_>) = participant
            .held_votes
            .drain(..)
            .partition(|driver| driver.request().tx == tx);
        participant.held_votes = held;
        for mut driver in released {
            let input = VoteInput::Attempted(VoteAttempt::Voted(Vote::Commit));
            let Some(action) = driver.step(input, world.now) else {
                continue;
            };
            if !self.carry_vote(world, id, driver, action) {
                return;
            }
        }
    }

    /// Sends a commit vote; the nemesis may crash the participant just
    /// before or just after. Returns false if it crashed.
    fn send_commit_vote(
        &mut self,
        world: &mut World<'_, VaultModel>,
        id: NodeId,
        coordinator: NodeId,
        tx: &str,
    ) -> bool {
        if self.strikes(world, CrashPoint::ParticipantPreparedBeforeVote, id) {
            return false;
        }
        self.oracle.on_vote_sent(id, tx, &Vote::Commit);
        let message = TwoPcMessage::Reply {
            tx: tx.to_string(),
            reply: TwoPcReply::Voted(Vote::Commit),
        };
        self.send(world, id, coordinator, message);
        !self.strikes(world, CrashPoint::ParticipantAfterVote, id)
    }

    fn serve_decides(&mut self, world: &mut World<'_, VaultModel>, id: NodeId) {
        let applied = self.applied_index(world, id);
        let Some(node) = world.nodes.get(&id) else {
            return;
        };
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        let mut replies: Vec<(NodeId, String, TwoPcReply)> = Vec::new();
        let now = world.now;
        participant.waiting_decides.retain_mut(|wait| {
            let due = wait
                .wake
                .is_none_or(|(index, deadline)| applied >= index || now >= deadline);
            if !due {
                return true;
            }
            let decision = node.machine.decision(wait.driver.tx());
            match wait.driver.step(decision, applied, now) {
                AckAction::Reply(reply) => {
                    replies.push((wait.from, wait.driver.tx().to_string(), reply));
                    false
                }
                AckAction::AwaitApplied { index, deadline_ms } => {
                    wait.wake = Some((index, deadline_ms));
                    true
                }
            }
        });
        for (coordinator, tx, reply) in replies {
            if let TwoPcReply::Acked { decision } = reply {
                if self.strikes(world, CrashPoint::ParticipantBeforeAck, id) {
                    return;
                }
                let verb = match decision {
                    Decision::Commit => "commits",
                    Decision::Abort => "aborts",
                };
                world.trace.line(
                    world.now,
                    format_args!(
                        "Phase Participant-Decision of Node {id} {verb} tx {tx} ({decision})"
                    ),
                );
            }
            self.send(world, id, coordinator, TwoPcMessage::Reply { tx, reply });
        }
    }
}
