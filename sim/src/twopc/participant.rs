//! A simulated participant's state: the durable participant table (what the
//! vault keeps in `twopc_participant`), the resource manager the pure
//! [`participant::vote`](consensus::twopc::participant::vote) drives, and the
//! requests a node holds in memory (lost when it crashes).
//!
//! The table lives on the node's simulated disk. A prepare is written at
//! once (visible to later checks, as a committed SQLite transaction is) but
//! is durable only when its fsync completes; a crash before that loses it.
//! The runtime lets a commit vote leave only once the prepare behind it is
//! durable (SPEC §6.1).

use super::machine::VaultModel;
use super::messages::SimSecret;
use consensus::raft::{LogIndex, NodeId};
use consensus::twopc::participant::Prepared;
use consensus::twopc::{
    AckDriver, Decision, LockTable, PrepareOutcome, ResourceManager, VoteDriver, VotePolicy,
    VoteRequest,
};
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;

/// Where this node stands in one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RowState {
    /// Voted commit, holding the lock, waiting for the decision.
    Prepared,
    /// The log decided commit (applied here).
    Committed,
    /// The log decided abort (applied here).
    Aborted,
}

/// One row of the participant table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    /// The locked secret.
    pub(crate) name: String,
    /// The version voted on.
    pub(crate) version: u64,
    /// Prepared or settled.
    pub(crate) state: RowState,
    /// The step it was prepared at (for the decision timeout).
    pub(crate) prepared_at: u64,
}

/// The participant table of one node: durable rows plus writes whose fsync
/// has not completed. Rows are never removed, so the final checks see every
/// transaction a node ever prepared.
#[derive(Clone, Debug, Default)]
pub(crate) struct ParticipantTable {
    durable: BTreeMap<String, Row>,
    /// Written but not fsynced yet, oldest first: a crash loses them.
    pending: VecDeque<(String, Row)>,
}

impl ParticipantTable {
    /// The row of `tx` as reads see it (the latest write).
    pub(crate) fn row(&self, tx: &str) -> Option<&Row> {
        let pending = self.pending.iter().rev().find(|(id, _)| id == tx);
        pending.map(|(_, row)| row).or_else(|| self.durable.get(tx))
    }

    /// Whether `tx`'s row has reached the disk.
    pub(crate) fn is_durable(&self, tx: &str) -> bool {
        self.durable.contains_key(tx)
    }

    /// Every row as reads see it, by transaction.
    fn visible(&self) -> BTreeMap<&str, &Row> {
        let mut rows: BTreeMap<&str, &Row> = self
            .durable
            .iter()
            .map(|(tx, row)| (tx.as_str(), row))
            .collect();
        for (tx, row) in &self.pending {
            rows.insert(tx.as_str(), row);
        }
        rows
    }

    /// The transaction other than `tx` that holds the lock on `name`.
    pub(crate) fn lock_holder(&self, name: &str, tx: &str) -> Option<String> {
        self.visible()
            .into_iter()
            .find(|(id, row)| *id != tx && row.name == name && row.state == RowState::Prepared)
            .map(|(id, _)| id.to_string())
    }

    /// The prepared (undecided) transactions, oldest first, as recovery
    /// lists them.
    pub(crate) fn prepared(&self) -> Vec<(String, Row)> {
        let mut rows: Vec<(String, Row)> = self
            .visible()
            .into_iter()
            .filter(|(_, row)| row.state == RowState::Prepared)
            .map(|(tx, row)| (tx.to_string(), row.clone()))
            .collect();
        rows.sort_by(|a, b| (a.1.prepared_at, &a.0).cmp(&(b.1.prepared_at, &b.0)));
        rows
    }

    /// The same, as the pure recovery helper takes them.
    pub(crate) fn prepared_ages(&self) -> Vec<Prepared> {
        self.prepared()
            .into_iter()
            .map(|(tx, row)| Prepared {
                tx,
                prepared_at_ms: row.prepared_at,
            })
            .collect()
    }

    /// Durable rows still prepared: locks that nothing released.
    pub(crate) fn durable_prepared(&self) -> Vec<&str> {
        let rows = self.durable.iter();
        let prepared = rows.filter(|(_, row)| row.state == RowState::Prepared);
        prepared.map(|(tx, _)| tx.as_str()).collect()
    }

    /// The transactions of the writes awaiting their fsync.
    pub(crate) fn pending_txs(&self) -> Vec<String> {
        self.pending.iter().map(|(tx, _)| tx.clone()).collect()
    }

    /// Whether a write awaits its fsync.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes a row; durable once [`ParticipantTable::sync_one`] reaches it.
    fn write(&mut self, tx: &str, row: Row) {
        self.pending.push_back((tx.to_string(), row));
    }

    /// Completes the fsync of the oldest pending write; returns its
    /// transaction.
    pub(crate) fn sync_one(&mut self) -> Option<String> {
        let (tx, row) = self.pending.pop_front()?;
        self.durable.insert(tx.clone(), row);
        Some(tx)
    }

