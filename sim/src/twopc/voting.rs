//! The participant runtime: voting and acknowledging, as
//! `vault/src/server/twopc/participant.rs` does it.
//!
//! - A vote request waits until the node applied the log through the
//!   coordinator's read index (at most the vote timeout), then the pure
//!   [`participant::vote`] decides through the [`SimResource`]. A commit
//!   vote is held until the prepare's fsync completes (SPEC §6.1: the lock
//!   is durable before the vote leaves); the planted bug
//!   `vote_before_durable_prepare` sends it at once.
//! - A Decide waits (at most the decision timeout) until the node applied a
//!   decision for the transaction, then [`participant::ack`] answers.

use super::app::TwoPcApp;
use super::machine::VaultModel;
use super::messages::TwoPcMessage;
use super::nemesis::CrashPoint;
use super::participant::{SimResource, WaitingDecide, WaitingVote};
use super::{DECISION_TIMEOUT, VOTE_TIMEOUT};
use crate::application::World;
use crate::node::SimMachine;
use consensus::raft::NodeId;
use consensus::twopc::participant::{self, AckOutcome};
use consensus::twopc::{Decision, Vote, VoteRequest};

impl TwoPcApp {
    /// A vote request reached participant `at`: it waits for the log.
    pub(crate) fn on_vote_request(
        &mut self,
        world: &World<'_, VaultModel>,
        at: NodeId,
        from: NodeId,
        request: VoteRequest,
        read_index: u64,
    ) {
        let participant = self.participants.entry(at).or_default();
        participant.waiting_votes.push(WaitingVote {
            from,
            request,
            read_index,
            deadline: world.now + VOTE_TIMEOUT,
        });
    }

    /// A Decide reached participant `at`: it waits for the applied decision.
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
            tx,
            deadline: world.now + DECISION_TIMEOUT,
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

    fn serve_votes(&mut self, world: &mut World<'_, VaultModel>, id: NodeId) {
        let applied = world
            .nodes
            .get(&id)
            .map_or(0, |n| n.machine.applied_index());
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        let now = world.now;
        let (ready, waiting): (Vec<WaitingVote>, Vec<WaitingVote>) = participant
            .waiting_votes
            .drain(..)
            .partition(|wait| applied >= wait.read_index || now >= wait.deadline);
        participant.waiting_votes = waiting;
        for wait in ready {
            if !self.is_alive(world, id) {
                return;
            }
            self.cast_vote(world, id, wait.from, &wait.request, wait.read_index);
        }
    }

    /// Votes on `request` at participant `id` and sends (or holds) the vote.
    fn cast_vote(
        &mut self,
        world: &mut World<'_, VaultModel>,
        id: NodeId,
        coordinator: NodeId,
        request: &VoteRequest,
        read_index: u64,
    ) {
        let (Some(node), Some(participant)) =
            (world.nodes.get(&id), self.participants.get_mut(&id))
        else {
            return;
        };
        let policy = participant.policy;
        let mut resource = SimResource {
            table: &mut participant.table,
            machine: &node.machine,
            read_index,
        };
        let vote = match participant::vote(policy, &mut resource, request, world.now) {
            Ok(vote) => vote,
            Err(never) => match never {},
        };
        let tx = request.tx.as_str();
        let durable = participant.table.is_durable(tx);
        match &vote {
            Vote::Commit => world.trace.line(
                world.now,
                format_args!("Phase Participant-Vote of Node {id} votes VOTE_COMMIT for tx {tx}"),
            ),
            Vote::Abort(reason) => world.trace.line(
                world.now,
                format_args!(
                    "Phase Participant-Vote of Node {id} votes VOTE_ABORT for tx {tx}: {reason}"
                ),
            ),
        }
        match vote {
            Vote::Commit if durable || self.bugs.vote_before_durable_prepare => {
                self.send_commit_vote(world, id, coordinator, tx);
            }
            Vote::Commit => participant.held_votes.push((coordinator, tx.to_string())),
            abort @ Vote::Abort(_) => {
                self.oracle.on_vote_sent(id, tx, &abort);
                let message = TwoPcMessage::Voted {
                    tx: tx.to_string(),
                    vote: abort,
                };
                self.send(world, id, coordinator, message);
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
            .partition(|(_, waiting)| waiting == tx);
        participant.held_votes = held;
        for (coordinator, _) in released {
            if !self.send_commit_vote(world, id, coordinator, tx) {
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
        let message = TwoPcMessage::Voted {
            tx: tx.to_string(),
            vote: Vote::Commit,
        };
        self.send(world, id, coordinator, message);
        !self.strikes(world, CrashPoint::ParticipantAfterVote, id)
    }

    fn serve_decides(&mut self, world: &mut World<'_, VaultModel>, id: NodeId) {
        let Some(node) = world.nodes.get(&id) else {
            return;
        };
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        let mut ready: Vec<(NodeId, String, Decision)> = Vec::new();
        let now = world.now;
        participant.waiting_decides.retain(|wait| {
            match participant::ack(node.machine.decision(&wait.tx)) {
                AckOutcome::Ack(decision) => {
                    ready.push((wait.from, wait.tx.clone(), decision));
                    false
                }
                AckOutcome::Wait => now < wait.deadline,
            }
        });
        for (coordinator, tx, decision) in ready {
            if self.strikes(world, CrashPoint::ParticipantBeforeAck, id) {
                return;
            }
            let verb = match decision {
                Decision::Commit => "commits",
                Decision::Abort => "aborts",
            };
            world.trace.line(
                world.now,
                format_args!("Phase Participant-Decision of Node {id} {verb} tx {tx} ({decision})"),
            );
            self.send(world, id, coordinator, TwoPcMessage::Acked { tx });
        }
    }
}
