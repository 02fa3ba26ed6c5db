//! A damaged log tail is cut, never applied; damage elsewhere stops start-up.

use super::FileFactory;
use crate::raft::types::SnapshotMeta;
use crate::storage::conformance::{entries, entry, StoreFactory};
use crate::storage::{FileStore, LogStore, Snapshot, StorageError, WriteBatch};
use std::path::{Path, PathBuf};

const RECORDS: u64 = 5;

fn append(store: &mut FileStore, batch_entries: Vec<crate::raft::types::Entry>) {
    store
        .write(&[WriteBatch {
            entries: batch_entries,
            ..WriteBatch::default()
        }])
        .expect("append");
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    files.sort();
    files
}

/// Writes entries 1..=RECORDS one record each; returns the segment's bytes
/// and the offset where the last record starts.
fn written_log() -> (Vec<u8>, usize) {
    let mut factory = FileFactory::new(1 << 20);
    let (mut store, _) = factory.open().expect("open");
    append(&mut store, entries(1..=RECORDS - 1, 1));
    let segment = segment_files(factory.dir.path()).remove(0);
    let last_start = std::fs::metadata(&segment).expect("metadata").len() as usize;
    append(&mut store, entries(RECORDS..=RECORDS, 1));
    drop(store);
    (std::fs::read(&segment).expect("read"), last_start)
}

/// Reopens a directory whose only segment holds `bytes`, checks that exactly
/// the entries before the damaged last record survive, then that appending
/// after them works and survives another restart.
fn check_recovers_prefix(bytes: &[u8], what: &str) {
    let mut factory = FileFactory::new(1 << 20);
    std::fs::write(factory.dir.path().join("00000000000000000001.wal"), bytes).expect("write");
    let (mut store, recovered) = factory
        .open()
        .unwrap_or_else(|error| panic!("{what}: open failed: {error}"));
    assert_eq!(recovered.entries, entries(1..=RECORDS - 1, 1), "{what}");
    append(&mut store, vec![entry(RECORDS, 2)]);
    drop(store);
    let (_, recovered) = factory.open().expect("reopen");
    let mut expected = entries(1..=RECORDS - 1, 1);
    expected.push(entry(RECORDS, 2));
    assert_eq!(recovered.entries, expected, "{what}, after appending");
}

#[test]
fn a_log_cut_anywhere_in_its_last_record_keeps_exactly_the_records_before() {
    let (bytes, last_start) = written_log();
    for cut in last_start..bytes.len() {
        check_recovers_prefix(&bytes[..cut], &format!("cut at {cut}"));
    }
}

#[test]
fn a_flipped_byte_anywhere_in_the_last_record_is_detected_and_cut() {
    let (bytes, last_start) = written_log();
    for offset in last_start..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[offset] ^= 0xff;
        check_recovers_prefix(&damaged, &format!("byte {offset} flipped"));
    }
}

#[test]
fn garbage_after_the_last_record_is_cut() {
    let (mut bytes, _) = written_log();
    let clean_len = bytes.len();
    bytes.extend_from_slice(&[0; 100]);
    let mut factory = FileFactory::new(1 << 20);
    let path = factory.dir.path().join("00000000000000000001.wal");
    std::fs::write(&path, &bytes).expect("write");
    let (_, recovered) = factory.open().expect("open");
    assert_eq!(recovered.entries, entries(1..=RECORDS, 1));
    assert_eq!(
        std::fs::metadata(&path).expect("metadata").len() as usize,
        clean_len
    );
}

#[test]
fn damage_in_an_earlier_segment_refuses_to_start() {
    let mut factory = FileFactory::new(64);
    let (mut store, _) = factory.open().expect("open");
    for index in 1..=6 {
        append(&mut store, vec![entry(index, 1)]);
    }
    drop(store);
    let segments = segment_files(factory.dir.path());
    assert!(segments.len() >= 3, "tiny segments: {segments:?}");
    let mut bytes = std::fs::read(&segments[1]).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&segments[1], &bytes).expect("write");
    match factory.open() {
        Err(StorageError::Corrupt { path, .. }) => assert_eq!(path, segments[1]),
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("a corrupt middle segment was accepted"),
    }
}

