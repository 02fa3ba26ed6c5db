//! Durable Raft state: hard state, log and snapshot (SPEC §3 "Durable state").
//!
//! The Raft core keeps the log since the last snapshot in memory. This module
//! makes that state survive `kill -9` and power loss:
//!
//! - at start the runtime opens a store and gets a [`Recovered`] state: the
//!   [`HardState`], the latest [`Snapshot`] and every entry after it;
//! - while running it hands the store [`WriteBatch`]es (a new hard state,
//!   entries to append, sometimes a snapshot) and acts on them only once the
//!   store says they are durable.
//!
//! Two implementations satisfy the [`LogStore`] contract and pass the same
//! [`conformance`] suite: [`FileStore`] (append-only, checksummed segment
//! files, see `docs/storage.md`) and [`MemStore`] (for tests and simulation).
//! [`LogWriter`] runs any store on a dedicated thread and shares one
//! `fdatasync` among every batch queued meanwhile (group commit).
//!
//! ```
//! use consensus::raft::types::{Entry, EntryPayload, HardState};
//! use consensus::storage::{FileStore, FileStoreOptions, LogStore, WriteBatch};
//!
//! # fn main() -> Result<(), consensus::storage::StorageError> {
//! # let dir = std::env::temp_dir().join(format!("storage-doc-{}", std::process::id()));
//! let (mut store, recovered) = FileStore::open(&dir, FileStoreOptions::default())?;
//! assert!(recovered.entries.is_empty());
//! store.write(&[WriteBatch {
//!     hard_state: Some(HardState { term: 1, vote: None, commit: 0, incarnation: 0 }),
//!     entries: vec![Entry { term: 1, index: 1, payload: EntryPayload::Blank }],
//!     ..WriteBatch::default()
//! }])?; // returns only once both are on stable storage
//! drop(store);
//! let (_store, recovered) = FileStore::open(&dir, FileStoreOptions::default())?;
//! assert_eq!(recovered.entries.len(), 1);
//! assert_eq!(recovered.hard_state.term, 1);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

pub mod conformance;
mod error;
pub(crate) mod file_store;
mod memory;
mod record;
mod recovery;
mod segment;
mod snapshot_file;
mod tail;
#[cfg(test)]
mod tests;
mod writer;

pub use error::StorageError;
pub use file_store::{FileStore, FileStoreOptions};
pub use memory::{MemDisk, MemStore};
/// The largest record the log takes, for the node's tests of a batch the
/// log refuses for good.
#[cfg(test)]
pub(crate) use record::MAX_PAYLOAD as MAX_RECORD_PAYLOAD;
/// Where the node's snapshot jobs write (see `snapshot_file::stage`).
pub(crate) use snapshot_file::stage as stage_snapshot;
pub use writer::{Durable, LogWriter, WriterHealth, WriterStats};

use crate::raft::types::{Entry, HardState, LogIndex};

/// What a store hands back at open is what the Raft core starts from
/// ([`RaftCore::new`](crate::raft::RaftCore::new)): one type, so nothing is
/// converted (or lost) between the two. The last durable hard state
/// (default if none was ever written), the latest durable snapshot, and
/// every entry after it (or from index 1 without one), consecutive.
pub use crate::raft::RestoredState;
/// The snapshot a store keeps is the one the core hands out and streams:
/// its bytes are shared, so storing it copies nothing.
pub use crate::raft::Snapshot;

/// One unit of work for a store, applied in this order: `snapshot`, then
/// `entries`, then `hard_state`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// The new hard state, if it changed.
    pub hard_state: Option<HardState>,
    /// Entries with consecutive indexes. If the first index is at or below the
    /// last stored index, the stored suffix from there on is discarded first
    /// (a follower's log conflicting with the leader's). The store truncates
    /// whatever the terms, so the caller passes entries from the first
    /// *conflicting* one on (Raft §5.3): re-sending entries that match would
    /// drop the ones after them.
    pub entries: Vec<Entry>,
    /// A snapshot to save (taken locally or received from the leader). Entries
    /// it covers are compacted away. If the stored log holds the snapshot's
    /// last entry with the same term, entries after it are kept; otherwise the
    /// whole log is discarded (Raft §7).
    pub snapshot: Option<Snapshot>,
    /// The file `snapshot`'s data was staged in, if any (a snapshot this
    /// node took). A store may make it the snapshot's file instead of
    /// writing the data again ([`FileStore`] does, and the file is then no
    /// longer at that path); one that does not leaves it alone.
    pub staged_snapshot: Option<StagedSnapshot>,
}

