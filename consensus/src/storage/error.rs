//! The one error type of the storage layer.

use crate::raft::types::{LogIndex, Term};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a storage operation failed.
///
/// Three families, kept apart because callers react differently:
///
/// - **Rejected batches** ([`Hole`](Self::Hole), [`NotConsecutive`](Self::NotConsecutive),
///   [`Compacted`](Self::Compacted), [`StaleSnapshot`](Self::StaleSnapshot)): the caller
///   broke the [`LogStore`](super::LogStore) contract. Nothing of that batch was
///   written and the store stays usable; this is a bug in the caller.
/// - **I/O failures** ([`Io`](Self::Io), [`Poisoned`](Self::Poisoned)): the disk said no
///   (full disk, failed fsync, ...). The store refuses further writes until
///   [`LogStore::repair`](super::LogStore::repair) returns it to its last
///   durable state; the [`LogWriter`](super::LogWriter) holds the failed
///   group and retries it, so the node goes on without acknowledging it.
/// - **Corruption found at start** ([`Corrupt`](Self::Corrupt)): the store refuses to
///   open rather than silently lose acknowledged data.
///
/// The type is `Clone` because one failed group commit is reported to every
/// caller whose batch was part of it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// An I/O operation failed; `context` says which (with the file).
    #[error("storage I/O failed: {context}: {source}")]
    Io {
        /// What was being done, for the operator.
        context: String,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },
    /// A previous I/O failure left the on-disk state uncertain, so the store
    /// takes no more writes until it is repaired (or reopened): both keep
    /// everything that was acknowledged.
    #[error("storage takes no writes after an earlier I/O failure ({0}) until it is repaired")]
    Poisoned(String),
    /// Durable data is damaged somewhere other than a torn tail; refusing to
    /// start is the only way not to lose acknowledged entries silently.
    #[error("storage is corrupt at {path}, offset {offset}: {reason}; refusing to start (restore this node from a peer or a backup)")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the first damaged record.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// The batch's first entry would leave a gap after the last stored entry.
    #[error("append would leave a hole: next index is {expected}, batch starts at {found}")]
    Hole {
        /// The index that may come next (last index + 1).
        expected: LogIndex,
        /// The first index of the rejected batch.
        found: LogIndex,
    },
    /// Entries inside one batch do not have consecutive indexes.
    #[error(
        "entries of one batch must have consecutive indexes: {previous} is followed by {next}"
    )]
    NotConsecutive {
        /// Index of an entry of the batch.
        previous: LogIndex,
        /// Index of the entry after it.
        next: LogIndex,
    },
    /// The batch would overwrite an entry already covered by the snapshot.
    #[error("entry {index} is already compacted into the snapshot at {snapshot_index}")]
    Compacted {
        /// The rejected entry index.
        index: LogIndex,
        /// The index the current snapshot covers.
        snapshot_index: LogIndex,
    },
    /// The snapshot is not newer than the one already stored.
    #[error(
        "snapshot at {index} (term {term}) is not newer than the stored snapshot at {current}"
    )]
    StaleSnapshot {
        /// Last index of the rejected snapshot.
        index: LogIndex,
        /// Last term of the rejected snapshot.
        term: Term,
        /// Last index of the stored snapshot.
        current: LogIndex,
    },
    /// A record could not be encoded (should not happen for our own types).
    #[error("could not encode a storage record: {0}")]
    Encode(#[from] postcard::Error),
    /// A single record (an entry, usually) exceeds the size limit of the log.
    #[error("a log record of {0} bytes exceeds the limit")]
    RecordTooLarge(usize),
    /// The group-commit writer thread has stopped, so nothing more can be written.
    #[error("the storage writer has stopped")]
    WriterStopped,
}

impl StorageError {
    /// Wraps an I/O error with a description of what was being done.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        StorageError::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// True when the failure is a full disk (`ENOSPC`) or exceeded quota, so a
    /// caller can tell the operator to free space instead of suspecting a bug.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(code) if code == libc::ENOSPC || code == libc::EDQUOT
            ),
            _ => false,
        }
    }

    /// True when the batch broke the store's contract; nothing was written and
    /// the store is still usable.
    pub fn is_rejected_batch(&self) -> bool {
        matches!(
            self,
            StorageError::Hole { .. }
                | StorageError::NotConsecutive { .. }
                | StorageError::Compacted { .. }
                | StorageError::StaleSnapshot { .. }
                | StorageError::RecordTooLarge(_)
        )
    }
}
