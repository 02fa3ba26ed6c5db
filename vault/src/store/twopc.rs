//! This node's side of a two-phase-commit delete (SPEC §6): durable prepared
//! transactions and the locks they hold.
//!
//! Unlike the rest of the store this state is local: each node votes for
//! itself, so the `twopc_participant` table is written outside the Raft log
//! and kept out of snapshots. The decision, on the other hand, arrives
//! through the log ([`crate::protocol::Operation::Decide`]); applying it
//! settles the local row in the same transaction, so a lock never outlives
//! the decision, even across a crash.

use super::schema::{from_sql, to_sql};
use super::{StoreError, VaultStateMachine};
use crate::protocol::{Decision, SecretVersion};
use consensus::twopc::VoteRequest;
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

/// The answer to [`VaultStateMachine::prepare`]: the protocol's own type.
pub use consensus::twopc::PrepareOutcome;

/// Where this node stands in one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParticipantState {
    /// Voted commit, holding the lock, waiting for the decision.
    Prepared,
    /// The log decided commit.
    Committed,
    /// The log decided abort.
    Aborted,
}

/// A transaction this node prepared and that has no decision yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedTransaction {
    /// The transaction id.
    pub tx: String,
    /// Owner of the locked secret.
    pub owner: String,
    /// Name of the locked secret.
    pub name: String,
    /// The version voted on.
    pub version: u64,
    /// When this node prepared, milliseconds since the Unix epoch (its own
    /// clock: this is local state, used for the decision timeout).
    pub created_ms: u64,
}

const PREPARED: &str = "prepared";

impl VaultStateMachine {
    /// Prepares `tx` to delete `owner`'s secret `name` at `version`: checks
    /// that this node holds it at that version, that no other transaction
    /// locks it and that the log has not already decided `tx`, then records
    /// the transaction and its lock with a full fsync before returning.
    /// Preparing the same `tx` again is answered `Prepared` again.
    pub fn prepare(
        &mut self,
        tx: &str,
        owner: &str,
        name: &str,
        version: u64,
        now_ms: u64,
    ) -> Result<PrepareOutcome, StoreError> {
        if self.full_sync {
            return self.prepare_durably(tx, owner, name, version, now_ms);
        }
        self.connection.pragma_update(None, "synchronous", "FULL")?;
        let outcome = self.prepare_durably(tx, owner, name, version, now_ms);
        self.connection
            .pragma_update(None, "synchronous", "NORMAL")?;
        outcome
    }

    fn prepare_durably(
        &mut self,
        tx: &str,
        owner: &str,
        name: &str,
        version: u64,
        now_ms: u64,
    ) -> Result<PrepareOutcome, StoreError> {
        let mut batch = self.batch()?;
        let outcome = batch.prepare(tx, owner, name, version, now_ms)?;
        batch.commit()?;
        Ok(outcome)
    }

