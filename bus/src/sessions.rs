//! Client sessions: exactly-once writes for any application whose state
//! machine keeps its state in SQLite (SPEC §3).
//!
//! A client process draws a random [`ClientSession::client_id`] once and
//! numbers its writes 1, 2, 3, …; a retry reuses the number. The state
//! machine keeps, per owner (the client's identity) and client id, the last
//! number it applied and the answer it gave, **in the same SQLite
//! transaction as the write itself**, so that a crash can never keep one
//! without the other. Before applying a write it asks [`replay`]:
//!
//! - the same number again: the stored answer, nothing applied again;
//! - an older number: the write was superseded by a later one of the same
//!   client, and must not run now (the client has moved on);
//! - a newer number: apply, then [`record`] the answer.
//!
//! Sessions are keyed by owner and client id, so one identity can neither
//! collide with nor read the stored answers of another. Idle sessions are
//! forgotten by [`sweep`] at fixed log indexes, so replicas that batch
//! their applies differently still agree on which sessions exist.
//!
//! The table is the application's: it runs [`SCHEMA`] when it creates its
//! database and carries [`SessionRow`]s in its snapshots.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// Identifies one client write for exactly-once execution: a client
/// process draws a random `client_id` once and numbers its writes 1, 2,
/// 3, … A retry reuses the same `seq`, and the state machine answers it
/// with the stored response instead of applying it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSession {
    /// Random per client process.
    pub client_id: u64,
    /// Strictly increasing per write request of that process, from 1.
    pub seq: u64,
}

impl ClientSession {
    /// Starts a session for this client process: a random id, sequence 0
    /// (so the first [`ClientSession::next_request`] is 1).
    pub fn start() -> ClientSession {
        ClientSession {
            client_id: rand::random(),
            seq: 0,
        }
    }

    /// Moves to the next request and returns its session stamp. A retry of
    /// the same request must reuse the returned value, not call this again.
    pub fn next_request(&mut self) -> ClientSession {
        self.seq += 1;
        *self
    }
}

/// The sessions table, created if missing. An application runs it with its
/// own schema, in the same database as its state.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    owner         TEXT NOT NULL,
    client_id     INTEGER NOT NULL,
    last_seq      INTEGER NOT NULL,
    last_response BLOB NOT NULL,
    last_index    INTEGER NOT NULL,
    PRIMARY KEY (owner, client_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_age ON sessions (last_index);
";

/// Sessions idle for this many log entries are forgotten: a retry that old
/// would be applied again. A million entries is far beyond any client's
/// retry window, and bounds the table by the number of recently active
/// clients.
pub const RETENTION: u64 = 1_000_000;

/// Forgetting happens at every multiple of this index.
pub const SWEEP_EVERY: u64 = 4096;

/// What a session already did with a write, as [`replay`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// The session has not seen this write: apply it and [`record`] the
    /// answer.
    Fresh,
    /// A retry of the session's last write: answer with this, apply
    /// nothing.
    Repeat(Vec<u8>),
    /// The session has applied a later write (`last_seq`) since: this one
    /// must not run, and its own answer is gone.
    Superseded {
        /// The last write the session applied.
        last_seq: u64,
    },
}

/// The last write number and stored answer of `owner`'s session
/// `client_id`, if it has one.
pub fn stored(
    connection: &Connection,
    owner: &str,
    client_id: u64,
) -> rusqlite::Result<Option<(u64, Vec<u8>)>> {
    let stored: Option<(i64, Vec<u8>)> = connection
        .prepare_cached(
            "SELECT last_seq, last_response FROM sessions WHERE owner = ?1 AND client_id = ?2",
        )?
        .query_row(params![owner, to_sql(client_id)], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    Ok(stored.map(|(seq, response)| (from_sql(seq), response)))
}

/// What `owner`'s session already did with the write `session` names.
pub fn replay(
    connection: &Connection,
    owner: &str,
    session: ClientSession,
) -> rusqlite::Result<Replay> {
    Ok(match stored(connection, owner, session.client_id)? {
        Some((last_seq, response)) if session.seq == last_seq => Replay::Repeat(response),
        Some((last_seq, _)) if session.seq < last_seq => Replay::Superseded { last_seq },
        _ => Replay::Fresh,
    })
}

/// Stores `response` as the answer to `owner`'s write `session`, applied
/// at log `index`. Call it in the transaction that applied the write.
pub fn record(
    connection: &Connection,
    owner: &str,
    session: ClientSession,
    response: &[u8],
    index: u64,
) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO sessions (owner, client_id, last_seq, last_response, last_index)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (owner, client_id) DO UPDATE SET last_seq = excluded.last_seq,
                 last_response = excluded.last_response, last_index = excluded.last_index",
        )?
        .execute(params![
            owner,
            to_sql(session.client_id),
            to_sql(session.seq),
            response,
            to_sql(index)
        ])?;
    Ok(())
}