#[test]
fn a_damaged_snapshot_refuses_to_start() {
    let mut factory = FileFactory::new(1 << 20);
    let (mut store, _) = factory.open().expect("open");
    append(&mut store, entries(1..=3, 1));
    let snapshot = Snapshot {
        meta: SnapshotMeta {
            last_index: 2,
            last_term: 1,
            membership: Default::default(),
        },
        data: vec![9; 100].into(),
    };
    store
        .write(&[WriteBatch {
            snapshot: Some(snapshot),
            ..WriteBatch::default()
        }])
        .expect("snapshot");
    drop(store);
    let path = std::fs::read_dir(factory.dir.path())
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .find(|path| path.extension().is_some_and(|ext| ext == "snap"))
        .expect("a snapshot file");
    let mut bytes = std::fs::read(&path).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&path, &bytes).expect("write");
    assert!(matches!(
        factory.open().err(),
        Some(StorageError::Corrupt { .. })
    ));
}

#[test]
fn a_snapshot_removes_the_segments_and_snapshots_it_covers() {
    let mut factory = FileFactory::new(64);
    let (mut store, _) = factory.open().expect("open");
    for index in 1..=10 {
        append(&mut store, vec![entry(index, 1)]);
    }
    let before = segment_files(factory.dir.path());
    for last_index in [4, 8] {
        store
            .write(&[WriteBatch {
                snapshot: Some(Snapshot {
                    meta: SnapshotMeta {
                        last_index,
                        last_term: 1,
                        membership: Default::default(),
                    },
                    data: vec![1; 10].into(),
                }),
                ..WriteBatch::default()
            }])
            .expect("snapshot");
    }
    let after = segment_files(factory.dir.path());
    assert!(after.len() < before.len(), "{before:?} -> {after:?}");
    let snapshots = std::fs::read_dir(factory.dir.path())
        .expect("list")
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|entry| entry.path().extension().is_some_and(|ext| ext == "snap"))
        })
        .count();
    assert_eq!(snapshots, 1);
    drop(store);
    let (_, recovered) = factory.open().expect("reopen");
    assert_eq!(recovered.entries, entries(9..=10, 1));
    assert_eq!(recovered.snapshot.map(|s| s.meta.last_index), Some(8));
}

/// Offsets where each record of `bytes` (a segment) starts.
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut offset = crate::storage::segment::MAGIC.len();
    while let crate::storage::record::Decoded::Record { len, .. } =
        crate::storage::record::decode(&bytes[offset..])
    {
        starts.push(offset);
        offset += len;
    }
    starts
}

/// Damage before the last valid record of the last segment is not a torn
/// tail: valid records follow it, so cutting would drop acknowledged entries.
/// Opening refuses and names the file and the offset of the damaged record.
#[test]
fn damage_before_the_last_record_of_the_last_segment_refuses_to_start() {
    let (bytes, last_start) = written_log();
    let starts = record_starts(&bytes);
    for offset in 0..last_start {
        let mut damaged = bytes.clone();
        damaged[offset] ^= 0x5a;
        let mut factory = FileFactory::new(1 << 20);
        let path = factory.dir.path().join("00000000000000000001.wal");
        std::fs::write(&path, &damaged).expect("write");
        let expected_offset = starts
            .iter()
            .rev()
            .find(|&&start| start <= offset)
            .map_or(0, |&start| start as u64);
        match factory.open() {
            Err(StorageError::Corrupt {
                path: found,
                offset: found_offset,
                reason,
            }) => {
                assert_eq!(found, path, "byte {offset}");
                assert_eq!(found_offset, expected_offset, "byte {offset}: {reason}");
            }
            Err(other) => panic!("byte {offset}: expected corruption, got {other}"),
            Ok(_) => panic!("byte {offset} flipped before the last record was accepted"),
        }
        assert_eq!(
            std::fs::read(&path).expect("read"),
            damaged,
            "a refused segment is left untouched for the operator"
        );
    }
}
