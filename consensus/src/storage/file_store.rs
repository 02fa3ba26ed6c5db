//! [`FileStore`]: the durable [`LogStore`] on append-only segment files.

use super::record::{self, RecordRef};
use super::recovery::{self, SegmentInfo};
use super::tail::Tail;
use super::{segment, snapshot_file, LogStore, RestoredState, Snapshot, StorageError, WriteBatch};
use crate::raft::types::{HardState, LogIndex, NodeId, Term};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Tuning of a [`FileStore`].
#[derive(Clone, Debug)]
pub struct FileStoreOptions {
    /// A new segment is started once the current one reaches this many bytes.
    /// Smaller segments let compaction free space sooner; larger ones mean
    /// fewer files. Default: 64 MiB.
    pub segment_size: u64,
    /// Where each `fdatasync` of the log records how long it took (the
    /// node's `vault_wal_fsync_seconds`); none in tests and tools.
    pub fsync_latency: Option<crate::metrics::LatencyHistogram>,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions {
            segment_size: 64 << 20,
            fsync_latency: None,
        }
    }
}

/// Durable Raft state in one directory: a write-ahead log of checksummed
/// records in segment files (entries, hard states and snapshot marks
/// interleaved, so one `fdatasync` covers a whole batch) plus the newest
/// snapshot in its own file. See `docs/storage.md` for the format.
///
/// One `FileStore` per directory: the store itself takes no lock; the
/// application holds one on its data directory for the node's life
/// (`vault-cli node run` refuses a second process).
pub struct FileStore {
    dir: PathBuf,
    options: FileStoreOptions,
    hard_state: HardState,
    /// Terms of the stored entries, for checking batches and compacting.
    log: Tail<Term>,
    /// Surviving segments in order; the last one is being appended to.
    segments: Vec<SegmentInfo>,
    /// The last segment, opened for appending.
    active: File,
    /// The newest snapshot file, if any.
    snapshot_path: Option<PathBuf>,
    /// Set after an I/O failure: what is durable is then unknown, so further
    /// writes are refused until the store is reopened.
    poisoned: Option<String>,
    /// Encoded records of the group being written; kept to reuse its memory.
    buffer: Vec<u8>,
    /// Term and vote of the newest hard state that was synced: a group that
    /// changes neither (nor adds entries or a snapshot) needs no sync.
    synced_vote: (Term, Option<NodeId>),
    /// How many times the active segment was synced, for tests.
    syncs: u64,
    /// The durability point: the segment (by sequence number) and its length
    /// as of the last successful sync. [`FileStore::repair`] goes back to it.
    synced: (u64, u64),
    /// Whether an `fdatasync` of the active segment failed: its page cache
    /// can then no longer be trusted, so repair rewrites the durable prefix
    /// into a new file instead of syncing that one again (fsyncgate).
    sync_failed: bool,
    /// A failure to inject into the next append or sync, for tests.
    #[cfg(test)]
    pub(crate) inject: Option<InjectedFault>,
}

/// A failure [`FileStore`] tests make the next write suffer.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InjectedFault {
    /// The next append writes half its bytes, then fails with `ENOSPC`.
    AppendDiskFull,
    /// The next `fdatasync` fails with `EIO` (after the bytes were written).
    SyncFails,
}

impl FileStore {
    /// Opens the store in `dir` (created if missing), recovering its durable
    /// state: a torn tail of the last segment is cut off with a warning,
    /// other damage is a [`StorageError::Corrupt`] error.
    pub fn open(
        dir: impl AsRef<Path>,
        options: FileStoreOptions,
    ) -> Result<(FileStore, RestoredState), StorageError> {
        let dir = dir.as_ref().to_path_buf();
        let recovered = recovery::recover(&dir)?;
        FileStore::from_recovered(dir, options, recovered)
    }

