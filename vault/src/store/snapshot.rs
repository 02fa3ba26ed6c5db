//! Snapshots: every replicated table as postcard rows, framed and checksummed.
//!
//! Layout: `MAGIC` (8 bytes) · postcard([`SnapshotFile`]) · CRC-32C of all
//! preceding bytes (4 bytes, little endian). Rows are read in primary-key
//! order, so two replicas at the same applied index produce identical bytes.
//! The node-local `twopc_participant` table is not included: it records this
//! node's own votes, which another node's snapshot must not overwrite.

use super::apply::FirstDecision;
use super::schema::{from_sql, set_applied_index, to_sql};
use rusqlite::{params, Connection, Transaction};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::cell::RefCell;
use std::io::Write;

const MAGIC: &[u8; 8] = b"VLTSNAP\x01";
const CHECKSUM_BYTES: usize = 4;

/// Why snapshot bytes were refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes do not start with the vault snapshot marker.
    #[error("not a vault snapshot (bad header)")]
    BadHeader,
    /// The checksum does not match: the bytes were damaged.
    #[error("the snapshot is damaged (checksum mismatch)")]
    Checksum,
    /// The checksum matched but the body does not decode.
    #[error("the snapshot body does not decode: {0}")]
    Decode(#[from] postcard::Error),
    /// The snapshot was taken at another index than the one announced.
    #[error("the snapshot covers index {found}, but index {expected} was announced")]
    IndexMismatch {
        /// The announced index.
        expected: u64,
        /// The index inside the snapshot.
        found: u64,
    },
}

/// Variants are never reordered: a snapshot written by an older build (a
/// learner catching up from an older leader, a backup) still decodes.
#[derive(Serialize, Deserialize)]
enum SnapshotFile {
    /// Before versions were kept: read as tables with no old versions.
    V1(TablesV1),
    /// With `secret_versions`.
    V2(Tables),
}

/// The tables of a [`SnapshotFile::V1`].
#[derive(Serialize, Deserialize)]
struct TablesV1 {
    applied_index: u64,
    secrets: Vec<(String, String, u64, ByteBuf, i64, i64)>,
    shares: Vec<(String, String, String, ByteBuf)>,
    public_keys: Vec<(String, ByteBuf, i64)>,
    sessions: Vec<(String, u64, u64, ByteBuf, u64)>,
    decisions: Vec<(String, i64, u64)>,
}

impl From<TablesV1> for Tables {
    fn from(v1: TablesV1) -> Self {
        Tables {
            applied_index: v1.applied_index,
            secrets: v1.secrets,
            versions: Vec::new(),
            shares: v1.shares,
            public_keys: v1.public_keys,
            sessions: v1.sessions,
            decisions: v1.decisions,
        }
    }
}

/// Blob columns are [`ByteBuf`]s: postcard writes them as a length and the
/// raw bytes, the same encoding as a `Vec<u8>` (so the format is unchanged),
/// but in one copy instead of one serializer call per byte, which made
/// snapshots of a large vault CPU-bound.
#[derive(Serialize, Deserialize, Default)]
struct Tables {
    applied_index: u64,
    secrets: Vec<(String, String, u64, ByteBuf, i64, i64)>,
    /// Older versions: owner, name, version, ciphertext, updated.
    versions: Vec<(String, String, u64, ByteBuf, i64)>,
    shares: Vec<(String, String, String, ByteBuf)>,
    public_keys: Vec<(String, ByteBuf, i64)>,
    sessions: Vec<(String, u64, u64, ByteBuf, u64)>,
    decisions: Vec<(String, i64, u64)>,
}

/// Reads blob column `index` of `row`.
fn blob(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<ByteBuf> {
    row.get::<_, Vec<u8>>(index).map(ByteBuf::from)
}

/// Serialises the replicated tables as of `applied_index`; `transaction` is
/// a connection inside a transaction that sees exactly that state.
///
/// The two large tables are encoded straight from their queries, one row
/// at a time ([`Streamed`]): holding them as owned rows first took more
/// memory than the snapshot itself (at a million secrets, half a gigabyte
/// of small allocations the allocator kept afterwards). The bytes are the
/// same as encoding a [`SnapshotFile::V2`] of owned rows.
pub(crate) fn take(transaction: &Connection, applied_index: u64) -> rusqlite::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    take_into(transaction, applied_index, &mut bytes)?;
    Ok(bytes)
}

