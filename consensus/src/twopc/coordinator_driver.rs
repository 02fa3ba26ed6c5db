//! The sans-IO coordinator driver: one transaction's [`Coordinator`] with
//! everything around it that every runtime needs, so the node runtime and
//! the simulation run the same code. It takes inputs (replies, the logged
//! decision, the membership it asked for, ticks, each with `now_ms`) and
//! returns [`CoordinatorAction`]s: messages to send, a decision entry to
//! propose, deadlines to arm.
//!
//! What it adds to the bare [`Coordinator`]:
//!
//! - the messages themselves ([`TwoPcRequest`] over the application's
//!   resource `R`), not just "send a vote to node 2";
//! - the membership-change guard: before a decision is proposed it asks for
//!   the membership the node knows now ([`CoordinatorAction::ReadMembership`])
//!   and proposes an abort instead of a commit if it changed since the
//!   votes were asked for (a node that joined during the vote would
//!   otherwise apply a commit it was never asked about). The check narrows
//!   that window to the time the decision takes to commit; the state
//!   machine closes it by checking the participants the entry carries
//!   against the configuration in force at its index (SPEC §13);
//! - optionally, proposing the decision again when it does not show up in
//!   the log, and giving up after a few tries (recovery settles it);
//! - one deadline at a time, armed through [`CoordinatorAction::ArmDeadline`].

use super::coordinator::{Coordinator, CoordinatorOutput, Phase, TransactionReport};
use super::messages::{TwoPcRequest, VoteRequest};
use super::{Decision, Vote};
use crate::raft::NodeId;

/// How a [`CoordinatorDriver`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoordinatorOptions {
    /// Votes missing after this long count as aborts; acks are waited for
    /// as long.
    pub vote_timeout_ms: u64,
    /// Proposing the decision again: `None` for a runtime whose proposals
    /// retry on their own until they commit or fail (the vault's
    /// `Node::propose`).
    pub proposal_retry: Option<ProposalRetry>,
}

/// When a proposed decision that does not show up in the log is proposed
/// again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProposalRetry {
    /// After a proposal a leader took: wait this long for the decision.
    pub timeout_ms: u64,
    /// After a proposal no leader took ([`CoordinatorInput::ProposalNotTaken`]).
    pub retry_ms: u64,
    /// Proposals before giving up ([`CoordinatorAction::GaveUp`]).
    pub most: u32,
}

/// What happened, as the runtime tells the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorInput {
    /// `from` answered the vote request (a failure or no answer is an
    /// abort vote with its reason, see `TwoPcReply::into_vote`).
    Voted {
        /// The participant.
        from: NodeId,
        /// Its vote.
        vote: Vote,
    },
    /// `from` applied the decision.
    Acked {
        /// The participant.
        from: NodeId,
    },
    /// The members (voters and learners) the node knows now, in answer to
    /// [`CoordinatorAction::ReadMembership`].
    Members(Vec<NodeId>),
    /// No leader took the last proposal (only with a [`ProposalRetry`]).
    ProposalNotTaken,
    /// The log holds `decision` for the transaction: the runtime's proposal
    /// committed, or an earlier decision (a recovery abort) won.
    DecisionLogged(Decision),
    /// The armed deadline passed.
    Tick,
}

/// What the runtime must do, in the order given.
///
/// # Ordering
///
/// - [`CoordinatorAction::Propose`] must be durable (committed in the log)
///   before the runtime reports [`CoordinatorInput::DecisionLogged`], and
///   the decision reported is the one the log holds, which may differ from
///   the one proposed (the first decision for a transaction wins). Decide
///   messages are only produced after that input.
/// - [`CoordinatorAction::ArmDeadline`] replaces any earlier deadline; when
///   it passes, the runtime sends [`CoordinatorInput::Tick`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoordinatorAction<R> {
    /// Send `message` to node `to` (possibly this node itself).
    Send {
        /// The recipient.
        to: NodeId,
        /// The message.
        message: TwoPcRequest<R>,
    },
    /// Read the membership the node knows now and answer with
    /// [`CoordinatorInput::Members`]: the decision waits for it.
    ReadMembership,
    /// Propose this decision entry to the log.
    Propose(DecisionProposal<R>),
    /// Call back with [`CoordinatorInput::Tick`] at `at_ms`.
    ArmDeadline {
        /// When, on the caller's clock.
        at_ms: u64,
    },
    /// The decision never showed up in the log after every proposal: the
    /// coordinator stops, and recovery through the leader settles the
    /// transaction.
    GaveUp,
    /// The transaction is over (every ack in, or the ack deadline passed):
    /// what the client is told.
    Finished(TransactionReport),
}

