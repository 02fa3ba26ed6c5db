//! Start-up recovery of a [`super::FileStore`] directory.
//!
//! Rules (see also `docs/storage.md`):
//!
//! - The newest snapshot file must verify; otherwise the store refuses to
//!   start. Leftover temporary snapshot files are removed.
//! - Segments are replayed in order. In the **last** segment, the first
//!   invalid record (torn write: short header, bad length, short payload, bad
//!   checksum, garbage) and everything after it are cut off with a warning;
//!   those bytes were never acknowledged. In any **other** segment an invalid
//!   record is corruption of acknowledged data, and opening fails.
//! - Replay rebuilds the log exactly as [`super::tail::Tail`] did when it was
//!   written, starting from whatever older segments compaction removed.

use super::record::Record;
use super::segment::{self, Scan};
use super::tail::Tail;
use super::{snapshot_file, Snapshot, StorageError};
use crate::raft::types::{Entry, HardState, LogIndex, SnapshotMeta, Term};
use std::path::{Path, PathBuf};

/// One segment that survived recovery.
#[derive(Debug)]
pub(crate) struct SegmentInfo {
    /// Its sequence number.
    pub(crate) sequence: u64,
    /// Its file.
    pub(crate) path: PathBuf,
    /// The highest entry index recorded in it (0 if none): once a snapshot
    /// covers it, the segment may be deleted.
    pub(crate) max_entry_index: LogIndex,
    /// Its valid length in bytes.
    pub(crate) len: u64,
}

/// Everything recovered from a directory.
pub(crate) struct RecoveredFiles {
    pub(crate) hard_state: HardState,
    pub(crate) snapshot: Option<(Snapshot, PathBuf)>,
    pub(crate) log: Tail<Entry>,
    pub(crate) segments: Vec<SegmentInfo>,
}

/// Rebuilds the log from records, as [`Tail`] did when they were written.
///
/// Compaction may have deleted the oldest segments. Their entries are all
/// covered by the newest snapshot, but until a snapshot record that discarded
/// the log fixes the base, the log before the first entry seen is unknown
/// (`base_known == false`): an entry may then start the log anywhere, and
/// [`finish`](Self::finish) compacts to the newest snapshot, which covers
/// every position that was unknown.
#[derive(Default)]
pub(crate) struct Replay {
    hard_state: HardState,
    log: Tail<Entry>,
    base_known: bool,
}

impl Replay {
    /// Applies one record in log order; refuses records that cannot follow
    /// what was replayed so far.
    pub(crate) fn apply(&mut self, record: Record) -> Result<(), String> {
        match record {
            Record::HardState(hard_state) => self.hard_state = hard_state,
            Record::Entry(entry) => self.entry(entry)?,
            Record::Snapshot {
                index,
                term,
                kept_suffix,
            } => self.snapshot(index, term, kept_suffix)?,
        }
        Ok(())
    }

    fn snapshot(&mut self, index: LogIndex, term: Term, kept_suffix: bool) -> Result<(), String> {
        let base = self.log.base_index;
        if self.base_known && index <= base {
            return Err(format!("snapshot record at {index} after one at {base}"));
        }
        if !kept_suffix {
            // Everything goes; what follows starts right after the snapshot.
            self.log.items.clear();
            self.log.base_index = index;
            self.log.base_term = term;
            self.base_known = true;
        } else if index >= base {
            if !self.log.items.is_empty() && index > self.log.last_index() {
                return Err(format!(
                    "snapshot record at {index} keeps entries after it, but the log ends at {}",
                    self.log.last_index()
                ));
            }
            let covered = usize::try_from(index - base).unwrap_or(usize::MAX);
            self.log.items.drain(..covered.min(self.log.items.len()));
            self.log.base_index = index;
            self.log.base_term = term;
        }
        // A kept suffix after an index below the first entry seen (its entry
        // is in a deleted segment) leaves every entry seen in place.
        Ok(())
    }

    fn entry(&mut self, entry: Entry) -> Result<(), String> {
        let index = entry.index;
        if index <= self.log.base_index || (self.log.items.is_empty() && !self.base_known) {
            if self.base_known {
                return Err(format!(
                    "entry {index} at or below the snapshot at {}",
                    self.log.base_index
                ));
            }
            self.log.items.clear();
            self.log.base_index = index.saturating_sub(1);
        } else if index > self.log.last_index() + 1 {
            return Err(format!(
                "entry {index} leaves a hole after {}",
                self.log.last_index()
            ));
        }
        self.log.put(index, entry);
        Ok(())
    }

