//! The oracle: a ghost record of what every transaction did (who was asked,
//! who voted what, whose prepare became durable, what the log decided) and
//! of every effect every node applied, and the 2PC properties checked
//! against it.
//!
//! Checked as the run goes:
//! - **commit validity** (SPEC §6.2): when a commit is first applied, every
//!   participant of the transaction sent a commit vote and its prepare had
//!   reached its disk; a commit is never logged for a transaction in which
//!   some participant voted abort only, or did not vote.
//! - **same effects in the same order** (SPEC §1, §6.2): every node that
//!   applies index `i` gets the same effect (add, update, delete, decision)
//!   as the first node that applied it, so adds and deletes are ordered the
//!   same way on every node, and an abort never deletes.
//! - **truthful reports**: what a coordinator tells its client is the
//!   decision the log holds.
//!
//! Checked once the system settled (`final_checks`): identical applied
//! states on every member (atomicity: a secret is deleted everywhere or
//! nowhere) and no prepared row left on any member (no lock held forever).

use super::machine::{Effect, VaultModel};
use super::participant::ParticipantNode;
use crate::raft::{LogIndex, NodeId};
use crate::sim::invariants::Violation;
use crate::twopc::{Decision, TransactionReport, Vote};
use std::collections::{BTreeMap, BTreeSet};

/// What the oracle knows about one transaction.
#[derive(Clone, Debug)]
pub(crate) struct TxRecord {
    /// The node that coordinated it.
    pub(crate) coordinator: NodeId,
    /// Whom it asked to vote.
    pub(crate) participants: BTreeSet<NodeId>,
    /// Participants that sent a commit vote (at least once).
    pub(crate) commit_votes: BTreeSet<NodeId>,
    /// Participants that sent an abort vote, with the first reason.
    pub(crate) abort_votes: BTreeMap<NodeId, String>,
    /// Participants whose prepare reached their disk.
    pub(crate) durable: BTreeSet<NodeId>,
    /// Participants that crashed while their prepare was not yet durable.
    pub(crate) lost: BTreeSet<NodeId>,
    /// The first decision in the log and its index.
    pub(crate) decision: Option<(Decision, LogIndex)>,
}

/// The ghost state of a run.
#[derive(Debug, Default)]
pub(crate) struct Oracle {
    /// Every transaction started, by id.
    pub(crate) txs: BTreeMap<String, TxRecord>,
    /// The effect of every applied index, as the first node computed it.
    effects: BTreeMap<LogIndex, (NodeId, Effect)>,
    /// Commits applied while the membership in force at their index held
    /// a node the coordinator never asked (it joined after the vote). Not a
    /// failure: counted and reported (see docs/simulation.md).
    pub(crate) unasked_member_commits: u64,
}

/// A violation of a 2PC property.
pub(crate) fn violation(invariant: &'static str, detail: String) -> Violation {
    Violation {
        invariant,
        section: "SPEC §6",
        detail,
    }
}

impl Oracle {
    /// `coordinator` started `tx`, asking `participants`.
    pub(crate) fn on_start(&mut self, tx: &str, coordinator: NodeId, participants: &[NodeId]) {
        let record = TxRecord {
            coordinator,
            participants: participants.iter().copied().collect(),
            commit_votes: BTreeSet::new(),
            abort_votes: BTreeMap::new(),
            durable: BTreeSet::new(),
            lost: BTreeSet::new(),
            decision: None,
        };
        self.txs.insert(tx.to_string(), record);
    }

    /// `node` sent `vote` in `tx`.
    pub(crate) fn on_vote_sent(&mut self, node: NodeId, tx: &str, vote: &Vote) {
        if let Some(record) = self.txs.get_mut(tx) {
            match vote {
                Vote::Commit => {
                    record.commit_votes.insert(node);
                }
                Vote::Abort(reason) => {
                    record.abort_votes.entry(node).or_insert(reason.clone());
                }
            }
        }
    }

    /// `node`'s prepare of `tx` reached its disk.
    pub(crate) fn on_durable(&mut self, node: NodeId, tx: &str) {
        if let Some(record) = self.txs.get_mut(tx) {
            record.durable.insert(node);
        }
    }

    /// `node` crashed before its prepare of `tx` reached its disk.
    pub(crate) fn on_prepare_lost(&mut self, node: NodeId, tx: &str) {
        if let Some(record) = self.txs.get_mut(tx) {
            record.lost.insert(node);
        }
    }

