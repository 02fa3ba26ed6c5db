//! The SQLite schema of SPEC §5 and the connection settings.
//!
//! Replicated tables (identical on every node at the same applied index, and
//! carried by snapshots): `meta`, `secrets` (the current version of each
//! secret), `secret_versions` (older versions), `shares`, `public_keys`,
//! `sessions` (the bus's table, `bus::sessions::SCHEMA`), `twopc_decisions`. Node-local table (this node's own votes,
//! never in a snapshot): `twopc_participant`.

use rusqlite::{Connection, OptionalExtension};

/// Bumped when the layout changes incompatibly; a database with another
/// value is refused instead of misread.
/// Version 2: `public_keys` holds whole identity records (public key,
/// random salt, KDF cost, key-check value) instead of bare public keys.
/// Version 3: `secret_versions` keeps the older versions of each secret; a
/// version-2 database is upgraded in place (the table is added, empty).
pub(crate) const SCHEMA_VERSION: i64 = 3;

/// The oldest layout this build upgrades instead of refusing.
const UPGRADABLE_FROM: i64 = 2;

/// How many versions of a secret are kept by default, the current one
/// included (SPEC §5, `[vault] max_versions`).
pub const DEFAULT_MAX_VERSIONS: u32 = 10;

/// Page cache per connection, in KiB. At a million secrets 16 MiB and
/// 64 MiB gave the same throughput with snapshots running (5 730 and 5 716
/// writes/s, 64 clients) and the leader's median memory was 146 MB against
/// 182 MB (docs/performance.md, "Growth"); pages beyond it come from the
/// kernel's page cache.
const CACHE_KIB: i64 = 16 * 1024;

/// The size the WAL file is cut back to after a checkpoint, in bytes.
const JOURNAL_SIZE_LIMIT: i64 = 16 << 20;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS secrets (
    owner      TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    ciphertext BLOB NOT NULL,
    created    INTEGER NOT NULL,
    updated    INTEGER NOT NULL,
    PRIMARY KEY (owner, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS secret_versions (
    owner      TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    ciphertext BLOB NOT NULL,
    updated    INTEGER NOT NULL,
    PRIMARY KEY (owner, name, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS shares (
    owner       TEXT NOT NULL,
    name        TEXT NOT NULL,
    grantee     TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    PRIMARY KEY (owner, name, grantee)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS public_keys (
    identity   TEXT PRIMARY KEY,
    record     BLOB NOT NULL,
    updated    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS twopc_decisions (
    tx        TEXT PRIMARY KEY,
    decision  INTEGER NOT NULL,
    log_index INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS twopc_participant (
    tx      TEXT PRIMARY KEY,
    owner   TEXT NOT NULL,
    name    TEXT NOT NULL,
    version INTEGER NOT NULL,
    state   TEXT NOT NULL,
    created INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS shares_grantee ON shares (grantee);
CREATE INDEX IF NOT EXISTS twopc_participant_lock ON twopc_participant (owner, name, state);
";

/// Why a database cannot be opened as a vault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SchemaError {
    #[error("SQLite refused WAL mode (journal mode is {0})")]
    NoWal(String),
    #[error("the database has schema version {0}, this build reads version {SCHEMA_VERSION}")]
    Version(i64),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Configures the connection and creates the tables if they are missing.
///
/// `synchronous=NORMAL` in WAL mode may lose the last commits on power loss
/// but never corrupts the file. That is enough for applying entries: the
/// Raft log is fsynced before an entry commits and is the durability point,
/// so a lost apply is redone from the log on restart (the applied index lost
/// with it says where to start). The one write that is not in the log, a
/// 2PC participant's prepare, switches to `FULL` for its own commit.
pub(crate) fn prepare(connection: &Connection) -> Result<(), SchemaError> {
    let mode: String = connection.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(SchemaError::NoWal(mode));
    }
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    // SQLite's default page cache is 2 MiB: once the secrets table outgrew
    // it, every apply re-read B-tree pages from the OS with a syscall each.
    // A negative size is in KiB.
    connection.pragma_update(None, "cache_size", -CACHE_KIB)?;
    // A snapshot's read transaction holds back checkpoints while it reads,
    // so the WAL grows meanwhile (to 150 MB at a million secrets); without
    // a limit the file keeps that size for good once it has been reached.
    connection.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    connection.execute_batch(TABLES)?;
    // The sessions table is the bus's, kept in the vault's database so a
    // write and its stored answer commit together.
    connection.execute_batch(bus::sessions::SCHEMA)?;
    let version: Option<i64> = connection
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    match version {
        None => {
            connection.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION],
            )?;
        }
        Some(SCHEMA_VERSION) => {}
        // The tables above already added what the newer layout has.
        Some(old) if (UPGRADABLE_FROM..SCHEMA_VERSION).contains(&old) => {
            connection.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
                [SCHEMA_VERSION],
            )?;
        }
        Some(other) => return Err(SchemaError::Version(other)),
    }
    Ok(())
}

/// Reads the applied index (0 for a new database).
pub(crate) fn applied_index(connection: &Connection) -> rusqlite::Result<u64> {
    let value: Option<i64> = connection
        .query_row(
            "SELECT value FROM meta WHERE key = 'applied_index'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    Ok(value.map_or(0, from_sql))
}

/// Writes the applied index; callers do it inside the transaction that holds
/// the effects of the entries up to `index`.
pub(crate) fn set_applied_index(connection: &Connection, index: u64) -> rusqlite::Result<()> {
    connection.execute(
        "INSERT INTO meta (key, value) VALUES ('applied_index', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [to_sql(index)],
    )?;
    Ok(())
}

/// SQLite integers are signed 64-bit; u64 values (log indexes, random client
/// ids) are stored bit for bit, so the cast round-trips exactly.
pub(crate) fn to_sql(value: u64) -> i64 {
    value as i64
}

/// Inverse of [`to_sql`].
pub(crate) fn from_sql(value: i64) -> u64 {
    value as u64
}
