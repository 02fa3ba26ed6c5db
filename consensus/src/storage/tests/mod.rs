//! Tests of the storage layer against real files. The contract itself is
//! checked by the [`super::conformance`] suite, run here for both stores.

mod crash;
mod disk_failure;
mod model;
mod recovery;
mod snapshot_files;
mod torn_tail;

use super::conformance::{self, StoreFactory};
use super::{FileStore, FileStoreOptions, MemDisk, MemStore, RestoredState, StorageError};
use tempfile::TempDir;

/// Opens a [`FileStore`] in a temporary directory that outlives each store.
pub(crate) struct FileFactory {
    pub(crate) dir: TempDir,
    pub(crate) options: FileStoreOptions,
}

impl FileFactory {
    pub(crate) fn new(segment_size: u64) -> FileFactory {
        FileFactory {
            dir: tempfile::tempdir().expect("a temporary directory"),
            options: FileStoreOptions {
                segment_size,
                ..FileStoreOptions::default()
            },
        }
    }
}

/// A file store (1 MiB segments) holding entries 1..=`last` of term 1,
/// still open, and its factory.
pub(crate) fn store_with_entries(last: u64) -> (FileFactory, FileStore) {
    let mut factory = FileFactory::new(1 << 20);
    let (mut store, _) = factory.open().expect("open");
    super::LogStore::write(
        &mut store,
        &[super::WriteBatch {
            entries: conformance::entries(1..=last, 1),
            ..super::WriteBatch::default()
        }],
    )
    .expect("append");
    (factory, store)
}

impl StoreFactory for FileFactory {
    type Store = FileStore;

    fn open(&mut self) -> Result<(FileStore, RestoredState), StorageError> {
        FileStore::open(self.dir.path(), self.options.clone())
    }
}

/// Polls `check` until it gives a value, for at most a minute (a bound
/// against hangs, not a timing assertion).
pub(crate) async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

struct MemFactory(MemDisk);

impl StoreFactory for MemFactory {
    type Store = MemStore;

    fn open(&mut self) -> Result<(MemStore, RestoredState), StorageError> {
        Ok(self.0.open())
    }
}

#[test]
fn memory_store_conforms() {
    conformance::run_all(|| MemFactory(MemDisk::new()));
}

#[test]
fn file_store_conforms() {
    conformance::run_all(|| FileFactory::new(FileStoreOptions::default().segment_size));
}

/// Segments so small that nearly every write starts a new one: recovery then
/// replays logs whose beginning compaction has deleted.
#[test]
fn file_store_with_tiny_segments_conforms() {
    conformance::run_all(|| FileFactory::new(64));
}

/// Only what a crash must not lose is synced: entries and new terms or votes
/// are; a hard state that only moves the commit index is written without a
/// sync (etcd's `MustSync`), and is still read back after a clean reopen.
#[test]
fn a_commit_index_alone_is_written_without_a_sync() {
    use super::conformance::entry;
    use super::{LogStore, WriteBatch};
    use crate::raft::types::{HardState, NodeId};
    let mut factory = FileFactory::new(FileStoreOptions::default().segment_size);
    let (mut store, _) = factory.open().expect("open");
    let hard_state = |term, vote, commit| HardState {
        term,
        vote: Some(NodeId(vote)),
        commit,
        incarnation: 0,
    };
    let write = |store: &mut FileStore, batch: WriteBatch| {
        let before = store.syncs();
        store.write(&[batch]).expect("write");
        store.syncs() - before
    };
    let entries = WriteBatch {
        hard_state: Some(hard_state(1, 1, 0)),
        entries: vec![entry(1, 1), entry(2, 1)],
        ..WriteBatch::default()
    };
    assert_eq!(write(&mut store, entries), 1, "entries are synced");
    let commit = WriteBatch {
        hard_state: Some(hard_state(1, 1, 2)),
        ..WriteBatch::default()
    };
    assert_eq!(write(&mut store, commit), 0, "a commit index alone is not");
    let vote = WriteBatch {
        hard_state: Some(hard_state(2, 3, 2)),
        ..WriteBatch::default()
    };
    assert_eq!(write(&mut store, vote), 1, "a new term and vote are");
    let commit = WriteBatch {
        hard_state: Some(hard_state(2, 3, 2)),
        ..WriteBatch::default()
    };
    assert_eq!(write(&mut store, commit), 0);
    drop(store);
    let (_, recovered) = factory.open().expect("reopen");
    assert_eq!(recovered.hard_state, hard_state(2, 3, 2));
    assert_eq!(recovered.entries.len(), 2);
}

/// `is_present` tells a directory with a store from one without, and
/// writes nothing while looking: a missing directory stays missing, an
/// empty one stays empty (the runtime relies on this to refuse a wiped
/// node without touching its directory).
#[test]
fn is_present_only_looks() {
    use super::{LogStore, WriteBatch};
    use crate::raft::types::HardState;
    let root = tempfile::tempdir().expect("a temporary directory");
    let missing = root.path().join("missing");
    assert!(!FileStore::is_present(&missing).expect("probe a missing directory"));
    assert!(!missing.exists(), "probing created the directory");

    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).expect("create an empty directory");
    std::fs::write(empty.join("unrelated.txt"), b"not a store").expect("write a file");
    assert!(!FileStore::is_present(&empty).expect("probe an empty directory"));
    let names = |dir: &std::path::Path| -> Vec<_> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&empty), vec!["unrelated.txt"], "probing wrote files");

    let used = root.path().join("used");
    let (mut store, _) = FileStore::open(&used, FileStoreOptions::default()).expect("open");
    store
        .write(&[WriteBatch {
            hard_state: Some(HardState {
                term: 1,
                ..HardState::default()
            }),
            ..WriteBatch::default()
        }])
        .expect("write a hard state");
    drop(store);
    assert!(FileStore::is_present(&used).expect("probe a used directory"));
}