/// A decision entry to propose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionProposal<R> {
    /// The transaction.
    pub tx: String,
    /// The resource it locks.
    pub resource: R,
    /// The decision.
    pub decision: Decision,
    /// Whom the votes were asked of: the state machine applies a commit
    /// only if this is the membership in force at the entry's index.
    pub participants: Vec<NodeId>,
    /// Whether every vote was commit but the membership changed while the
    /// votes were out, so this is an abort.
    pub membership_changed: bool,
}

/// One transaction's coordinator with its runtime logic, sans I/O.
#[derive(Debug, Clone)]
pub struct CoordinatorDriver<R> {
    coordinator: Coordinator,
    request: VoteRequest<R>,
    read_index: u64,
    participants: Vec<NodeId>,
    options: CoordinatorOptions,
    /// The protocol's decision, waiting for the membership to be read.
    deciding: Option<Decision>,
    /// The entry proposed, once the membership was checked.
    proposal: Option<DecisionProposal<R>>,
    proposals: u32,
    next_proposal_ms: Option<u64>,
    armed: Option<u64>,
    gave_up: bool,
}

impl<R: Clone> CoordinatorDriver<R> {
    /// Starts `request` over `participants` at `now_ms`; `read_index` is the
    /// log index the resource was read at. Returns the vote requests and
    /// the vote deadline.
    pub fn start(
        request: VoteRequest<R>,
        read_index: u64,
        participants: impl IntoIterator<Item = NodeId>,
        now_ms: u64,
        options: CoordinatorOptions,
    ) -> (Self, Vec<CoordinatorAction<R>>) {
        let mut participants: Vec<NodeId> = participants.into_iter().collect();
        participants.sort();
        participants.dedup();
        let (coordinator, outputs) = Coordinator::start(
            request.tx.clone(),
            participants.iter().copied(),
            now_ms,
            options.vote_timeout_ms,
        );
        let mut driver = CoordinatorDriver {
            coordinator,
            request,
            read_index,
            participants,
            options,
            deciding: None,
            proposal: None,
            proposals: 0,
            next_proposal_ms: None,
            armed: None,
            gave_up: false,
        };
        let actions = driver.carry(outputs);
        (driver, actions)
    }

    /// The transaction id.
    pub fn tx(&self) -> &str {
        &self.request.tx
    }

    /// What the participants are asked.
    pub fn request(&self) -> &VoteRequest<R> {
        &self.request
    }

    /// Whom the votes are asked of, sorted.
    pub fn participants(&self) -> &[NodeId] {
        &self.participants
    }

    /// The protocol's phase.
    pub fn phase(&self) -> Phase {
        self.coordinator.phase()
    }

    /// Whether the driver has nothing more to do (finished or gave up).
    pub fn is_done(&self) -> bool {
        self.gave_up || matches!(self.phase(), Phase::Finished(_))
    }

    /// The deadline armed last, if any.
    pub fn deadline_ms(&self) -> Option<u64> {
        self.armed
    }

