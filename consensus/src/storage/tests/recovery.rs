//! Crashes between the steps of a multi-step write leave a directory that
//! recovery turns into a state some prefix of the writes would have left.

use super::{store_with_entries, FileFactory};
use crate::raft::types::SnapshotMeta;
use crate::storage::conformance::{entries, StoreFactory};
use crate::storage::{snapshot_file, LogStore, Snapshot, WriteBatch};

fn snapshot(last_index: u64, last_term: u64) -> Snapshot {
    Snapshot {
        meta: SnapshotMeta {
            last_index,
            last_term,
            membership: Default::default(),
        },
        data: vec![7; 32].into(),
    }
}

/// Writes entries 1..=6 of term 1, then a snapshot file as a crash right
/// after its rename (before its WAL record was synced) would leave it.
fn crashed_after_snapshot_rename(snapshot: &Snapshot) -> FileFactory {
    let (factory, store) = store_with_entries(6);
    drop(store);
    snapshot_file::write(factory.dir.path(), snapshot).expect("snapshot file");
    factory
}

#[test]
fn a_snapshot_whose_log_record_was_lost_still_compacts_the_log() {
    let mut factory = crashed_after_snapshot_rename(&snapshot(4, 1));
    let (mut store, recovered) = factory.open().expect("recover");
    assert_eq!(recovered.snapshot, Some(snapshot(4, 1)));
    assert_eq!(recovered.entries, entries(5..=6, 1));
    store
        .write(&[WriteBatch {
            entries: entries(7..=7, 1),
            ..WriteBatch::default()
        }])
        .expect("append after recovery");
    drop(store);
    let (_, recovered) = factory.open().expect("reopen");
    assert_eq!(recovered.entries, entries(5..=7, 1));
}

#[test]
fn a_lost_record_of_a_mismatched_snapshot_still_discards_the_log() {
    let mut factory = crashed_after_snapshot_rename(&snapshot(4, 3));
    let (_, recovered) = factory.open().expect("recover");
    assert_eq!(recovered.snapshot, Some(snapshot(4, 3)));
    assert!(recovered.entries.is_empty());
}

#[test]
fn a_segment_torn_while_being_created_is_removed() {
    let (mut factory, store) = store_with_entries(3);
    drop(store);
    let torn = factory.dir.path().join("00000000000000000002.wal");
    std::fs::write(&torn, b"RAFTW").expect("torn segment");
    let (mut store, recovered) = factory.open().expect("recover");
    assert_eq!(recovered.entries, entries(1..=3, 1));
    assert!(!torn.exists());
    store
        .write(&[WriteBatch {
            entries: entries(4..=4, 1),
            ..WriteBatch::default()
        }])
        .expect("append after recovery");
    drop(store);
    assert_eq!(factory.open().expect("reopen").1.entries, entries(1..=4, 1));
}

#[test]
fn a_half_written_snapshot_is_ignored_and_removed() {
    let mut factory = FileFactory::new(1 << 20);
    let (store, _) = factory.open().expect("open");
    drop(store);
    let temp = factory
        .dir
        .path()
        .join("snapshot-00000000000000000009-00000000000000000001.snap.tmp");
    std::fs::write(&temp, b"RAFTSNP1 half").expect("temp file");
    let (_, recovered) = factory.open().expect("recover");
    assert_eq!(recovered.snapshot, None);
    assert!(!temp.exists());
}
