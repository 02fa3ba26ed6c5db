//! The vault's replicated state: a SQLite database driven by the Raft log.
//!
//! [`VaultStateMachine`] implements [`consensus::state_machine::StateMachine`]:
//! the runtime hands it committed [`crate::protocol::VaultCommand`] bytes in
//! log order, and it answers each with an encoded [`crate::protocol::Reply`].
//! `docs/vault.md` lists the schema and the apply rules.

mod apply;
mod decisions;
mod pruning;
mod query;
mod schema;
mod snapshot;
mod twopc;

pub use decisions::AppliedDecisions;
pub use schema::DEFAULT_MAX_VERSIONS;
pub use snapshot::{summarize as summarize_snapshot, SnapshotError, SnapshotSummary};
pub use twopc::{ParticipantState, PrepareBatch, PrepareOutcome, PreparedTransaction};

use consensus::raft::{LogIndex, Membership, NodeId};
use consensus::state_machine::{CommittedCommand, SnapshotJob, StateMachine};
use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeSet;
use std::path::Path;

/// What can go wrong in the store. All of these are failures of the node
/// (disk, damaged files), never outcomes of a request: those travel inside
/// the reply bytes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (I/O error, full disk, damaged database).
    #[error("vault database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database cannot be used as a vault (no WAL, other schema version).
    #[error("cannot open the vault database: {0}")]
    Schema(String),
    /// A snapshot was refused.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Two views of the database disagree where they cannot (a bug).
    #[error("vault database inconsistency: {0}")]
    Inconsistent(String),
}

impl From<schema::SchemaError> for StoreError {
    fn from(error: schema::SchemaError) -> Self {
        match error {
            schema::SchemaError::Sqlite(error) => StoreError::Sqlite(error),
            other => StoreError::Schema(other.to_string()),
        }
    }
}

/// The vault plug-in: secrets, grants, public keys, client sessions and 2PC
/// state in one SQLite file in WAL mode.
///
/// Promises: each `apply` batch is one SQLite transaction that also stores
/// the new applied index, so after a crash the database holds a prefix of
/// the applied entries and entries at or below [`applied_index`] are skipped
/// when handed again. Apply reads no clock and no node-local state, so every
/// replica computes the same tables and the same replies.
///
/// [`applied_index`]: StateMachine::applied_index
pub struct VaultStateMachine {
    connection: Connection,
    applied_index: LogIndex,
    /// The node whose participant outcomes apply logs (SPEC §7), if any.
    participant: Option<String>,
    /// Where applied decisions are published for the participant, if any.
    published: Option<AppliedDecisions>,
    /// Every commit of this connection is fsynced (`synchronous=FULL`), as
    /// on the participant's connection; otherwise only prepares are.
    full_sync: bool,
    /// The members of the configuration in force at `applied_index`, once
    /// the runtime said (`membership_changed`): 2PC commits are checked
    /// against it.
    members: Option<BTreeSet<NodeId>>,
    /// How many versions of each secret are kept, the current one included.
    max_versions: u32,
}

impl VaultStateMachine {
    /// Opens (or creates) the vault database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let connection = Connection::open(path)?;
        // Every statement of apply and query is prepared once and reused:
        // parsing SQL showed up in profiles of the leader under load.
        connection.set_prepared_statement_cache_capacity(64);
        schema::prepare(&connection)?;
        let applied_index = schema::applied_index(&connection)?;
        Ok(VaultStateMachine {
            connection,
            applied_index,
            participant: None,
            published: None,
            full_sync: false,
            members: None,
            max_versions: schema::DEFAULT_MAX_VERSIONS,
        })
    }

    /// Keeps the last `max_versions` versions of each secret (at least 1:
    /// the current one). Every replica must be given the same value, as
    /// `cluster init` does through `[vault] max_versions`, or their
    /// histories differ (the current versions never do).
    pub fn keep_versions(&mut self, max_versions: u32) {
        self.max_versions = max_versions.max(1);
    }

    /// Makes this store log, as node `node`'s 2PC participant, each
    /// decision it applies: `Phase Participant-Decision of Node n commits
    /// tx T (GLOBAL_COMMIT)` (or `aborts ... (GLOBAL_ABORT)`), once the
    /// batch holding it is durable. Logging here rather than on `Decide`
    /// gives the line of a participant that learns the outcome from the
    /// log (it was down, or restarted while prepared) too, and exactly once
    /// per node: a decision settled by installing a snapshot is logged if
    /// this node had prepared it.
    pub fn log_decisions_as(&mut self, node: &str) {
        self.participant = Some(node.to_string());
    }

    /// Makes this store publish each decision it applies (or settles by
    /// installing a snapshot) to `decisions`, once the batch is committed.
    pub fn publish_decisions_to(&mut self, decisions: AppliedDecisions) {
        self.published = Some(decisions);
    }

    /// Logs and publishes the decisions of a batch that just committed.
    fn announce_decisions(&self, decided: &[apply::FirstDecision]) {
        if let Some(published) = &self.published {
            published.publish(decided);
        }
        let Some(node) = &self.participant else {
            return;
        };
        for apply::FirstDecision { tx, decision } in decided {
            let (verb, global) = match decision {
                crate::protocol::Decision::Commit => ("commits", "GLOBAL_COMMIT"),
                crate::protocol::Decision::Abort => ("aborts", "GLOBAL_ABORT"),
            };
            tracing::info!("Phase Participant-Decision of Node {node} {verb} tx {tx} ({global})");
        }
    }
}