    /// Begins a batch of prepares that commit together with one fsync: the
    /// participant's group commit. The batch holds SQLite's write lock
    /// until it commits or is dropped (which rolls it back).
    ///
    /// Meant for the connection of [`VaultStateMachine::open_participant`],
    /// which fsyncs every commit. Any other connection is switched to
    /// `synchronous=FULL` for good here, so a batch is never committed
    /// without its fsync.
    pub fn begin_prepares(&mut self) -> Result<PrepareBatch<'_>, StoreError> {
        if !self.full_sync {
            self.connection.pragma_update(None, "synchronous", "FULL")?;
            self.full_sync = true;
        }
        self.batch()
    }

    fn batch(&mut self) -> Result<PrepareBatch<'_>, StoreError> {
        Ok(PrepareBatch {
            transaction: self
                .connection
                .transaction_with_behavior(TransactionBehavior::Immediate)?,
        })
    }

    /// This node's state in `tx`, or `None` if it never prepared it.
    pub fn participant_state(&self, tx: &str) -> Result<Option<ParticipantState>, StoreError> {
        let state: Option<String> = self
            .connection
            .query_row(
                "SELECT state FROM twopc_participant WHERE tx = ?1",
                [tx],
                |row| row.get(0),
            )
            .optional()?;
        Ok(state.map(|state| match state.as_str() {
            PREPARED => ParticipantState::Prepared,
            "committed" => ParticipantState::Committed,
            _ => ParticipantState::Aborted,
        }))
    }

    /// The transactions this node prepared that the log has not decided yet,
    /// oldest first: what recovery must ask the leader about.
    pub fn prepared_transactions(&self) -> Result<Vec<PreparedTransaction>, StoreError> {
        let mut statement = self.connection.prepare(
            "SELECT tx, owner, name, version, created FROM twopc_participant
             WHERE state = ?1 ORDER BY created, tx",
        )?;
        let rows = statement.query_map([PREPARED], |row| {
            Ok(PreparedTransaction {
                tx: row.get(0)?,
                owner: row.get(1)?,
                name: row.get(2)?,
                version: from_sql(row.get(3)?),
                created_ms: from_sql(row.get(4)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The transaction that locks `owner`'s secret `name` on this node, if
    /// any. A leader can use it to refuse updates of a secret being deleted.
    pub fn lock_holder(&self, owner: &str, name: &str) -> Result<Option<String>, StoreError> {
        Ok(lock_holder(&self.connection, owner, name)?)
    }
}

fn lock_holder(
    connection: &rusqlite::Connection,
    owner: &str,
    name: &str,
) -> rusqlite::Result<Option<String>> {
    connection
        .prepare_cached(
            "SELECT tx FROM twopc_participant WHERE owner = ?1 AND name = ?2 AND state = ?3",
        )?
        .query_row(params![owner, name, PREPARED], |row| row.get(0))
        .optional()
}

/// Why this node must vote abort, if it must.
fn refusal(
    transaction: &Transaction<'_>,
    tx: &str,
    owner: &str,
    name: &str,
    version: u64,
) -> rusqlite::Result<Option<String>> {
    let decided: bool = transaction
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM twopc_decisions WHERE tx = ?1)")?
        .query_row([tx], |row| row.get(0))?;
    if decided {
        return Ok(Some(format!("transaction {tx} is already decided")));
    }
    match lock_holder(transaction, owner, name)? {
        Some(holder) if holder == tx => return Ok(None),
        Some(holder) => {
            return Ok(Some(format!(
                "secret {name:?} is locked by transaction {holder}"
            )))
        }
        None => {}
    }
    let current: Option<i64> = transaction
        .prepare_cached("SELECT version FROM secrets WHERE owner = ?1 AND name = ?2")?
        .query_row(params![owner, name], |row| row.get(0))
        .optional()?;
    Ok(match current.map(from_sql) {
        Some(current) if current == version => None,
        Some(current) => Some(format!(
            "secret {name:?} is at version {current}, not {version}"
        )),
        None => Some(format!("this node holds no secret {name:?}")),
    })
}

/// Records the log's decision on this node's row for `tx`, releasing its
/// lock, and says whether this node had `tx` prepared. Called while
/// applying the decision and while restoring a snapshot.
pub(crate) fn settle(
    transaction: &Transaction<'_>,
    tx: &str,
    decision: Decision,
) -> rusqlite::Result<bool> {
    let state = match decision {
        Decision::Commit => "committed",
        Decision::Abort => "aborted",
    };
    let changed = transaction
        .prepare_cached("UPDATE twopc_participant SET state = ?2 WHERE tx = ?1 AND state = ?3")?
        .execute(params![tx, state, PREPARED])?;
    Ok(changed > 0)
}

impl VaultStateMachine {
    /// Opens a second connection to the database at `path` (already created
    /// by [`VaultStateMachine::open`]) for this node's 2PC participant: it
    /// prepares, reads locks and decisions while the Raft runtime owns the
    /// applying connection. SQLite serialises the two writers (WAL mode,
    /// IMMEDIATE transactions); the busy timeout makes a prepare wait for an
    /// apply batch instead of failing.
    ///
    /// The connection commits with `synchronous=FULL` throughout: all it
    /// writes are prepares, which must be on disk before the vote leaves,
    /// and setting the pragma once saves two statements per prepare.
    pub fn open_participant(path: &std::path::Path) -> Result<Self, StoreError> {
        let mut machine = VaultStateMachine::open(path)?;
        machine
            .connection
            .busy_timeout(std::time::Duration::from_secs(10))?;
        machine
            .connection
            .pragma_update(None, "synchronous", "FULL")?;
        machine.full_sync = true;
        Ok(machine)
    }

    /// This node's pruning horizon: decisions recorded at or below this log
    /// index may be gone (see `store/pruning.rs`).
    pub fn pruned_through(&self) -> Result<u64, StoreError> {
        Ok(super::pruning::pruned_through(&self.connection)?)
    }

    /// The lowest log index at which a decision is still recorded: what a
    /// leader's prune would remove first.
    pub fn oldest_decision(&self) -> Result<Option<u64>, StoreError> {
        Ok(super::pruning::oldest_decision(&self.connection)?)
    }

    /// The decision this node has applied for `tx`, if any (the first one
    /// in the log).
    pub fn decision(&self, tx: &str) -> Result<Option<Decision>, StoreError> {
        let value: Option<i64> = self
            .connection
            .prepare_cached("SELECT decision FROM twopc_decisions WHERE tx = ?1")?
            .query_row([tx], |row| row.get(0))
            .optional()?;
        Ok(value.map(super::apply::decision_from_sql))
    }
}

/// Prepares in one SQLite transaction (see
/// [`VaultStateMachine::begin_prepares`]). Each prepare sees the locks
/// taken by the ones before it in the batch. Nothing is durable, and no
/// vote may be sent, until [`PrepareBatch::commit`] returns.
pub struct PrepareBatch<'c> {
    transaction: Transaction<'c>,
}

impl PrepareBatch<'_> {
    /// [`VaultStateMachine::prepare`]'s checks and lock, in this batch.
    pub fn prepare(
        &mut self,
        tx: &str,
        owner: &str,
        name: &str,
        version: u64,
        now_ms: u64,
    ) -> Result<PrepareOutcome, StoreError> {
        if let Some(refusal) = refusal(&self.transaction, tx, owner, name, version)? {
            return Ok(PrepareOutcome::Refused(refusal));
        }
        self.transaction
            .prepare_cached(
                "INSERT INTO twopc_participant (tx, owner, name, version, state, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (tx) DO NOTHING",
            )?
            .execute(params![
                tx,
                owner,
                name,
                to_sql(version),
                PREPARED,
                to_sql(now_ms)
            ])?;
        Ok(PrepareOutcome::Prepared)
    }

    /// This node's pruning horizon (see `store/pruning.rs`): a vote whose
    /// coordinator read the log below it must be refused, because the
    /// transaction's decision may already be pruned here.
    pub fn pruned_through(&self) -> Result<u64, StoreError> {
        Ok(super::pruning::pruned_through(&self.transaction)?)
    }

    /// Makes every prepare of the batch durable at once.
    pub fn commit(self) -> Result<(), StoreError> {
        Ok(self.transaction.commit()?)
    }
}

/// The batch as the 2PC resource manager: a prepare is the check-and-lock
/// of [`PrepareBatch::prepare`], durable once the batch commits.
impl consensus::twopc::ResourceManager for PrepareBatch<'_> {
    type Resource = SecretVersion;
    type Error = StoreError;

    fn prepare(
        &mut self,
        request: &VoteRequest<SecretVersion>,
        now_ms: u64,
    ) -> Result<PrepareOutcome, StoreError> {
        let secret = &request.resource;
        PrepareBatch::prepare(
            self,
            &request.tx,
            &secret.owner,
            &secret.name,
            secret.version,
            now_ms,
        )
    }
}

/// The batch's lock table, for wait-die: it sees the locks taken earlier
/// in the batch.
impl consensus::twopc::LockTable for PrepareBatch<'_> {
    fn locked_by(
        &mut self,
        request: &VoteRequest<SecretVersion>,
    ) -> Result<Option<String>, StoreError> {
        let secret = &request.resource;
        Ok(lock_holder(&self.transaction, &secret.owner, &secret.name)?)
    }
}
