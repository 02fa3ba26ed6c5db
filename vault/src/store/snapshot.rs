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
pub(crate) fn take(transaction: &Connection, applied_index: u64) -> rusqlite::Result<Vec<u8>> {
    let tables = Tables {
        applied_index,
        secrets: rows(
            transaction,
            "SELECT owner, name, version, ciphertext, created, updated FROM secrets ORDER BY owner, name",
            |row| Ok((row.get(0)?, row.get(1)?, from_sql(row.get(2)?), blob(row, 3)?, row.get(4)?, row.get(5)?)),
        )?,
        versions: rows(
            transaction,
            "SELECT owner, name, version, ciphertext, updated FROM secret_versions ORDER BY owner, name, version",
            |row| Ok((row.get(0)?, row.get(1)?, from_sql(row.get(2)?), blob(row, 3)?, row.get(4)?)),
        )?,
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
    let mut bytes = MAGIC.to_vec();
    // Serialising owned rows into a Vec cannot fail (see protocol::encode).
    bytes.extend(postcard::to_stdvec(&SnapshotFile::V2(tables)).unwrap_or_default());
    let checksum = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    Ok(bytes)
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