    /// The store over what recovery found.
    fn from_recovered(
        dir: PathBuf,
        options: FileStoreOptions,
        recovered: recovery::RecoveredFiles,
    ) -> Result<(FileStore, RestoredState), StorageError> {
        let mut segments = recovered.segments;
        let active = open_active(&dir, &mut segments, &recovered.hard_state)?;
        let log = Tail {
            base_index: recovered.log.base_index,
            base_term: recovered.log.base_term,
            items: recovered.log.items.iter().map(|entry| entry.term).collect(),
        };
        let (snapshot, snapshot_path) = match recovered.snapshot {
            Some((snapshot, path)) => (Some(snapshot), Some(path)),
            None => (None, None),
        };
        let synced = segments
            .last()
            .map_or((0, 0), |active| (active.sequence, active.len));
        let mut store = FileStore {
            dir,
            options,
            hard_state: recovered.hard_state,
            log,
            segments,
            active,
            snapshot_path,
            poisoned: None,
            buffer: Vec::new(),
            synced_vote: (recovered.hard_state.term, recovered.hard_state.vote),
            syncs: 0,
            synced,
            sync_failed: false,
            #[cfg(test)]
            inject: None,
        };
        store.remove_obsolete_files();
        let recovered = RestoredState {
            hard_state: recovered.hard_state,
            snapshot,
            entries: recovered.log.items.into(),
        };
        Ok((store, recovered))
    }