    /// `node` applied `effect` at `index`; returns whether it is the first
    /// node to apply that index.
    pub(crate) fn on_effect(
        &mut self,
        node: NodeId,
        index: LogIndex,
        effect: &Effect,
    ) -> Result<bool, Violation> {
        if let Some((first, expected)) = self.effects.get(&index) {
            if expected != effect {
                return Err(violation(
                    "same effects in the same order on every node",
                    format!(
                        "at index {index} Node {node} applied {effect:?} but Node {first} \
                         applied {expected:?}"
                    ),
                ));
            }
            return Ok(false);
        }
        self.effects.insert(index, (node, effect.clone()));
        if let Effect::Decided {
            tx,
            decision,
            deleted,
        } = effect
        {
            if *decision == Decision::Abort && *deleted {
                let detail = format!("GLOBAL_ABORT of {tx} at index {index} deleted the secret");
                return Err(violation("an abort leaves the secret untouched", detail));
            }
            if let Some(record) = self.txs.get_mut(tx) {
                record.decision = Some((*decision, index));
            }
            if *decision == Decision::Commit {
                self.check_commit(tx, index)?;
            }
        }
        Ok(true)
    }

    /// The commit of `tx` was first applied where `members` were the
    /// cluster's members: returns those the coordinator never asked.
    pub(crate) fn unasked_members(&mut self, tx: &str, members: &BTreeSet<NodeId>) -> Vec<NodeId> {
        let Some(record) = self.txs.get(tx) else {
            return Vec::new();
        };
        let unasked: Vec<NodeId> = members.difference(&record.participants).copied().collect();
        if !unasked.is_empty() {
            self.unasked_member_commits += 1;
        }
        unasked
    }

    /// A commit may be logged only if every participant voted commit with a
    /// durable prepare behind the vote.
    fn check_commit(&self, tx: &str, index: LogIndex) -> Result<(), Violation> {
        let Some(record) = self.txs.get(tx) else {
            let detail = format!("GLOBAL_COMMIT at index {index} for {tx}, which nobody started");
            return Err(violation(
                "commit only if every participant voted commit",
                detail,
            ));
        };
        for participant in &record.participants {
            if !record.commit_votes.contains(participant) {
                let why = match record.abort_votes.get(participant) {
                    Some(reason) => format!("voted abort ({reason})"),
                    None => "never voted".to_string(),
                };
                return Err(violation(
                    "commit only if every participant voted commit",
                    format!(
                        "GLOBAL_COMMIT of {tx} (coordinator Node {}) applied at index {index}, \
                         but participant Node {participant} {why}",
                        record.coordinator
                    ),
                ));
            }
            if !record.durable.contains(participant) {
                let why = if record.lost.contains(participant) {
                    "was lost in a crash before its fsync"
                } else {
                    "was not yet fsynced"
                };
                return Err(violation(
                    "a commit vote rests on a durable prepare",
                    format!(
                        "GLOBAL_COMMIT of {tx} applied at index {index}, but the prepare of \
                         Node {participant}, which voted commit, {why}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A coordinator finished `report`: the client must hear the decision
    /// the log holds.
    pub(crate) fn on_report(&self, report: &TransactionReport) -> Result<(), Violation> {
        let logged = self
            .txs
            .get(&report.tx)
            .and_then(|record| record.decision)
            .map(|(decision, _)| decision);
        if logged == Some(report.decision) {
            return Ok(());
        }
        Err(violation(
            "the client hears the logged decision",
            format!(
                "the coordinator of {} reported {} but the log holds {logged:?}",
                report.tx, report.decision
            ),
        ))
    }

    /// The decision the log holds for `tx`, as far as any node applied it.
    pub(crate) fn logged(&self, tx: &str) -> Option<Decision> {
        let record = self.txs.get(tx)?;
        record.decision.map(|(decision, _)| decision)
    }
}

/// The checks once the system settled: every member applied the same state
/// and holds no lock.
pub(crate) fn final_checks(
    members: &BTreeMap<NodeId, (&VaultModel, &ParticipantNode)>,
) -> Result<(), Violation> {
    let mut reference: Option<(NodeId, &VaultModel)> = None;
    for (id, (machine, participant)) in members {
        match reference {
            None => reference = Some((*id, machine)),
            Some((first, expected)) if expected != *machine => {
                return Err(violation(
                    "atomicity: identical applied state on every node",
                    format!("Node {id} settled at {machine:?} but Node {first} at {expected:?}"),
                ));
            }
            Some(_) => {}
        }
        let held = participant.table.durable_prepared();
        if !held.is_empty() {
            return Err(violation(
                "no lock is held forever",
                format!(
                    "after settling, Node {id} still holds prepared transactions {held:?} \
                     (decisions here: {:?})",
                    held.iter()
                        .map(|tx| machine.decision(tx))
                        .collect::<Vec<_>>()
                ),
            ));
        }
    }
    Ok(())
}