/// Forgets idle sessions for the sweep points in `(after, through]`: the
/// sweep at point `k` logically happens right after entry `k`, whatever
/// the batching, so replicas that batch differently still agree on which
/// sessions exist when each entry is applied and when each snapshot is
/// taken. Call it with the applied index before and after a batch.
pub fn sweep(connection: &Connection, after: u64, through: u64) -> rusqlite::Result<()> {
    let point = through - through % SWEEP_EVERY;
    if point <= after || point < RETENTION {
        return Ok(());
    }
    connection
        .prepare_cached("DELETE FROM sessions WHERE last_index < ?1")?
        .execute([to_sql(point - RETENTION)])?;
    Ok(())
}

/// One row of the sessions table, as a snapshot carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    /// The identity the session belongs to.
    pub owner: String,
    /// The client process.
    pub client_id: u64,
    /// Its last applied write.
    pub last_seq: u64,
    /// The answer to that write.
    pub last_response: Vec<u8>,
    /// The log index that write was applied at (for [`sweep`]).
    pub last_index: u64,
}

/// Every session, ordered by owner and client id (a snapshot's content is
/// the same on every replica).
pub fn rows(connection: &Connection) -> rusqlite::Result<Vec<SessionRow>> {
    let mut statement = connection.prepare(
        "SELECT owner, client_id, last_seq, last_response, last_index FROM sessions
         ORDER BY owner, client_id",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(SessionRow {
            owner: row.get(0)?,
            client_id: from_sql(row.get(1)?),
            last_seq: from_sql(row.get(2)?),
            last_response: row.get(3)?,
            last_index: from_sql(row.get(4)?),
        })
    })?;
    rows.collect()
}

/// Inserts `row` (restoring a snapshot into an emptied table).
pub fn insert(connection: &Connection, row: &SessionRow) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO sessions (owner, client_id, last_seq, last_response, last_index)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            row.owner,
            to_sql(row.client_id),
            to_sql(row.last_seq),
            row.last_response,
            to_sql(row.last_index)
        ])?;
    Ok(())
}

/// SQLite integers are signed: a `u64` is stored as the `i64` with the
/// same bits, so every value round-trips.
fn to_sql(value: u64) -> i64 {
    value as i64
}

fn from_sql(value: i64) -> u64 {
    value as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> Connection {
        let connection = Connection::open_in_memory().unwrap();
        connection.execute_batch(SCHEMA).unwrap();
        connection
    }

    fn write(seq: u64) -> ClientSession {
        ClientSession {
            client_id: u64::MAX - 1,
            seq,
        }
    }

    #[test]
    fn a_retry_gets_the_first_answer_and_an_older_write_is_superseded() {
        let db = database();
        assert_eq!(
            replay(&db, "client:alice", write(1)).unwrap(),
            Replay::Fresh
        );
        record(&db, "client:alice", write(1), b"one", 10).unwrap();
        assert_eq!(
            replay(&db, "client:alice", write(1)).unwrap(),
            Replay::Repeat(b"one".to_vec())
        );
        record(&db, "client:alice", write(2), b"two", 11).unwrap();
        assert_eq!(
            replay(&db, "client:alice", write(1)).unwrap(),
            Replay::Superseded { last_seq: 2 }
        );
        assert_eq!(
            replay(&db, "client:alice", write(3)).unwrap(),
            Replay::Fresh
        );
        // Another identity with the same client id shares nothing.
        assert_eq!(replay(&db, "client:bob", write(2)).unwrap(), Replay::Fresh);
        assert_eq!(stored(&db, "client:bob", write(2).client_id).unwrap(), None);
    }

    #[test]
    fn sweeps_forget_sessions_idle_for_the_retention_at_fixed_points_only() {
        let db = database();
        record(&db, "a", write(1), b"old", 5).unwrap();
        let point = (RETENTION / SWEEP_EVERY + 2) * SWEEP_EVERY;
        record(&db, "b", write(1), b"recent", point - RETENTION).unwrap();
        // A batch ending just before the point sweeps nothing.
        sweep(&db, point - 10, point - 1).unwrap();
        assert_eq!(rows(&db).unwrap().len(), 2);
        // A batch crossing it forgets what was idle at the point.
        sweep(&db, point - 1, point + 3).unwrap();
        let left = rows(&db).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].owner, "b");
    }

    #[test]
    fn rows_restore_into_an_empty_table_as_they_were() {
        let db = database();
        record(&db, "b", write(4), b"x", 9).unwrap();
        record(&db, "a", write(2), b"y", 7).unwrap();
        let saved = rows(&db).unwrap();
        assert_eq!(saved[0].owner, "a");
        let other = database();
        for row in &saved {
            insert(&other, row).unwrap();
        }
        assert_eq!(rows(&other).unwrap(), saved);
        assert_eq!(
            replay(&other, "b", write(4)).unwrap(),
            Replay::Repeat(b"x".to_vec())
        );
    }
}