/// [`take`], written into `out` as it is encoded (a node's snapshot job
/// writes its file this way, never holding the snapshot in memory).
pub(crate) fn take_into(
    transaction: &Connection,
    applied_index: u64,
    out: &mut dyn std::io::Write,
) -> rusqlite::Result<()> {
    let failed = RefCell::new(None);
    let tables = TablesOut {
        applied_index,
        secrets: Streamed {
            connection: transaction,
            table: "secrets",
            sql: "SELECT owner, name, version, ciphertext, created, updated FROM secrets ORDER BY owner, name",
            map: |row: &rusqlite::Row<'_>| -> rusqlite::Result<_> {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, from_sql(row.get(2)?), blob(row, 3)?, row.get::<_, i64>(4)?, row.get::<_, i64>(5)?))
            },
            failed: &failed,
        },
        versions: Streamed {
            connection: transaction,
            table: "secret_versions",
            sql: "SELECT owner, name, version, ciphertext, updated FROM secret_versions ORDER BY owner, name, version",
            map: |row: &rusqlite::Row<'_>| -> rusqlite::Result<_> {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, from_sql(row.get(2)?), blob(row, 3)?, row.get::<_, i64>(4)?))
            },
            failed: &failed,
        },
        shares: rows(
            transaction,
            "SELECT owner, name, grantee, wrapped_key FROM shares ORDER BY owner, name, grantee",
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, blob(row, 3)?)),
        )?,
        public_keys: rows(
            transaction,
            "SELECT identity, record, updated FROM public_keys ORDER BY identity",
            |row| Ok((row.get(0)?, blob(row, 1)?, row.get(2)?)),
        )?,
        sessions: bus::sessions::rows(transaction)?
            .into_iter()
            .map(|row| {
                let response = ByteBuf::from(row.last_response);
                (row.owner, row.client_id, row.last_seq, response, row.last_index)
            })
            .collect(),
        decisions: rows(
            transaction,
            "SELECT tx, decision, log_index FROM twopc_decisions ORDER BY tx",
            |row| Ok((row.get(0)?, row.get(1)?, from_sql(row.get(2)?))),
        )?,
    };
    let mut out = Checksummed { out, crc: 0 };
    let write_failed =
        |error: std::io::Error| rusqlite::Error::ToSqlConversionFailure(error.into());
    out.write_all(MAGIC).map_err(write_failed)?;
    let out = postcard::to_io(&Version2(&tables), out).map_err(|error| {
        // A query's own error, if that is what stopped the encoding.
        failed
            .take()
            .unwrap_or_else(|| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))
    })?;
    let checksum = out.crc.to_le_bytes();
    out.out.write_all(&checksum).map_err(write_failed)?;
    Ok(())
}

/// Passes writes through to `out`, keeping the CRC-32C of everything
/// written (the snapshot's trailer).
struct Checksummed<'a> {
    out: &'a mut dyn std::io::Write,
    crc: u32,
}

impl std::io::Write for Checksummed<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.out.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// [`Tables`] as [`take`] encodes them: the same fields in the same order,
/// the large tables streamed.
#[derive(Serialize)]
struct TablesOut<S, V> {
    applied_index: u64,
    secrets: S,
    versions: V,
    shares: Vec<(String, String, String, ByteBuf)>,
    public_keys: Vec<(String, ByteBuf, i64)>,
    sessions: Vec<(String, u64, u64, ByteBuf, u64)>,
    decisions: Vec<(String, i64, u64)>,
}

/// Encodes as [`SnapshotFile::V2`] of what it holds.
struct Version2<'a, T>(&'a T);

impl<T: Serialize> Serialize for Version2<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Variant 1 of `SnapshotFile`, whose order never changes.
        serializer.serialize_newtype_variant("SnapshotFile", 1, "V2", self.0)
    }
}

