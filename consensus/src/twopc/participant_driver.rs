//! The sans-IO participant drivers: what a participant does with one vote
//! request and with one Decide, step by step, so the node runtime and the
//! simulation run the same code. Each takes inputs (the applied index the
//! node reached, the outcome of a vote attempt, each with `now_ms`) and
//! returns the one thing to do next: wait for the log (with a deadline),
//! attempt the vote through the resource manager, or send the reply.
//!
//! What they hold that the bare functions of [`participant`](super::participant)
//! do not:
//!
//! - the read-index wait: a participant votes only once it applied the log
//!   through the coordinator's read index, so the resource check sees every
//!   write the coordinator saw (SPEC §6.1); after the vote timeout it votes
//!   with what it has (the store refuses what it cannot check);
//! - the wait-die budget: an older transaction waits for a younger holder's
//!   decision at most half the vote timeout from the request's arrival, so
//!   the coordinator still hears an explicit vote, and then votes abort
//!   naming the holder;
//! - the acknowledgement wait: a Decide is answered once the state machine
//!   applied a decision for the transaction, or with a failure once the
//!   decision timeout passed.
//!
//! # Waiting without lost wake-ups
//!
//! Both drivers wait through one action, "wait until the node applied
//! through `index` or `deadline_ms` passed, then step with the applied
//! index". A driver waiting for a lock holder's decision asks for one entry
//! past the applied index it was last told, which the runtime read before
//! the attempt: an apply that lands between the attempt and the wait still
//! ends the wait.

use super::messages::{TwoPcReply, VoteRequest};
use super::participant::{ack, AckOutcome, VoteAttempt};
use super::Vote;
use crate::raft::NodeId;

/// How long a participant waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParticipantOptions {
    /// The coordinator counts a vote missing after this long as an abort:
    /// the participant waits for the log at most this long, and for a lock
    /// holder's decision at most half of it.
    pub vote_timeout_ms: u64,
    /// A Decide is answered with a failure if the decision is not applied
    /// within this long.
    pub decision_timeout_ms: u64,
}

/// What a [`VoteDriver`] asks the runtime to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteAction {
    /// Wait until the node applied the log through `index` or `deadline_ms`
    /// passed, then step with [`VoteInput::Applied`]. `holder` is the
    /// younger transaction whose decision the vote waits for under
    /// wait-die, `None` while it waits for the coordinator's read index.
    AwaitApplied {
        /// The applied index that ends the wait.
        index: u64,
        /// The time that ends it anyway.
        deadline_ms: u64,
        /// The transaction holding the lock, when waiting for its decision.
        holder: Option<String>,
    },
    /// Attempt the vote through the resource manager
    /// ([`vote_wait_die`](super::participant::vote_wait_die) with this
    /// `may_wait`), durably, then step with [`VoteInput::Attempted`] or
    /// [`VoteInput::AttemptFailed`].
    Attempt {
        /// Whether a conflict with a younger holder may still be waited out.
        may_wait: bool,
    },
    /// Send this vote to the coordinator; the driver is done. A commit vote
    /// leaves only after the prepare behind it is durable (the runtime
    /// steps [`VoteInput::Attempted`] only then).
    Send(Vote),
}

/// What happened, as the runtime tells a [`VoteDriver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteInput {
    /// The wait of [`VoteAction::AwaitApplied`] ended (reached or timed
    /// out); the node has applied the log through this index.
    Applied(u64),
    /// The attempt of [`VoteAction::Attempt`] gave this.
    Attempted(VoteAttempt),
    /// The attempt could not be made (the store failed); one sentence.
    AttemptFailed(String),
}

/// Where a [`VoteDriver`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VotePhase {
    /// Waiting for the coordinator's read index to be applied.
    AwaitingLog,
    /// An attempt is in progress.
    Attempting,
    /// Waiting for a lock holder's decision to be applied.
    AwaitingHolder,
    /// The vote was handed out.
    Done,
}

/// One vote request at a participant, sans I/O: the read-index wait, the
/// wait-die attempts and their budget, and the vote to send.
#[derive(Debug, Clone)]
pub struct VoteDriver<R> {
    coordinator: NodeId,
    request: VoteRequest<R>,
    read_index: u64,
    /// The log wait ends here (the vote timeout after arrival).
    log_deadline_ms: u64,
    /// Waiting for a holder ends here (half the vote timeout after arrival).
    wait_until_ms: u64,
    /// The applied index the runtime last reported.
    applied: u64,
    /// The holder the last wait was for, so a new one can be told apart.
    holder: Option<String>,
    phase: VotePhase,
}

impl<R> VoteDriver<R> {
    /// A vote request from `coordinator` arrives at `now_ms`, asking to
    /// vote once the log is applied through `read_index`; the node has
    /// applied through `applied`. Returns the driver and its first action.
    pub fn start(
        coordinator: NodeId,
        request: VoteRequest<R>,
        read_index: u64,
        applied: u64,
        now_ms: u64,
        options: ParticipantOptions,
    ) -> (Self, VoteAction) {
        let mut driver = VoteDriver {
            coordinator,
            request,
            read_index,
            log_deadline_ms: now_ms.saturating_add(options.vote_timeout_ms),
            wait_until_ms: now_ms.saturating_add(options.vote_timeout_ms / 2),
            applied,
            holder: None,
            phase: VotePhase::AwaitingLog,
        };
        let action = driver.after_log_wait(now_ms);
        (driver, action)
    }