    /// Whether `dir` holds a store: a log segment or a snapshot file. Reads
    /// only: unlike [`FileStore::open`] it creates, removes and truncates
    /// nothing, so a caller can decide whether to open `dir` at all. A
    /// missing directory holds no store.
    pub fn is_present(dir: impl AsRef<Path>) -> Result<bool, StorageError> {
        let dir = dir.as_ref();
        match std::fs::metadata(dir) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(error) => {
                return Err(StorageError::io(
                    format!("reading {}", dir.display()),
                    error,
                ))
            }
            Ok(_) => {}
        }
        Ok(!segment::list(dir)?.is_empty() || !snapshot_file::list(dir)?.snapshots.is_empty())
    }

    /// The directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the group, or fails as a whole on an I/O error.
    fn write_group(
        &mut self,
        batches: &[WriteBatch],
    ) -> Result<Vec<Result<(), StorageError>>, StorageError> {
        if self.segments.last().map_or(0, |active| active.len) >= self.options.segment_size {
            self.cut()?;
        }
        self.buffer.clear();
        let mut results = Vec::with_capacity(batches.len());
        let mut saved_snapshot = false;
        let mut must_sync = false;
        for batch in batches {
            let start = self.buffer.len();
            if let Err(rejection) = self.check_and_encode(batch) {
                self.buffer.truncate(start);
                results.push(Err(rejection));
                continue;
            }
            if let Some(snapshot) = &batch.snapshot {
                // Earlier batches become durable first, so that a crash never
                // keeps the snapshot but loses what was ordered before it.
                self.flush(start)?;
                self.snapshot_path = Some(snapshot_file::save(
                    &self.dir,
                    snapshot,
                    batch.staged_snapshot.as_ref(),
                )?);
                saved_snapshot = true;
            }
            must_sync |= self.must_sync(batch);
            self.apply(batch);
            results.push(Ok(()));
        }
        if must_sync {
            self.flush(self.buffer.len())?;
            self.synced_vote = (self.hard_state.term, self.hard_state.vote);
        } else {
            self.append(self.buffer.len())?;
        }
        if saved_snapshot {
            self.remove_obsolete_files();
        }
        Ok(results)
    }

    /// Whether `batch` promises anything a crash must not lose: entries, a
    /// snapshot, or a new term or vote. A commit index alone does not (see
    /// the durability rule on [`LogStore`]).
    fn must_sync(&self, batch: &WriteBatch) -> bool {
        !batch.entries.is_empty()
            || batch.snapshot.is_some()
            || batch
                .hard_state
                .is_some_and(|hard_state| (hard_state.term, hard_state.vote) != self.synced_vote)
    }

    fn check_and_encode(&mut self, batch: &WriteBatch) -> Result<(), StorageError> {
        let snapshot = batch
            .snapshot
            .as_ref()
            .map(|snapshot| (snapshot.meta.last_index, snapshot.meta.last_term));
        self.log
            .check_batch(snapshot, batch.entries.iter().map(|entry| entry.index))?;
        if let Some((index, term)) = snapshot {
            let kept_suffix = self.log.keeps_suffix(index, term);
            let mark = RecordRef::Snapshot {
                index,
                term,
                kept_suffix,
            };
            record::encode(&mark, &mut self.buffer)?;
        }
        for entry in &batch.entries {
            record::encode(&RecordRef::Entry(entry), &mut self.buffer)?;
        }
        if let Some(hard_state) = &batch.hard_state {
            record::encode(&RecordRef::HardState(hard_state), &mut self.buffer)?;
        }
        Ok(())
    }

    /// Updates the in-memory view; the batch was checked.
    fn apply(&mut self, batch: &WriteBatch) {
        if let Some(snapshot) = &batch.snapshot {
            self.log
                .compact(snapshot.meta.last_index, snapshot.meta.last_term);
        }
        for entry in &batch.entries {
            self.log.put(entry.index, entry.term);
        }
        if let Some(active) = self.segments.last_mut() {
            let batch_max = batch.entries.last().map_or(0, |entry| entry.index);
            active.max_entry_index = active.max_entry_index.max(batch_max);
        }
        if let Some(hard_state) = batch.hard_state {
            self.hard_state = hard_state;
        }
    }

    /// Appends the first `len` buffered bytes to the active segment and waits
    /// for `fdatasync`: the durability point of everything before it
    /// (including earlier groups that were only appended).
    fn flush(&mut self, len: usize) -> Result<(), StorageError> {
        if len == 0 {
            return Ok(());
        }
        self.append(len)?;
        let Some((sequence, len)) = self
            .segments
            .last()
            .map(|active| (active.sequence, active.len))
        else {
            return Ok(()); // never taken: `open` guarantees an active segment
        };
        self.syncs += 1;
        if let Err(error) = self.sync_active() {
            self.sync_failed = true;
            let path = self.dir.join(segment::file_name(sequence));
            return Err(StorageError::io(
                format!("fdatasync of {}", path.display()),
                error,
            ));
        }
        self.synced = (sequence, len);
        Ok(())
    }

    fn sync_active(&mut self) -> std::io::Result<()> {
        #[cfg(test)]
        if self.inject == Some(InjectedFault::SyncFails) {
            self.inject = None;
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        let started = std::time::Instant::now();
        let synced = self.active.sync_data();
        if let Some(latency) = &self.options.fsync_latency {
            latency.observe(started.elapsed());
        }
        synced
    }

    /// Brings the store back to its durability point after a failed write,
    /// so that it takes writes again; returns the index its snapshot covers
    /// (batches retried after a repair may be partly covered by it).
    ///
    /// Everything after the last successful sync is dropped: it was never
    /// acknowledged. Segments started since are removed. The active
    /// segment is cut back to its synced length, except after a failed
    /// `fdatasync`: then the kernel may have dropped pages it still shows
    /// as written, and a later sync of the same file could report success
    /// for data that is not on disk, so the durable prefix is copied into
    /// a new file that replaces it (written, synced, renamed, directory
    /// synced) and the old file is never synced again. The in-memory view
    /// is then rebuilt from the files, as at open. A repair that fails
    /// (the disk is still full) leaves the store refusing writes; it may be
    /// tried again.
    pub fn repair(&mut self) -> Result<LogIndex, StorageError> {
        if self.poisoned.is_none() {
            return Ok(self.log.base_index);
        }
        let (sequence, len) = self.synced;
        for (later, path) in segment::list(&self.dir)? {
            if later > sequence {
                std::fs::remove_file(&path).map_err(|error| {
                    StorageError::io(format!("removing {}", path.display()), error)
                })?;
            }
        }
        if self.sync_failed {
            segment::rewrite_prefix(&self.dir, sequence, len)?;
        } else {
            segment::truncate(&self.dir.join(segment::file_name(sequence)), len)?;
        }
        let recovered = recovery::recover(&self.dir)?;
        let (store, _) =
            FileStore::from_recovered(self.dir.clone(), self.options.clone(), recovered)?;
        *self = store;
        tracing::info!(
            dir = %self.dir.display(),
            "the Raft log was repaired to its last durable state and takes writes again"
        );
        Ok(self.log.base_index)
    }

    /// How many times the active segment was synced since opening.
    #[cfg(test)]
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Appends the first `len` buffered bytes to the active segment, without
    /// waiting for the disk.
    fn append(&mut self, len: usize) -> Result<(), StorageError> {
        if len == 0 {
            return Ok(());
        }
        let Some(active) = self.segments.last_mut() else {
            return Ok(()); // never taken: `open` guarantees an active segment
        };
        #[cfg(test)]
        if self.inject == Some(InjectedFault::AppendDiskFull) {
            self.inject = None;
            let _ = self.active.write_all(&self.buffer[..len / 2]);
            return Err(StorageError::io(
                format!("appending to {}", active.path.display()),
                std::io::Error::from_raw_os_error(libc::ENOSPC),
            ));
        }
        self.active
            .write_all(&self.buffer[..len])
            .map_err(|error| {
                StorageError::io(format!("appending to {}", active.path.display()), error)
            })?;
        active.len += len as u64;
        self.buffer.drain(..len);
        Ok(())
    }

    /// Starts a new segment headed by the current (durable) hard state.
    fn cut(&mut self) -> Result<(), StorageError> {
        let sequence = self.segments.last().map_or(1, |active| active.sequence + 1);
        let (file, len) = segment::create(&self.dir, sequence, &self.hard_state)?;
        self.segments.push(SegmentInfo {
            sequence,
            path: self.dir.join(segment::file_name(sequence)),
            max_entry_index: 0,
            len,
        });
        self.active = file;
        // `create` synced the new segment and the directory.
        self.synced = (sequence, len);
        Ok(())
    }

    /// Removes segments the snapshot covers entirely and older snapshots.
    /// Failing to remove only wastes space, so it is a warning, not an error.
    fn remove_obsolete_files(&mut self) {
        let base = self.log.base_index;
        let keep_from = self.segments[..self.segments.len().saturating_sub(1)]
            .iter()
            .take_while(|segment| segment.max_entry_index <= base)
            .count();
        for segment in self.segments.drain(..keep_from) {
            if let Err(error) = std::fs::remove_file(&segment.path) {
                tracing::warn!(path = %segment.path.display(), %error, "could not remove a compacted segment");
            }
        }
        match snapshot_file::list(&self.dir) {
            Ok(listing) => {
                for (_, path) in listing.snapshots {
                    if Some(&path) != self.snapshot_path.as_ref() {
                        if let Err(error) = std::fs::remove_file(&path) {
                            tracing::warn!(path = %path.display(), %error, "could not remove an old snapshot");
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "could not list old snapshots"),
        }
        if let Err(error) = segment::sync_dir(&self.dir) {
            tracing::warn!(%error, "could not sync the directory after removing old files");
        }
    }
}

/// Opens the last segment for appending, or creates the first one in an
/// empty directory.
fn open_active(
    dir: &Path,
    segments: &mut Vec<SegmentInfo>,
    hard_state: &HardState,
) -> Result<File, StorageError> {
    if let Some(active) = segments.last() {
        return OpenOptions::new()
            .append(true)
            .open(&active.path)
            .map_err(|error| {
                StorageError::io(format!("opening {}", active.path.display()), error)
            });
    }
    let (file, len) = segment::create(dir, 1, hard_state)?;
    segments.push(SegmentInfo {
        sequence: 1,
        path: dir.join(segment::file_name(1)),
        max_entry_index: 0,
        len,
    });
    Ok(file)
}

impl LogStore for FileStore {
    /// Returns after `fdatasync` of the active segment (and, for a snapshot,
    /// `fsync` of its file and of the directory).
    fn write_each(&mut self, batches: &[WriteBatch]) -> Vec<Result<(), StorageError>> {
        if let Some(reason) = &self.poisoned {
            return batches
                .iter()
                .map(|_| Err(StorageError::Poisoned(reason.clone())))
                .collect();
        }
        match self.write_group(batches) {
            Ok(results) => results,
            Err(error) => {
                tracing::error!(%error, "log write failed; the store refuses writes until repaired");
                self.poisoned = Some(error.to_string());
                batches.iter().map(|_| Err(error.clone())).collect()
            }
        }
    }

    fn repair(&mut self) -> Result<LogIndex, StorageError> {
        FileStore::repair(self)
    }

    /// The snapshot file is mapped, not read: it was verified at open or
    /// written by this store (see [`snapshot_file::map`]).
    fn snapshot(&self) -> Result<Option<Snapshot>, StorageError> {
        self.snapshot_path
            .as_deref()
            .map(snapshot_file::map)
            .transpose()
    }
}