impl std::fmt::Debug for VaultStateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultStateMachine")
            .field("applied_index", &self.applied_index)
            .finish_non_exhaustive()
    }
}

impl StateMachine for VaultStateMachine {
    type Error = StoreError;

    /// SQLITE_FULL: the transaction was rolled back, so the runtime may
    /// retry the batch once space is back.
    fn is_disk_full(error: &StoreError) -> bool {
        matches!(
            error,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _))
                if failure.code == rusqlite::ErrorCode::DiskFull
        )
    }

    fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    fn apply(&mut self, commands: &[CommittedCommand<'_>]) -> Result<Vec<Vec<u8>>, StoreError> {
        let transaction = write_transaction(&mut self.connection)?;
        let mut applied = self.applied_index;
        let mut responses = Vec::with_capacity(commands.len());
        let mut decided = Vec::new();
        for command in commands {
            if command.index <= applied {
                responses.push(Vec::new());
                continue;
            }
            bus::sessions::sweep(&transaction, applied, command.index - 1)?;
            responses.push(apply::apply_command(
                &transaction,
                command.index,
                command.command,
                self.members.as_ref(),
                self.max_versions,
                &mut decided,
            )?);
            applied = command.index;
        }
        if applied != self.applied_index {
            bus::sessions::sweep(&transaction, self.applied_index, applied)?;
            schema::set_applied_index(&transaction, applied)?;
        }
        transaction.commit()?;
        self.applied_index = applied;
        self.announce_decisions(&decided);
        Ok(responses)
    }

    fn membership_changed(&mut self, _index: LogIndex, membership: &Membership) {
        self.members = Some(
            membership
                .voters
                .iter()
                .chain(&membership.learners)
                .copied()
                .collect(),
        );
    }

    fn skip_to(&mut self, index: LogIndex) -> Result<(), StoreError> {
        if index > self.applied_index {
            let transaction = write_transaction(&mut self.connection)?;
            bus::sessions::sweep(&transaction, self.applied_index, index)?;
            schema::set_applied_index(&transaction, index)?;
            transaction.commit()?;
            self.applied_index = index;
        }
        Ok(())
    }

    fn query(&self, query: &[u8]) -> Result<Vec<u8>, StoreError> {
        Ok(crate::protocol::encode(&query::run(
            &self.connection,
            query,
        )?))
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, StoreError> {
        // A transaction gives one consistent view even if a future version
        // reads from several connections.
        let transaction = self.connection.transaction()?;
        let bytes = snapshot::take(&transaction, self.applied_index)?;
        transaction.commit()?;
        Ok(bytes)
    }

    /// Opens a second, read-only connection and starts a read transaction
    /// on it: in WAL mode that transaction keeps seeing the database as of
    /// now (the applied index of the last committed batch) while apply
    /// commits further batches on the main connection. An in-memory
    /// database has no second connection and snapshots at once.
    fn begin_snapshot(&mut self) -> Result<SnapshotJob<StoreError>, StoreError> {
        let path = match self.connection.path() {
            Some(path) if !path.is_empty() => path.to_string(),
            _ => {
                let data = self.snapshot()?;
                return Ok(Box::new(move |sink| {
                    // The sink keeps its own errors (see `SnapshotSink`).
                    let _ = std::io::Write::write_all(sink, &data);
                    Ok(())
                }));
            }
        };
        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.execute_batch("BEGIN")?;
        // The read transaction starts at its first read: from here on the
        // reader's view is fixed.
        let index = schema::applied_index(&reader)?;
        if index != self.applied_index {
            return Err(StoreError::Inconsistent(format!(
                "a snapshot reader saw applied index {index}, the store is at {}",
                self.applied_index
            )));
        }
        Ok(Box::new(move |sink| {
            snapshot::take_into(&reader, index, sink)?;
            reader.execute_batch("COMMIT")?;
            Ok(())
        }))
    }

    fn restore(&mut self, index: LogIndex, data: &[u8]) -> Result<(), StoreError> {
        let transaction = write_transaction(&mut self.connection)?;
        let settled = snapshot::restore(&transaction, index, data)?;
        transaction.commit()?;
        self.applied_index = index;
        self.announce_decisions(&settled);
        Ok(())
    }
}

/// Begins a transaction that holds SQLite's write lock from its first
/// statement (`BEGIN IMMEDIATE`).
///
/// Apply reads before it writes (sessions, versions, decisions), and the 2PC
/// participant commits prepares on its own connection. In a deferred
/// transaction, a prepare committed between the batch's first read and its
/// first write makes that write fail with `SQLITE_BUSY_SNAPSHOT`, which no
/// busy timeout retries: the node would stop applying for good. Taking the
/// lock up front makes a concurrent prepare wait (busy timeout) instead.
pub(crate) fn write_transaction(
    connection: &mut Connection,
) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

#[cfg(test)]
mod delete_session_tests;
#[cfg(test)]
mod identity_tests;
#[cfg(test)]
mod pruning_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod twopc_tests;
#[cfg(test)]
mod versions_tests;
