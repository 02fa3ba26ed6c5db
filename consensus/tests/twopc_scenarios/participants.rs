//! The participants of a 2PC scenario: an in-memory resource manager per
//! node (versions, locks, prepared rows, applied decisions), and the real
//! `VoteDriver` and `AckDriver` carried out against it.

use super::{reply_text, vote_text, Item, World};
use consensus::raft::NodeId;
use consensus::twopc::participant;
use consensus::twopc::{
    AckAction, AckDriver, Decision, LockTable, PrepareOutcome, ResourceManager, TwoPcReply,
    VoteAction, VoteDriver, VoteInput, VotePolicy, VoteRequest,
};
use std::collections::BTreeMap;

/// One node's participant: durable rows (versions, locks, prepared) and
/// what it applied from the log.
#[derive(Default)]
pub(super) struct Participant {
    pub(super) policy: VotePolicy,
    pub(super) versions: BTreeMap<String, u64>,
    /// Name → the transaction holding its lock.
    pub(super) locks: BTreeMap<String, String>,
    /// Undecided prepared transactions and when they prepared.
    pub(super) prepared: BTreeMap<String, (Item, u64)>,
    pub(super) applied: BTreeMap<String, Decision>,
    /// Log entries applied so far.
    pub(super) applied_through: usize,
    /// Vote drivers waiting until `applied_through` reaches the index or
    /// the clock the deadline.
    pub(super) waiting_votes: Vec<WaitingVote>,
    /// Decides waiting for the decision to be applied.
    pub(super) waiting_decides: Vec<(NodeId, AckDriver)>,
}

/// A vote waiting for the log or for a lock holder's decision.
pub(super) struct WaitingVote {
    driver: VoteDriver<Item>,
    index: u64,
    deadline_ms: u64,
}

impl ResourceManager for Participant {
    type Resource = Item;
    type Error = std::convert::Infallible;

    fn prepare(
        &mut self,
        request: &VoteRequest<Item>,
        now_ms: u64,
    ) -> Result<PrepareOutcome, Self::Error> {
        let (tx, item) = (&request.tx, &request.resource);
        if self.applied.contains_key(tx) {
            return Ok(PrepareOutcome::Refused(format!("{tx} is already decided")));
        }
        if self
            .locks
            .get(&item.name)
            .is_some_and(|holder| holder == tx)
        {
            return Ok(PrepareOutcome::Prepared);
        }
        match self.versions.get(&item.name) {
            Some(version) if *version == item.version => {}
            Some(version) => {
                return Ok(PrepareOutcome::Refused(format!(
                    "{} is at version {version}",
                    item.name
                )))
            }
            None => return Ok(PrepareOutcome::Refused(format!("no {}", item.name))),
        }
        self.locks.insert(item.name.clone(), tx.clone());
        self.prepared.insert(tx.clone(), (item.clone(), now_ms));
        Ok(PrepareOutcome::Prepared)
    }
}

impl LockTable for Participant {
    fn locked_by(&mut self, request: &VoteRequest<Item>) -> Result<Option<String>, Self::Error> {
        Ok(self.locks.get(&request.resource.name).cloned())
    }
}

impl World {
    /// Carries out what participant `at`'s vote driver asks until it waits
    /// or its vote is sent.
    pub(super) fn carry_vote(
        &mut self,
        at: NodeId,
        mut driver: VoteDriver<Item>,
        mut action: VoteAction,
        out: &mut Vec<String>,
    ) {
        let now = self.now;
        loop {
            let Some(participant) = self.participants.get_mut(&at) else {
                return;
            };
            let tx = driver.request().tx.clone();
            let input = match action {
                VoteAction::AwaitApplied {
                    index,
                    deadline_ms,
                    holder,
                } => {
                    match holder {
                        Some(holder) => out.push(format!(
                            "{at} holds its vote on {tx} until {holder} is decided (at most until {deadline_ms})"
                        )),
                        None => out.push(format!(
                            "{at} waits for the log through {index} to vote on {tx} (at most until {deadline_ms})"
                        )),
                    }
                    participant.waiting_votes.push(WaitingVote {
                        driver,
                        index,
                        deadline_ms,
                    });
                    return;
                }
                VoteAction::Attempt { may_wait } => {
                    let policy = participant.policy;
                    let Ok(attempt) = participant::vote_wait_die(
                        policy,
                        participant,
                        driver.request(),
                        now,
                        may_wait,
                    );
                    VoteInput::Attempted(attempt)
                }
                VoteAction::Send(vote) => {
                    out.push(format!("{at} votes {} on {tx}", vote_text(&vote)));
                    let coordinator = driver.coordinator();
                    self.reply(at, coordinator, tx, TwoPcReply::Voted(vote));
                    return;
                }
            };
            match driver.step(input, now) {
                Some(next) => action = next,
                None => return,
            }
        }
    }

    /// Steps the waiting votes of live participants whose wait is over (the
    /// log reached the index, or the clock the deadline).
    pub(super) fn wake_votes(&mut self, out: &mut Vec<String>) {
        let now = self.now;
        let ids: Vec<NodeId> = self.participants.keys().copied().collect();
        for id in ids {
            if self.crashed.contains(&id) {
                continue;
            }
            let Some(participant) = self.participants.get_mut(&id) else {
                continue;
            };
            let applied = participant.applied_through as u64;
            let (due, waiting): (Vec<WaitingVote>, Vec<WaitingVote>) = participant
                .waiting_votes
                .drain(..)
                .partition(|wait| applied >= wait.index || now >= wait.deadline_ms);
            participant.waiting_votes = waiting;
            for mut wait in due {
                if let Some(action) = wait.driver.step(VoteInput::Applied(applied), now) {
                    self.carry_vote(id, wait.driver, action, out);
                }
            }
        }
    }

    /// Answers a Decide at `at` as its driver says: an ack once the
    /// decision is applied, a failure after the decision timeout, or a wait
    /// for the log (announced if `announce_wait`).
    pub(super) fn answer_decide(
        &mut self,
        at: NodeId,
        coordinator: NodeId,
        driver: AckDriver,
        announce_wait: bool,
        out: &mut Vec<String>,
    ) {
        let Some(participant) = self.participants.get_mut(&at) else {
            return;
        };
        let tx = driver.tx().to_string();
        let applied = participant.applied.get(&tx).copied();
        let through = participant.applied_through as u64;
        match driver.step(applied, through, self.now) {
            AckAction::Reply(reply) => {
                match &reply {
                    TwoPcReply::Acked { decision } => {
                        out.push(format!("{at} acks {tx} {decision}"))
                    }
                    other => out.push(format!(
                        "{at} answers the Decide of {tx}: {}",
                        reply_text(other)
                    )),
                }
                self.reply(at, coordinator, tx, reply);
            }
            AckAction::AwaitApplied { .. } => {
                if announce_wait {
                    out.push(format!("{at} waits for the decision of {tx}"));
                }
                participant.waiting_decides.push((coordinator, driver));
            }
        }
    }

    /// Decides still unanswered at the decision timeout get a failure;
    /// the others keep waiting, silently.
    pub(super) fn time_out_decides(&mut self, out: &mut Vec<String>) {
        let ids: Vec<NodeId> = self.participants.keys().copied().collect();
        for id in ids {
            if self.crashed.contains(&id) {
                continue;
            }
            let Some(participant) = self.participants.get_mut(&id) else {
                continue;
            };
            for (coordinator, driver) in std::mem::take(&mut participant.waiting_decides) {
                self.answer_decide(id, coordinator, driver, false, out);
            }
        }
    }
}