    /// The coordinator that asked.
    pub fn coordinator(&self) -> NodeId {
        self.coordinator
    }

    /// The request being voted on.
    pub fn request(&self) -> &VoteRequest<R> {
        &self.request
    }

    /// The coordinator's read index.
    pub fn read_index(&self) -> u64 {
        self.read_index
    }

    /// Whether the vote was handed out.
    pub fn is_done(&self) -> bool {
        self.phase == VotePhase::Done
    }

    /// Feeds one input at `now_ms` and returns the next action. An input
    /// that does not fit the phase (a stale wake-up, anything after the
    /// vote) repeats the current wait, or is ignored once done (`None`).
    pub fn step(&mut self, input: VoteInput, now_ms: u64) -> Option<VoteAction> {
        match (self.phase, input) {
            (VotePhase::Done, _) => None,
            (VotePhase::AwaitingLog, VoteInput::Applied(applied)) => {
                self.applied = self.applied.max(applied);
                Some(self.after_log_wait(now_ms))
            }
            (VotePhase::AwaitingHolder, VoteInput::Applied(applied)) => {
                self.applied = self.applied.max(applied);
                Some(self.attempt(now_ms))
            }
            (VotePhase::Attempting, VoteInput::Attempted(VoteAttempt::Voted(vote))) => {
                Some(self.send(vote))
            }
            (VotePhase::Attempting, VoteInput::Attempted(VoteAttempt::Wait { holder })) => {
                self.phase = VotePhase::AwaitingHolder;
                self.holder = Some(holder.clone());
                Some(VoteAction::AwaitApplied {
                    index: self.applied.saturating_add(1),
                    deadline_ms: self.wait_until_ms,
                    holder: Some(holder),
                })
            }
            (VotePhase::Attempting, VoteInput::AttemptFailed(reason)) => {
                Some(self.send(Vote::Abort(format!("this node cannot prepare: {reason}"))))
            }
            (VotePhase::AwaitingLog, _) => Some(self.await_log()),
            (VotePhase::AwaitingHolder, _) => Some(VoteAction::AwaitApplied {
                index: self.applied.saturating_add(1),
                deadline_ms: self.wait_until_ms,
                holder: self.holder.clone(),
            }),
            // Only an attempt's outcome moves an attempt on.
            (VotePhase::Attempting, VoteInput::Applied(applied)) => {
                self.applied = self.applied.max(applied);
                None
            }
        }
    }

    /// The holder whose decision the vote last waited for, if any.
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref()
    }

    fn after_log_wait(&mut self, now_ms: u64) -> VoteAction {
        if self.applied >= self.read_index || now_ms >= self.log_deadline_ms {
            self.attempt(now_ms)
        } else {
            self.await_log()
        }
    }

    fn await_log(&self) -> VoteAction {
        VoteAction::AwaitApplied {
            index: self.read_index,
            deadline_ms: self.log_deadline_ms,
            holder: None,
        }
    }

    fn attempt(&mut self, now_ms: u64) -> VoteAction {
        self.phase = VotePhase::Attempting;
        VoteAction::Attempt {
            may_wait: now_ms < self.wait_until_ms,
        }
    }

    fn send(&mut self, vote: Vote) -> VoteAction {
        self.phase = VotePhase::Done;
        VoteAction::Send(vote)
    }
}

/// What an [`AckDriver`] asks the runtime to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckAction {
    /// Wait until the node applied through `index` or `deadline_ms` passed,
    /// then step again with what the state machine applied for the
    /// transaction.
    AwaitApplied {
        /// The applied index that ends the wait.
        index: u64,
        /// The time that ends it anyway.
        deadline_ms: u64,
    },
    /// Send this answer to the coordinator; the driver is done.
    Reply(TwoPcReply),
}

/// One Decide at a participant, sans I/O: acknowledged once the state
/// machine applied a decision for the transaction (the decision arrives
/// through the log, never from the message), or answered with a failure
/// after the decision timeout.
#[derive(Debug, Clone)]
pub struct AckDriver {
    me: NodeId,
    tx: String,
    timeout_ms: u64,
    deadline_ms: u64,
}

impl AckDriver {
    /// A Decide for `tx` arrives at participant `me` at `now_ms`.
    pub fn start(me: NodeId, tx: String, now_ms: u64, options: ParticipantOptions) -> Self {
        AckDriver {
            me,
            tx,
            timeout_ms: options.decision_timeout_ms,
            deadline_ms: now_ms.saturating_add(options.decision_timeout_ms),
        }
    }

    /// The transaction.
    pub fn tx(&self) -> &str {
        &self.tx
    }

    /// The state machine, having applied through `applied_index`, holds
    /// `decision` for the transaction (`None`: none yet). Returns the next
    /// action.
    pub fn step(
        &self,
        decision: Option<super::Decision>,
        applied_index: u64,
        now_ms: u64,
    ) -> AckAction {
        match ack(decision) {
            AckOutcome::Ack(decision) => AckAction::Reply(TwoPcReply::Acked { decision }),
            AckOutcome::Wait if now_ms >= self.deadline_ms => {
                AckAction::Reply(TwoPcReply::Failed(format!(
                    "{} has not applied the decision for {} within {} ms",
                    self.me, self.tx, self.timeout_ms
                )))
            }
            AckOutcome::Wait => AckAction::AwaitApplied {
                index: applied_index.saturating_add(1),
                deadline_ms: self.deadline_ms,
            },
        }
    }
}