    /// Applying the logged decision of `tx` releases its lock: the row, if
    /// still prepared, takes the decision (in the vault, in the same SQLite
    /// transaction as the apply, so it never outlives the decision).
    pub(crate) fn settle(&mut self, tx: &str, decision: Decision) {
        let state = match decision {
            Decision::Commit => RowState::Committed,
            Decision::Abort => RowState::Aborted,
        };
        let durable = self.durable.get_mut(tx).into_iter();
        let pending = self.pending.iter_mut().filter(|(id, _)| id == tx);
        for row in durable.chain(pending.map(|(_, row)| row)) {
            if row.state == RowState::Prepared {
                row.state = state;
            }
        }
    }

    /// A prune applied: the settled row of `tx` goes with its decision (in
    /// the vault, in the same SQLite transaction); a row still prepared
    /// stays.
    pub(crate) fn forget_settled(&mut self, tx: &str) {
        if self
            .durable
            .get(tx)
            .is_some_and(|row| row.state != RowState::Prepared)
        {
            self.durable.remove(tx);
        }
        self.pending
            .retain(|(id, row)| id != tx || row.state == RowState::Prepared);
    }

    /// Settles every row whose transaction `machine` has decided: after a
    /// restart or a snapshot install, the decisions arrive as state rather
    /// than as applied entries. Settled rows whose decision the restored
    /// state no longer holds (pruned) are forgotten, as the vault's restore
    /// does.
    pub(crate) fn settle_decided(&mut self, machine: &VaultModel) {
        let forgotten: Vec<String> = self
            .visible()
            .into_iter()
            .filter(|(tx, row)| row.state != RowState::Prepared && machine.decision(tx).is_none())
            .map(|(tx, _)| tx.to_string())
            .collect();
        for tx in forgotten {
            self.forget_settled(&tx);
        }
        let decided: Vec<(String, Decision)> = self
            .visible()
            .into_iter()
            .filter(|(_, row)| row.state == RowState::Prepared)
            .filter_map(|(tx, _)| machine.decision(tx).map(|d| (tx.to_string(), d)))
            .collect();
        for (tx, decision) in decided {
            self.settle(&tx, decision);
        }
    }

    /// A crash: unsynced writes are gone.
    pub(crate) fn crash(&mut self) {
        self.pending.clear();
    }
}

/// The simulated store as the 2PC resource manager: the same checks as the
/// vault's `VaultStateMachine::prepare`, against this node's applied state
/// and participant table.
pub(crate) struct SimResource<'a> {
    /// The participant table (written on prepare).
    pub(crate) table: &'a mut ParticipantTable,
    /// The node's applied vault state.
    pub(crate) machine: &'a VaultModel,
    /// The coordinator's read index: a vote read below the pruning horizon
    /// is refused, as its decision may already be pruned here.
    pub(crate) read_index: LogIndex,
}

impl ResourceManager for SimResource<'_> {
    type Resource = SimSecret;
    type Error = Infallible;

    fn prepare(
        &mut self,
        request: &VoteRequest<SimSecret>,
        now_ms: u64,
    ) -> Result<PrepareOutcome, Infallible> {
        let (tx, secret) = (&request.tx, &request.resource);
        let horizon = self.machine.pruned_through();
        if self.read_index < horizon {
            return Ok(refused(format!(
                "the vote read the log at index {}, below the pruning horizon {horizon}",
                self.read_index
            )));
        }
        if self.machine.decision(tx).is_some() {
            return Ok(refused(format!("transaction {tx} is already decided")));
        }
        match self.table.row(tx).map(|row| row.state) {
            // A retried request: the promise stands.
            Some(RowState::Prepared) => return Ok(PrepareOutcome::Prepared),
            // Settled here while the restored state machine has not caught
            // up with the decision yet: decided all the same.
            Some(_) => return Ok(refused(format!("transaction {tx} is already decided"))),
            None => {}
        }
        if let Some(holder) = self.table.lock_holder(&secret.name, tx) {
            let name = &secret.name;
            return Ok(refused(format!("secret {name} is locked by {holder}")));
        }
        Ok(match self.machine.version(&secret.name) {
            Some(version) if version == secret.version => {
                let row = Row {
                    name: secret.name.clone(),
                    version,
                    state: RowState::Prepared,
                    prepared_at: now_ms,
                };
                self.table.write(tx, row);
                PrepareOutcome::Prepared
            }
            Some(version) => refused(format!(
                "secret {} is at version {version}, not {}",
                secret.name, secret.version
            )),
            None => refused(format!("this node holds no secret {}", secret.name)),
        })
    }
}

impl LockTable for SimResource<'_> {
    fn locked_by(
        &mut self,
        request: &VoteRequest<SimSecret>,
    ) -> Result<Option<String>, Infallible> {
        Ok(self.table.lock_holder(&request.resource.name, &request.tx))
    }
}

fn refused(reason: String) -> PrepareOutcome {
    PrepareOutcome::Refused(reason)
}

