//! [`KvStateMachine`]: the key-value map in SQLite, replicated by Raft.
//!
//! Tables: `entries(key, value)`, the bus's `sessions` table
//! ([`bus::sessions`]: the last write of each identity's client and its
//! answer, for exactly-once) and `applied(index)`. A batch of committed commands is one SQLite
//! transaction with the new applied index, so a crash keeps all of a batch
//! or none of it, and entries at or below the applied index are skipped.
//!
//! Snapshot format: CRC-32C (4 bytes, little endian) of the body, then the
//! body: postcard of [`Image`] (rows in key order, so two replicas at one
//! index produce the same bytes).

use crate::protocol::{
    decode, encode, KvCommand, KvError, KvQuery, KvReply, KvResponse, Operation,
};
use bus::sessions::{self, Replay, SessionRow};
use consensus::raft::LogIndex;
use consensus::state_machine::{CommittedCommand, StateMachine};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What goes wrong in the key-value store. Expected outcomes (a failed
/// compare-and-swap) are answers, not errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("key-value database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A snapshot's checksum or encoding is wrong.
    #[error("the key-value snapshot is damaged")]
    Damaged,
    /// A snapshot is not of the index it was offered for.
    #[error("the snapshot is for index {found}, not {expected}")]
    IndexMismatch {
        /// The index the runtime named.
        expected: LogIndex,
        /// The index the snapshot holds.
        found: LogIndex,
    },
}

/// The whole state, as a snapshot carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Image {
    applied_index: LogIndex,
    entries: Vec<(u64, u64)>,
    sessions: Vec<SessionRow>,
}

/// The key-value state machine.
pub struct KvStateMachine {
    connection: Connection,
    applied_index: LogIndex,
}

/// SQLite stores signed 64-bit integers; keys and values are unsigned and
/// kept bit for bit.
fn signed(value: u64) -> i64 {
    value as i64
}

fn unsigned(value: i64) -> u64 {
    value as u64
}

impl KvStateMachine {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let connection = Connection::open(path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS entries (key INTEGER PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS applied (id INTEGER PRIMARY KEY CHECK (id = 0),
                 log_index INTEGER NOT NULL);
             INSERT OR IGNORE INTO applied (id, log_index) VALUES (0, 0);",
        )?;
        connection.execute_batch(sessions::SCHEMA)?;
        let applied_index: i64 =
            connection.query_row("SELECT log_index FROM applied WHERE id = 0", [], |row| {
                row.get(0)
            })?;
        Ok(KvStateMachine {
            connection,
            applied_index: unsigned(applied_index),
        })
    }

    fn image(&self) -> Result<Image, StoreError> {
        let mut entries = Vec::new();
        let mut statement = self
            .connection
            .prepare("SELECT key, value FROM entries ORDER BY key")?;
        let rows =
            statement.query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)))?;
        for row in rows {
            let (key, value) = row?;
            entries.push((unsigned(key), unsigned(value)));
        }
        let sessions = sessions::rows(&self.connection)?;
        Ok(Image {
            applied_index: self.applied_index,
            entries,
            sessions,
        })
    }
}

/// The value of `key` (0 if never written).
fn value_of(transaction: &Transaction<'_>, key: u64) -> Result<u64, rusqlite::Error> {
    let value: Option<i64> = transaction
        .query_row(
            "SELECT value FROM entries WHERE key = ?1",
            params![signed(key)],
            |row| row.get(0),
        )
        .optional()?;
    Ok(value.map_or(0, unsigned))
}

/// Applies one command inside `transaction`; its answer.
fn apply_one(
    transaction: &Transaction<'_>,
    index: LogIndex,
    bytes: &[u8],
) -> Result<Vec<u8>, rusqlite::Error> {
    let Ok(command) = decode::<KvCommand>(bytes) else {
        let reply: KvReply = Err(KvError::Internal("undecodable key-value command".into()));
        return Ok(encode(&reply));
    };
    let (owner, session) = (&command.owner, command.session);
    match sessions::replay(transaction, owner, session)? {
        Replay::Fresh => {}
        // A retry of the client's last write: the first answer again.
        Replay::Repeat(response) => return Ok(response),
        // Older than the last write: that answer is gone, and the write
        // must not run again.
        Replay::Superseded { .. } => {
            let reply: KvReply = Err(KvError::Internal(format!(
                "write {} of this client is older than its last one",
                session.seq
            )));
            return Ok(encode(&reply));
        }
    }
    let current = value_of(transaction, command.key)?;
    let (new, response) = match command.operation {
        Operation::Put(value) => (Some(value), KvResponse::Written),
        Operation::Cas { expected, new } => {
            let swapped = current == expected;
            (
                swapped.then_some(new),
                KvResponse::Swapped { swapped, current },
            )
        }
    };
    if let Some(value) = new {
        transaction.execute(
            "INSERT INTO entries (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![signed(command.key), signed(value)],
        )?;
    }
    let reply: KvReply = Ok(response);
    let bytes = encode(&reply);
    sessions::record(transaction, owner, session, &bytes, index)?;
    Ok(bytes)
}

fn set_applied(transaction: &Transaction<'_>, index: LogIndex) -> Result<(), rusqlite::Error> {
    transaction.execute(
        "UPDATE applied SET log_index = ?1 WHERE id = 0",
        params![signed(index)],
    )?;
    Ok(())
}

fn checksummed(image: &Image) -> Vec<u8> {
    let body = encode(image);
    let mut bytes = crc32c::crc32c(&body).to_le_bytes().to_vec();
    bytes.extend(body);
    bytes
}

