//! Pruning of two-phase-commit state (SPEC §6): `twopc_decisions` and the
//! node-local `twopc_participant` rows would otherwise grow by a row per
//! delete forever.
//!
//! **The rule.** A decision recorded at log index `i` is needed only by a
//! member that has not applied entry `i` yet (its prepared row is settled
//! when it applies the entry), and, to refuse or answer a late vote or a
//! recovery question, by whoever asks about the transaction afterwards.
//! So the leader proposes [`crate::protocol::Operation::Prune`] with
//! `through` = the lowest match index over every member of the current
//! configuration (voters and learners), as it measured it one pruning
//! period earlier: every member then holds entry `i <= through` in its own
//! log and applies it from there (no member needs a snapshot to learn it),
//! and the decision has been in force for at least a period. Applying the
//! entry deletes, on every replica alike, the decisions recorded at or
//! below `through` and this node's settled participant rows of those
//! transactions, and records `through` as the pruning horizon. A removed
//! member no longer counts; a member that is down holds the horizon back
//! until it returns or is removed.
//!
//! **What the horizon guards.** A decision that is gone can no longer
//! refuse a late vote (`prepare` checks that the log has not decided the
//! transaction) or answer a recovery question. So a vote whose
//! coordinator's read index is below this node's horizon is refused (its
//! decision, if any, may be gone), and the leader does not propose a
//! recovery abort for a participant that has not applied through the
//! leader's horizon (it will find its decision in its own log first). A
//! snapshot restore raises the horizon to the snapshot's index, since the
//! snapshot holds only unpruned decisions.
//!
//! The horizon is kept in `meta`, which is not part of snapshots: it is
//! node-local advice for these two refusals, and a higher value only makes
//! them more cautious.

use super::schema::{from_sql, to_sql};
use rusqlite::{Connection, OptionalExtension, Transaction};

/// Reads this node's pruning horizon (0 if nothing was ever pruned).
pub(crate) fn pruned_through(connection: &Connection) -> rusqlite::Result<u64> {
    let value: Option<i64> = connection
        .prepare_cached("SELECT value FROM meta WHERE key = 'twopc_pruned_through'")?
        .query_row([], |row| row.get(0))
        .optional()?;
    Ok(value.map_or(0, from_sql))
}

/// Raises the pruning horizon to `through` (never lowers it).
pub(crate) fn raise_pruned_through(
    transaction: &Transaction<'_>,
    through: u64,
) -> rusqlite::Result<()> {
    if pruned_through(transaction)? >= through {
        return Ok(());
    }
    transaction
        .prepare_cached(
            "INSERT INTO meta (key, value) VALUES ('twopc_pruned_through', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?
        .execute([to_sql(through)])?;
    Ok(())
}

/// Applies a prune entry: forgets the decisions recorded at or below
/// `through` and this node's settled rows of those transactions. Returns
/// how many decisions went.
pub(crate) fn prune(transaction: &Transaction<'_>, through: u64) -> rusqlite::Result<u64> {
    transaction
        .prepare_cached(
            "DELETE FROM twopc_participant WHERE state <> 'prepared' AND tx IN
                 (SELECT tx FROM twopc_decisions WHERE log_index <= ?1)",
        )?
        .execute([to_sql(through)])?;
    let decisions = transaction
        .prepare_cached("DELETE FROM twopc_decisions WHERE log_index <= ?1")?
        .execute([to_sql(through)])?;
    raise_pruned_through(transaction, through)?;
    Ok(decisions as u64)
}

/// After a snapshot restore: the snapshot holds only unpruned decisions,
/// so settled rows whose decision it lacks are forgotten, and the horizon
/// is raised to the snapshot's index.
pub(crate) fn after_restore(transaction: &Transaction<'_>, index: u64) -> rusqlite::Result<()> {
    transaction.execute(
        "DELETE FROM twopc_participant WHERE state <> 'prepared' AND tx NOT IN
             (SELECT tx FROM twopc_decisions)",
        [],
    )?;
    raise_pruned_through(transaction, index)
}

/// The lowest log index at which a decision is recorded, if any.
pub(crate) fn oldest_decision(connection: &Connection) -> rusqlite::Result<Option<u64>> {
    let value: Option<i64> = connection
        .prepare_cached("SELECT MIN(log_index) FROM twopc_decisions")?
        .query_row([], |row| row.get(0))?;
    Ok(value.map(from_sql))
}