/// A table encoded as a sequence straight from its query: its row count
/// first (postcard needs the length up front; the transaction's view does
/// not change between the two statements), then each row as `map` makes
/// it, dropped once encoded. A query's error is kept in `failed`, since the
/// encoder's own error type cannot carry it.
struct Streamed<'c, F> {
    connection: &'c Connection,
    table: &'static str,
    sql: &'static str,
    map: F,
    failed: &'c RefCell<Option<rusqlite::Error>>,
}

impl<F, T> Serialize for Streamed<'_, F>
where
    F: Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    T: Serialize,
{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let fail = |error: rusqlite::Error| {
            let message = error.to_string();
            *self.failed.borrow_mut() = Some(error);
            S::Error::custom(message)
        };
        let count: i64 = self
            .connection
            .query_row(&format!("SELECT count(*) FROM {}", self.table), [], |row| {
                row.get(0)
            })
            .map_err(fail)?;
        let count = usize::try_from(count).map_err(|_| S::Error::custom("negative row count"))?;
        let mut statement = self.connection.prepare(self.sql).map_err(fail)?;
        let mut rows = statement.query([]).map_err(fail)?;
        let mut sequence = serializer.serialize_seq(Some(count))?;
        let mut written = 0usize;
        while let Some(row) = rows.next().map_err(fail)? {
            sequence.serialize_element(&(self.map)(row).map_err(fail)?)?;
            written += 1;
        }
        if written != count {
            // The count would not match the rows that follow it.
            return Err(S::Error::custom(format!(
                "{} changed while it was read ({count} rows counted, {written} read)",
                self.table
            )));
        }
        sequence.end()
    }
}

fn rows<T>(
    connection: &Connection,
    sql: &str,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut statement = connection.prepare(sql)?;
    let rows = statement.query_map([], map)?;
    rows.collect()
}

/// Checks the frame and decodes the body, touching no table.
fn parse(data: &[u8], expected_index: u64) -> Result<Tables, SnapshotError> {
    if data.len() < MAGIC.len() + CHECKSUM_BYTES || !data.starts_with(MAGIC) {
        return Err(SnapshotError::BadHeader);
    }
    let (framed, checksum) = data.split_at(data.len() - CHECKSUM_BYTES);
    let mut stored = [0u8; CHECKSUM_BYTES];
    stored.copy_from_slice(checksum);
    if crc32c::crc32c(framed) != u32::from_le_bytes(stored) {
        return Err(SnapshotError::Checksum);
    }
    let (file, rest) = postcard::take_from_bytes::<SnapshotFile>(&framed[MAGIC.len()..])?;
    let tables = match file {
        SnapshotFile::V1(v1) => Tables::from(v1),
        SnapshotFile::V2(tables) => tables,
    };
    if !rest.is_empty() {
        return Err(SnapshotError::Decode(
            postcard::Error::DeserializeBadEncoding,
        ));
    }
    if tables.applied_index != expected_index {
        return Err(SnapshotError::IndexMismatch {
            expected: expected_index,
            found: tables.applied_index,
        });
    }
    Ok(tables)
}

/// What a snapshot holds, in numbers a person can check (`snapshot
/// inspect`): nothing secret, only counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// The applied index the snapshot was taken at.
    pub applied_index: u64,
    /// How many secrets (one per owner and name; the table holds each
    /// secret's current version).
    pub secrets: u64,
    /// How many identities published a public key.
    pub identities: u64,
}

/// Verifies `data` completely (marker, checksum, body, its index is
/// `expected_index`) without touching any database, and counts what it
/// holds.
pub fn summarize(data: &[u8], expected_index: u64) -> Result<SnapshotSummary, SnapshotError> {
    let tables = parse(data, expected_index)?;
    Ok(SnapshotSummary {
        applied_index: tables.applied_index,
        secrets: tables.secrets.len() as u64,
        identities: tables.public_keys.len() as u64,
    })
}