    /// Reconciles the replayed log with the newest snapshot file.
    pub(crate) fn finish(
        mut self,
        snapshot: Option<&SnapshotMeta>,
    ) -> Result<(HardState, Tail<Entry>), String> {
        let base = self.log.base_index;
        match snapshot {
            None if base > 0 => {
                return Err(format!(
                    "the log starts at {} but there is no snapshot before it",
                    base + 1
                ))
            }
            None => {}
            Some(meta) if base == meta.last_index => self.log.base_term = meta.last_term,
            Some(meta) if base < meta.last_index => {
                self.log.compact(meta.last_index, meta.last_term)
            }
            Some(meta) => {
                return Err(format!(
                    "the log starts after {base} but the newest snapshot ends at {}",
                    meta.last_index
                ))
            }
        }
        Ok((self.hard_state, self.log))
    }
}

/// Opens (creating if needed) `dir` and recovers its durable state.
pub(crate) fn recover(dir: &Path) -> Result<RecoveredFiles, StorageError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, segment::DIR_MODE);
    builder
        .create(dir)
        .map_err(|error| StorageError::io(format!("creating {}", dir.display()), error))?;
    let snapshot_file::Listing {
        snapshots,
        leftovers,
    } = snapshot_file::list(dir)?;
    for leftover in leftovers {
        remove(&leftover)?;
    }
    for leftover in segment::rewrite_leftovers(dir)? {
        remove(&leftover)?;
    }
    let snapshot = match snapshots.last() {
        Some((_, path)) => Some((snapshot_file::read(path)?, path.clone())),
        None => None,
    };
    let mut replay = Replay::default();
    let listed = segment::list(dir)?;
    let mut segments = Vec::new();
    for (position, (sequence, path)) in listed.iter().enumerate() {
        let is_last = position + 1 == listed.len();
        let info = replay_segment(&mut replay, *sequence, path, is_last)?;
        match info {
            Some(info) => segments.push(info),
            None => remove(path)?,
        }
    }
    segment::sync_dir(dir)?;
    let (hard_state, log) = replay
        .finish(snapshot.as_ref().map(|(snapshot, _)| &snapshot.meta))
        .map_err(|reason| StorageError::Corrupt {
            path: dir.to_path_buf(),
            offset: 0,
            reason,
        })?;
    Ok(RecoveredFiles {
        hard_state,
        snapshot,
        log,
        segments,
    })
}

/// Replays one segment; cuts a torn tail off the last one. Returns `None` for
/// a last segment without a single valid record, which the caller removes.
fn replay_segment(
    replay: &mut Replay,
    sequence: u64,
    path: &Path,
    is_last: bool,
) -> Result<Option<SegmentInfo>, StorageError> {
    let bytes = std::fs::read(path)
        .map_err(|error| StorageError::io(format!("reading {}", path.display()), error))?;
    let mut max_entry_index = 0;
    let mut records = 0usize;
    let scan = segment::scan(&bytes, |record| {
        if let Record::Entry(entry) = &record {
            max_entry_index = max_entry_index.max(entry.index);
        }
        records += 1;
        replay.apply(record)
    })
    .map_err(|(offset, reason)| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    })?;
    let Scan {
        valid_len,
        damage,
        valid_after,
    } = scan;
    if let Some((offset, reason)) = damage {
        if let Some(next) = valid_after {
            return Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                offset,
                reason: format!(
                    "{reason}, but a valid record follows at offset {next}: damage inside the log, not a torn tail"
                ),
            });
        }
        if !is_last {
            return Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                offset,
                reason: format!("{reason} in a segment that is not the last one"),
            });
        }
        tracing::warn!(
            path = %path.display(),
            offset,
            reason,
            dropped_bytes = bytes.len() as u64 - valid_len,
            "cutting a torn or corrupt tail off the write-ahead log"
        );
        segment::truncate(path, valid_len)?;
    }
    if records == 0 {
        return if is_last {
            Ok(None)
        } else {
            Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                offset: 0,
                reason: "segment without records that is not the last one".into(),
            })
        };
    }
    Ok(Some(SegmentInfo {
        sequence,
        path: path.to_path_buf(),
        max_entry_index,
        len: valid_len,
    }))
}

fn remove(path: &Path) -> Result<(), StorageError> {
    std::fs::remove_file(path)
        .map_err(|error| StorageError::io(format!("removing {}", path.display()), error))
}
