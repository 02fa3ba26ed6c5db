//! The coordinator of one transaction: votes in, decision out, acks in.

use super::{Decision, Vote, NO_VOTE_IN_TIME};
use crate::raft::NodeId;
use std::collections::{BTreeMap, BTreeSet};

/// Where a coordinator stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Vote requests are out; waiting for every vote or the vote deadline.
    Voting,
    /// The decision was handed to the runtime to make durable; waiting for
    /// [`Coordinator::on_decision_logged`].
    Deciding(Decision),
    /// The logged decision was sent; waiting for acks or the ack deadline.
    Acknowledging(Decision),
    /// Done; [`Coordinator::report`] is final.
    Finished(Decision),
}

/// What the runtime must do next, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorOutput {
    /// Send the transaction's vote request to `to`.
    SendVote {
        /// The participant.
        to: NodeId,
    },
    /// Make this decision durable (propose it to the log), then call
    /// [`Coordinator::on_decision_logged`] with the decision the log holds.
    ProposeDecision(Decision),
    /// Send the logged decision to `to`.
    SendDecide {
        /// The participant.
        to: NodeId,
        /// The decision the log holds for the transaction.
        decision: Decision,
    },
    /// The transaction is over (every ack in, or the ack deadline passed).
    Finished(TransactionReport),
}

/// What the client is told (the vault sends it as the answer to a delete).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransactionReport {
    /// The transaction id.
    pub tx: String,
    /// The decision the log holds.
    pub decision: Decision,
    /// Every participant's vote, an abort with its reason for those that
    /// voted abort or did not vote in time.
    pub votes: BTreeMap<NodeId, Vote>,
    /// Participants that acknowledged the decision, sorted.
    pub acked: Vec<NodeId>,
}

/// One transaction's coordinator. Pure: time arrives as `now_ms`, any
/// monotonic millisecond count the caller chooses.
#[derive(Debug, Clone)]
pub struct Coordinator {
    tx: String,
    participants: BTreeSet<NodeId>,
    votes: BTreeMap<NodeId, Vote>,
    acked: BTreeSet<NodeId>,
    phase: Phase,
    /// Votes missing at this time count as aborts.
    vote_deadline_ms: u64,
    /// How long acks are waited for, once the decision is sent.
    ack_timeout_ms: u64,
    /// Set when the decision is sent: acks missing then are reported missing.
    ack_deadline_ms: Option<u64>,
}

impl Coordinator {
    /// Starts transaction `tx` over `participants` at `now_ms`; votes are
    /// waited for `vote_timeout_ms`, acks as long again. Returns the vote
    /// requests to send, one per participant.
    pub fn start(
        tx: impl Into<String>,
        participants: impl IntoIterator<Item = NodeId>,
        now_ms: u64,
        vote_timeout_ms: u64,
    ) -> (Coordinator, Vec<CoordinatorOutput>) {
        let participants: BTreeSet<NodeId> = participants.into_iter().collect();
        let outputs = participants
            .iter()
            .map(|to| CoordinatorOutput::SendVote { to: *to })
            .collect();
        let coordinator = Coordinator {
            tx: tx.into(),
            participants,
            votes: BTreeMap::new(),
            acked: BTreeSet::new(),
            phase: Phase::Voting,
            vote_deadline_ms: now_ms.saturating_add(vote_timeout_ms),
            ack_timeout_ms: vote_timeout_ms,
            ack_deadline_ms: None,
        };
        (coordinator, outputs)
    }

    /// The transaction id.
    pub fn tx(&self) -> &str {
        &self.tx
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When the runtime should call [`Coordinator::on_tick`] next, if a
    /// deadline is pending.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        match self.phase {
            Phase::Voting => Some(self.vote_deadline_ms),
            Phase::Acknowledging(_) => self.ack_deadline_ms,
            Phase::Deciding(_) | Phase::Finished(_) => None,
        }
    }

    /// Records `from`'s vote. A vote from a non-participant, a second vote,
    /// or a vote after the decision changes nothing. Once every vote is in,
    /// returns the decision to make durable.
    pub fn on_vote(&mut self, from: NodeId, vote: Vote, now_ms: u64) -> Vec<CoordinatorOutput> {
        if self.phase != Phase::Voting || !self.participants.contains(&from) {
            return Vec::new();
        }
        if now_ms > self.vote_deadline_ms {
            return self.on_tick(now_ms);
        }
        self.votes.entry(from).or_insert(vote);
        if self.votes.len() == self.participants.len() {
            return self.decide();
        }
        Vec::new()
    }

    /// Advances time: past the vote deadline, missing votes become aborts
    /// and the decision is made; past the ack deadline, the transaction
    /// finishes with the acks it has.
    pub fn on_tick(&mut self, now_ms: u64) -> Vec<CoordinatorOutput> {
        match self.phase {
            Phase::Voting if now_ms >= self.vote_deadline_ms => {
                for participant in &self.participants {
                    self.votes
                        .entry(*participant)
                        .or_insert_with(|| Vote::Abort(NO_VOTE_IN_TIME.into()));
                }
                self.decide()
            }
            Phase::Acknowledging(decision)
                if self
                    .ack_deadline_ms
                    .is_some_and(|deadline| now_ms >= deadline) =>
            {
                self.finish(decision)
            }
            _ => Vec::new(),
        }
    }

    /// The log holds `decision` for this transaction (the runtime's proposal
    /// committed, or an earlier decision won). Returns a Decide for every
    /// participant. Called again, or before a decision was asked for, it
    /// changes nothing: only the first logged decision is sent.
    pub fn on_decision_logged(
        &mut self,
        decision: Decision,
        now_ms: u64,
    ) -> Vec<CoordinatorOutput> {
        if !matches!(self.phase, Phase::Deciding(_)) {
            return Vec::new();
        }
        self.phase = Phase::Acknowledging(decision);
        self.ack_deadline_ms = Some(now_ms.saturating_add(self.ack_timeout_ms));
        self.participants
            .iter()
            .map(|to| CoordinatorOutput::SendDecide { to: *to, decision })
            .collect()
    }

    /// Records `from`'s acknowledgement of the decision; finishes once every
    /// participant acked.
    pub fn on_ack(&mut self, from: NodeId) -> Vec<CoordinatorOutput> {
        let Phase::Acknowledging(decision) = self.phase else {
            return Vec::new();
        };
        if !self.participants.contains(&from) {
            return Vec::new();
        }
        self.acked.insert(from);
        if self.acked.len() == self.participants.len() {
            return self.finish(decision);
        }
        Vec::new()
    }

    /// What the client is told so far (final once finished).
    pub fn report(&self) -> Option<TransactionReport> {
        let decision = match self.phase {
            Phase::Voting | Phase::Deciding(_) => return None,
            Phase::Acknowledging(decision) | Phase::Finished(decision) => decision,
        };
        Some(TransactionReport {
            tx: self.tx.clone(),
            decision,
            votes: self.votes.clone(),
            acked: self.acked.iter().copied().collect(),
        })
    }

    fn decide(&mut self) -> Vec<CoordinatorOutput> {
        let decision = if self.votes.values().all(Vote::is_commit) {
            Decision::Commit
        } else {
            Decision::Abort
        };
        self.phase = Phase::Deciding(decision);
        vec![CoordinatorOutput::ProposeDecision(decision)]
    }

    fn finish(&mut self, decision: Decision) -> Vec<CoordinatorOutput> {
        self.phase = Phase::Finished(decision);
        self.report()
            .map(CoordinatorOutput::Finished)
            .into_iter()
            .collect()
    }
}