/// Validates `data`, then replaces every replicated table with its rows in
/// `transaction`. Nothing is written unless the whole snapshot is valid.
/// Returns the decisions that settled a transaction this node had prepared.
pub(crate) fn restore(
    transaction: &Transaction<'_>,
    index: u64,
    data: &[u8],
) -> Result<Vec<FirstDecision>, super::StoreError> {
    let tables = parse(data, index)?;
    transaction.execute_batch(
        "DELETE FROM secrets; DELETE FROM secret_versions; DELETE FROM shares; DELETE FROM public_keys;
         DELETE FROM sessions; DELETE FROM twopc_decisions;",
    )?;
    // Prepared once per table, not once per row (a million rows each).
    let mut insert_secret = transaction.prepare(
        "INSERT INTO secrets (owner, name, version, ciphertext, created, updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (owner, name, version, ciphertext, created, updated) in &tables.secrets {
        insert_secret.execute(params![
            owner,
            name,
            to_sql(*version),
            ciphertext.as_slice(),
            created,
            updated
        ])?;
    }
    let mut insert_version = transaction.prepare(
        "INSERT INTO secret_versions (owner, name, version, ciphertext, updated)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (owner, name, version, ciphertext, updated) in &tables.versions {
        insert_version.execute(params![
            owner,
            name,
            to_sql(*version),
            ciphertext.as_slice(),
            updated
        ])?;
    }
    for (owner, name, grantee, wrapped_key) in &tables.shares {
        transaction.execute(
            "INSERT INTO shares (owner, name, grantee, wrapped_key) VALUES (?1, ?2, ?3, ?4)",
            params![owner, name, grantee, wrapped_key.as_slice()],
        )?;
    }
    for (identity, record, updated) in &tables.public_keys {
        transaction.execute(
            "INSERT INTO public_keys (identity, record, updated) VALUES (?1, ?2, ?3)",
            params![identity, record.as_slice(), updated],
        )?;
    }
    for (owner, client_id, last_seq, response, last_index) in &tables.sessions {
        let row = bus::sessions::SessionRow {
            owner: owner.clone(),
            client_id: *client_id,
            last_seq: *last_seq,
            last_response: response.to_vec(),
            last_index: *last_index,
        };
        bus::sessions::insert(transaction, &row)?;
    }
    let mut settled = Vec::new();
    for (tx, decision, log_index) in &tables.decisions {
        transaction.execute(
            "INSERT INTO twopc_decisions (tx, decision, log_index) VALUES (?1, ?2, ?3)",
            params![tx, decision, to_sql(*log_index)],
        )?;
        let decision = super::apply::decision_from_sql(*decision);
        if super::twopc::settle(transaction, tx, decision)? {
            settled.push(FirstDecision {
                tx: tx.clone(),
                decision,
            });
        }
    }
    super::pruning::after_restore(transaction, index)?;
    set_applied_index(transaction, index)?;
    Ok(settled)
}

#[cfg(test)]
mod streamed_tests {
    use super::*;
    use crate::store::tests::{Fixture, ALICE, BOB};
    use consensus::state_machine::StateMachine;

    /// The streamed encoding is exactly the owned one (so older builds
    /// read it, and replicas stay byte-identical): the tables decoded from
    /// a snapshot, encoded again as owned rows, give the same bytes.
    #[test]
    fn a_streamed_snapshot_is_the_encoding_of_its_rows_as_owned_tables() {
        let mut fixture = Fixture::new();
        for k in 0..50u8 {
            fixture
                .put(ALICE, &format!("secret-{k}"), k, false)
                .expect("added");
        }
        for k in 0..10u8 {
            fixture
                .put(ALICE, &format!("secret-{k}"), 100 + k, true)
                .expect("updated");
        }
        fixture.put(BOB, "only", 7, false).expect("added");
        let data = fixture.machine.snapshot().expect("snapshot");
        let tables = parse(&data, fixture.machine.applied_index()).expect("decodes");
        assert_eq!(tables.secrets.len(), 51);
        assert_eq!(tables.versions.len(), 10);
        let mut owned = MAGIC.to_vec();
        owned.extend(postcard::to_stdvec(&SnapshotFile::V2(tables)).expect("encodes"));
        let checksum = crc32c::crc32c(&owned);
        owned.extend_from_slice(&checksum.to_le_bytes());
        assert_eq!(data, owned);
    }
}