    /// Feeds one input at `now_ms` and returns what to do.
    pub fn step(&mut self, input: CoordinatorInput, now_ms: u64) -> Vec<CoordinatorAction<R>> {
        if self.is_done() {
            return Vec::new();
        }
        let outputs = match input {
            CoordinatorInput::Voted { from, vote } => self.coordinator.on_vote(from, vote, now_ms),
            CoordinatorInput::Acked { from } => self.coordinator.on_ack(from),
            CoordinatorInput::DecisionLogged(decision) => {
                // An earlier decision may win before this one was proposed.
                self.deciding = None;
                self.next_proposal_ms = None;
                self.coordinator.on_decision_logged(decision, now_ms)
            }
            CoordinatorInput::Members(members) => {
                let mut actions = self.propose_checked(members, now_ms);
                actions.extend(self.rearm());
                return actions;
            }
            CoordinatorInput::ProposalNotTaken => {
                if let (Some(retry), Some(_)) = (self.options.proposal_retry, &self.proposal) {
                    self.next_proposal_ms = Some(now_ms.saturating_add(retry.retry_ms));
                }
                return self.rearm().into_iter().collect();
            }
            CoordinatorInput::Tick => {
                let outputs = self.coordinator.on_tick(now_ms);
                let mut actions = self.carry(outputs);
                if actions.is_empty() {
                    actions = self.propose_again(now_ms);
                }
                actions.extend(self.rearm());
                return actions;
            }
        };
        self.carry(outputs)
    }

    /// Turns the coordinator's outputs into actions, then arms the deadline.
    fn carry(&mut self, outputs: Vec<CoordinatorOutput>) -> Vec<CoordinatorAction<R>> {
        let mut actions = Vec::new();
        for output in outputs {
            actions.push(match output {
                CoordinatorOutput::SendVote { to } => CoordinatorAction::Send {
                    to,
                    message: TwoPcRequest::Vote {
                        request: self.request.clone(),
                        read_index: self.read_index,
                    },
                },
                CoordinatorOutput::ProposeDecision(decision) => {
                    self.deciding = Some(decision);
                    CoordinatorAction::ReadMembership
                }
                CoordinatorOutput::SendDecide { to, decision } => CoordinatorAction::Send {
                    to,
                    message: TwoPcRequest::Decide {
                        tx: self.request.tx.clone(),
                        decision,
                    },
                },
                CoordinatorOutput::Finished(report) => CoordinatorAction::Finished(report),
            });
        }
        actions.extend(self.rearm());
        actions
    }

    /// The membership guard, then the first proposal.
    fn propose_checked(
        &mut self,
        mut members: Vec<NodeId>,
        now_ms: u64,
    ) -> Vec<CoordinatorAction<R>> {
        let Some(decision) = self.deciding.take() else {
            return Vec::new();
        };
        members.sort();
        members.dedup();
        let membership_changed = decision == Decision::Commit && members != self.participants;
        let decision = if membership_changed {
            Decision::Abort
        } else {
            decision
        };
        self.proposal = Some(DecisionProposal {
            tx: self.request.tx.clone(),
            resource: self.request.resource.clone(),
            decision,
            participants: self.participants.clone(),
            membership_changed,
        });
        self.propose(now_ms)
    }

    /// Past the proposal deadline and still deciding: propose again, or give
    /// up after the last try.
    fn propose_again(&mut self, now_ms: u64) -> Vec<CoordinatorAction<R>> {
        let (Some(retry), Some(due)) = (self.options.proposal_retry, self.next_proposal_ms) else {
            return Vec::new();
        };
        if now_ms < due || !matches!(self.phase(), Phase::Deciding(_)) {
            return Vec::new();
        }
        if self.proposals >= retry.most {
            self.gave_up = true;
            self.next_proposal_ms = None;
            return vec![CoordinatorAction::GaveUp];
        }
        self.propose(now_ms)
    }

    fn propose(&mut self, now_ms: u64) -> Vec<CoordinatorAction<R>> {
        let Some(proposal) = self.proposal.clone() else {
            return Vec::new();
        };
        self.proposals += 1;
        if let Some(retry) = self.options.proposal_retry {
            self.next_proposal_ms = Some(now_ms.saturating_add(retry.timeout_ms));
        }
        vec![CoordinatorAction::Propose(proposal)]
    }

    /// Arms the next deadline if it changed.
    fn rearm(&mut self) -> Option<CoordinatorAction<R>> {
        let next = if self.is_done() {
            None
        } else {
            match self.phase() {
                Phase::Deciding(_) => self.next_proposal_ms,
                _ => self.coordinator.next_deadline_ms(),
            }
        };
        if next == self.armed {
            return None;
        }
        self.armed = next;
        next.map(|at_ms| CoordinatorAction::ArmDeadline { at_ms })
    }
}