/// A file that holds exactly a snapshot's data, synced, and the data's
/// CRC32C (see [`WriteBatch::staged_snapshot`]). The runtime's snapshot
/// thread makes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagedSnapshot {
    /// Where the file is.
    pub path: std::path::PathBuf,
    /// CRC32C of the file's bytes.
    pub crc: u32,
}

impl WriteBatch {
    /// True when the batch asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.entries.is_empty()
            && self.snapshot.is_none()
            && self.staged_snapshot.is_none()
    }
}

/// Durable storage for one node's Raft state.
///
/// Opening is specific to each implementation (it yields a [`Recovered`]);
/// this trait is what a running node does with a store.
///
/// # To ensure correctness
///
/// Every implementation must guarantee, and the [`conformance`] suite checks:
///
/// - **Durable before returning.** [`write`](Self::write) returns `Ok` only
///   once everything in the batches would survive a crash or power loss (for
///   files: after `fdatasync`). The caller may then send votes and
///   AppendEntries replies that promise the data. In particular the vote in
///   a hard state is durable before any vote is granted on its strength.
///   One exception, as in etcd's `MustSync`: a group whose only change is a
///   higher commit index (no entries, no snapshot, same term and vote) may
///   be written without a sync. The commit index is volatile state in Raft
///   (Figure 2) and only saves re-applying entries, so losing its latest
///   value on power loss is harmless, while syncing it would cost the
///   leader a second `fdatasync` for every write it commits.
/// - **Ordered.** Batches take effect in the order given, within one call
///   and across calls; after a crash, what survives is a prefix of the
///   acknowledged history plus, at most, a prefix of the unacknowledged one.
///   A crash never leaves a later batch durable and an earlier one lost.
/// - **No holes.** Entries are stored with consecutive indexes, starting
///   right after the snapshot (or at 1). A batch that would leave a gap, has
///   non-consecutive entries, or rewrites a compacted entry is rejected with
///   an error, nothing of it is written, and the store stays usable.
/// - **Truncate on conflict.** Appending entries whose first index is at or
///   below the last stored index removes the stored entries from that index
///   on, before appending; after a restart the truncated entries stay gone.
/// - **Snapshots compact.** After a snapshot at index `i` is saved, entries up
///   to `i` are never returned again, and entries after `i` are kept only if
///   the stored entry at `i` had the snapshot's term.
/// - **Failure stops writes until repaired.** After an I/O error the outcome
///   of that call is unknown; the store returns errors for every later write
///   until [`repair`](Self::repair) succeeds, which brings it back to what
///   was durable before the failure (reopening does the same).
pub trait LogStore: Send + 'static {
    /// Writes each batch in order and reports one result per batch, sharing a
    /// single durability point among all that were accepted (group commit).
    ///
    /// A rejected batch gets its own error (see
    /// [`StorageError::is_rejected_batch`]), nothing of it is written, and the
    /// others are unaffected; an I/O failure is reported to every batch.
    fn write_each(&mut self, batches: &[WriteBatch]) -> Vec<Result<(), StorageError>>;

    /// Writes `batches` in order and returns once all accepted ones are
    /// durable; returns the first error if any batch failed.
    fn write(&mut self, batches: &[WriteBatch]) -> Result<(), StorageError> {
        self.write_each(batches).into_iter().collect()
    }

    /// Reads the latest durable snapshot, for sending it to a lagging follower.
    fn snapshot(&self) -> Result<Option<Snapshot>, StorageError>;

    /// After an I/O failure, returns the store to its last durable state
    /// (nothing unacknowledged kept, nothing acknowledged lost) so that it
    /// takes writes again; returns the last index its snapshot covers (0
    /// without one). Fails, and may be called again, while the disk still
    /// refuses. Does nothing on a store that has not failed.
    fn repair(&mut self) -> Result<LogIndex, StorageError>;
}