/// A vote request's driver waiting until the node applied `index` (the
/// coordinator's read index, or one entry past what it had when a younger
/// holder's lock made it wait) or `deadline` passed.
#[derive(Clone, Debug)]
pub(crate) struct WaitingVote {
    /// The vote's driver.
    pub(crate) driver: VoteDriver<SimSecret>,
    /// Wake once the node applied through this index.
    pub(crate) index: u64,
    /// Wake at this step anyway.
    pub(crate) deadline: u64,
}

/// A Decide waiting until the node applied the decision (or gave up).
#[derive(Clone, Debug)]
pub(crate) struct WaitingDecide {
    /// The coordinator.
    pub(crate) from: NodeId,
    /// The Decide's driver.
    pub(crate) driver: AckDriver,
    /// When to ask the driver again: once applied through the index, or at
    /// the step; `None` at the first serving.
    pub(crate) wake: Option<(u64, u64)>,
}

/// One node's participant: durable table and configuration, plus the
/// requests it holds in memory.
#[derive(Clone, Debug, Default)]
pub(crate) struct ParticipantNode {
    /// On the simulated disk: survives crashes (but not a wiped disk).
    pub(crate) table: ParticipantTable,
    /// The configured vote policy.
    pub(crate) policy: VotePolicy,
    /// Vote requests waiting for the log to be applied far enough.
    pub(crate) waiting_votes: Vec<WaitingVote>,
    /// Commit votes waiting for their prepare's fsync.
    pub(crate) held_votes: Vec<VoteDriver<SimSecret>>,
    /// Decide messages waiting for the decision to be applied.
    pub(crate) waiting_decides: Vec<WaitingDecide>,
    /// The step of the next recovery pass.
    pub(crate) next_recovery: u64,
}

impl ParticipantNode {
    /// A crash: memory and unsynced writes are gone; the table's durable
    /// rows and the configuration remain.
    pub(crate) fn crash(&mut self) {
        self.table.crash();
        self.waiting_votes.clear();
        self.held_votes.clear();
        self.waiting_decides.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::SimMachine;
    use crate::twopc::machine::VaultCommand;
    use consensus::twopc::participant::vote;
    use consensus::twopc::Vote;

    fn request(tx: &str, version: u64) -> VoteRequest<SimSecret> {
        VoteRequest {
            tx: tx.into(),
            resource: SimSecret {
                name: "k".into(),
                version,
            },
        }
    }

    fn machine_with_k() -> VaultModel {
        let mut machine = VaultModel::default();
        let add = VaultCommand::Add {
            client: 1,
            sequence: 1,
            name: "k".into(),
            update: false,
        };
        machine.apply(1, &add);
        machine
    }

    #[test]
    fn prepare_locks_and_a_crash_before_the_fsync_forgets_it() {
        let machine = machine_with_k();
        let mut table = ParticipantTable::default();
        let mut resource = SimResource {
            table: &mut table,
            machine: &machine,
            read_index: 0,
        };
        let policy = VotePolicy::Commit;
        assert_eq!(
            vote(policy, &mut resource, &request("t1", 1), 5),
            Ok(Vote::Commit)
        );
        // Retried: the same promise. Another transaction: locked out.
        assert_eq!(
            vote(policy, &mut resource, &request("t1", 1), 6),
            Ok(Vote::Commit)
        );
        let locked = vote(policy, &mut resource, &request("t2", 1), 7);
        assert!(matches!(locked, Ok(Vote::Abort(reason)) if reason.contains("locked by t1")));
        let stale = vote(policy, &mut resource, &request("t3", 9), 7);
        assert!(matches!(stale, Ok(Vote::Abort(_))));
        assert!(!table.is_durable("t1"));
        table.crash();
        assert_eq!(table.row("t1"), None);
    }

    #[test]
    fn settling_releases_the_lock_and_decided_transactions_are_refused() {
        let mut machine = machine_with_k();
        let mut table = ParticipantTable::default();
        let mut resource = SimResource {
            table: &mut table,
            machine: &machine,
            read_index: 0,
        };
        assert_eq!(
            resource.prepare(&request("t1", 1), 5),
            Ok(PrepareOutcome::Prepared)
        );
        assert_eq!(table.sync_one().as_deref(), Some("t1"));
        assert_eq!(table.durable_prepared(), vec!["t1"]);
        let decide = VaultCommand::Decide {
            tx: "t1".into(),
            name: "k".into(),
            version: 1,
            decision: Decision::Abort,
            participants: Vec::new(),
        };
        machine.apply(2, &decide);
        table.settle_decided(&machine);
        assert!(table.durable_prepared().is_empty());
        assert_eq!(table.lock_holder("k", "t2"), None);
        let mut resource = SimResource {
            table: &mut table,
            machine: &machine,
            read_index: 0,
        };
        let again = resource.prepare(&request("t1", 1), 9);
        assert!(matches!(again, Ok(PrepareOutcome::Refused(_))));
    }
}