fn verified(bytes: &[u8]) -> Result<Image, StoreError> {
    if bytes.len() < 4 {
        return Err(StoreError::Damaged);
    }
    let (checksum, body) = bytes.split_at(4);
    if checksum != crc32c::crc32c(body).to_le_bytes() {
        return Err(StoreError::Damaged);
    }
    decode(body).map_err(|_| StoreError::Damaged)
}

impl StateMachine for KvStateMachine {
    type Error = StoreError;

    fn applied_index(&self) -> LogIndex {
        self.applied_index
    }

    fn apply(&mut self, commands: &[CommittedCommand<'_>]) -> Result<Vec<Vec<u8>>, StoreError> {
        let transaction = self.connection.transaction()?;
        let mut applied = self.applied_index;
        let mut responses = Vec::with_capacity(commands.len());
        for command in commands {
            if command.index <= applied {
                responses.push(Vec::new());
                continue;
            }
            responses.push(apply_one(&transaction, command.index, command.command)?);
            applied = command.index;
        }
        sessions::sweep(&transaction, self.applied_index, applied)?;
        set_applied(&transaction, applied)?;
        transaction.commit()?;
        self.applied_index = applied;
        Ok(responses)
    }

    fn skip_to(&mut self, index: LogIndex) -> Result<(), StoreError> {
        if index > self.applied_index {
            let transaction = self.connection.transaction()?;
            sessions::sweep(&transaction, self.applied_index, index)?;
            set_applied(&transaction, index)?;
            transaction.commit()?;
            self.applied_index = index;
        }
        Ok(())
    }

    fn query(&self, query: &[u8]) -> Result<Vec<u8>, StoreError> {
        let reply: KvReply = match decode::<KvQuery>(query) {
            Ok(KvQuery::Get(key)) => {
                let value: Option<i64> = self
                    .connection
                    .query_row(
                        "SELECT value FROM entries WHERE key = ?1",
                        params![signed(key)],
                        |row| row.get(0),
                    )
                    .optional()?;
                Ok(KvResponse::Value(value.map_or(0, unsigned)))
            }
            Err(_) => Err(KvError::Internal("undecodable key-value query".into())),
        };
        Ok(encode(&reply))
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, StoreError> {
        Ok(checksummed(&self.image()?))
    }

    fn restore(&mut self, index: LogIndex, data: &[u8]) -> Result<(), StoreError> {
        let image = verified(data)?;
        if image.applied_index != index {
            return Err(StoreError::IndexMismatch {
                expected: index,
                found: image.applied_index,
            });
        }
        let transaction = self.connection.transaction()?;
        transaction.execute_batch("DELETE FROM entries; DELETE FROM sessions;")?;
        for (key, value) in &image.entries {
            transaction.execute(
                "INSERT INTO entries (key, value) VALUES (?1, ?2)",
                params![signed(*key), signed(*value)],
            )?;
        }
        for row in &image.sessions {
            sessions::insert(&transaction, row)?;
        }
        set_applied(&transaction, index)?;
        transaction.commit()?;
        self.applied_index = index;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ClientSession;

    fn put(owner: &str, client_id: u64, seq: u64, key: u64, value: u64) -> Vec<u8> {
        encode(&KvCommand {
            owner: owner.into(),
            session: ClientSession { client_id, seq },
            key,
            operation: Operation::Put(value),
        })
    }

    /// A swap from 0: applied twice, its second answer would differ.
    fn swap(owner: &str, client_id: u64, seq: u64, key: u64, new: u64) -> Vec<u8> {
        encode(&KvCommand {
            owner: owner.into(),
            session: ClientSession { client_id, seq },
            key,
            operation: Operation::Cas { expected: 0, new },
        })
    }

    fn value(machine: &KvStateMachine, key: u64) -> KvReply {
        decode(&machine.query(&encode(&KvQuery::Get(key))).unwrap()).unwrap()
    }

    #[test]
    fn sessions_are_per_identity_so_one_client_cannot_replay_anothers_answer() {
        let dir = tempfile::tempdir().unwrap();
        let mut machine = KvStateMachine::open(&dir.path().join("kv.db")).unwrap();
        // Two identities whose processes drew the same client id and write
        // number: both writes are applied.
        let alice = swap("client:alice", 7, 1, 1, 10);
        let bob = swap("client:bob", 7, 1, 2, 20);
        let retry = alice.clone();
        let entries = [
            CommittedCommand {
                index: 1,
                term: 1,
                command: &alice,
            },
            CommittedCommand {
                index: 2,
                term: 1,
                command: &bob,
            },
            CommittedCommand {
                index: 3,
                term: 1,
                command: &retry,
            },
        ];
        let answers = machine.apply(&entries).unwrap();
        assert_eq!(value(&machine, 1), Ok(KvResponse::Value(10)));
        assert_eq!(value(&machine, 2), Ok(KvResponse::Value(20)));
        // Alice's retry is answered from her session, not swapped again.
        assert_eq!(answers[2], answers[0]);
        let first: KvReply = decode(&answers[0]).unwrap();
        assert_eq!(
            first,
            Ok(KvResponse::Swapped {
                swapped: true,
                current: 0
            })
        );
        // An older write of Alice's after a newer one is not applied.
        let newer = put("client:alice", 7, 2, 1, 11);
        let older = put("client:alice", 7, 1, 1, 99);
        let entries = [
            CommittedCommand {
                index: 4,
                term: 1,
                command: &newer,
            },
            CommittedCommand {
                index: 5,
                term: 1,
                command: &older,
            },
        ];
        let answers = machine.apply(&entries).unwrap();
        assert_eq!(value(&machine, 1), Ok(KvResponse::Value(11)));
        assert!(decode::<KvReply>(&answers[1]).unwrap().is_err());
    }
}
