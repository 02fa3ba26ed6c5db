//! Snapshot files: a staged snapshot becomes the snapshot file without a
//! copy, whatever state its staged file is in, and files of the first
//! layout still open.

use super::{store_with_entries, FileFactory};
use crate::raft::types::SnapshotMeta;
use crate::storage::conformance::StoreFactory;
use crate::storage::FileStore;
use crate::storage::{snapshot_file, LogStore, Snapshot, StagedSnapshot, WriteBatch};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn meta(last_index: u64) -> SnapshotMeta {
    SnapshotMeta {
        last_index,
        last_term: 1,
        membership: Default::default(),
    }
}

/// A store holding entries 1..=6 of term 1 (open: opening a store removes
/// staged files), and a snapshot of `data` at index 4 staged the way the
/// snapshot thread stages one.
fn staged(data: &'static [u8]) -> (FileFactory, FileStore, Snapshot, StagedSnapshot) {
    let (factory, store) = store_with_entries(6);
    let job: crate::state_machine::SnapshotJob<std::io::Error> =
        Box::new(move |sink| sink.write_all(data));
    let (bytes, staged) = snapshot_file::stage(factory.dir.path(), 4, job).expect("staged");
    assert_eq!(&bytes[..], data);
    let snapshot = Snapshot {
        meta: meta(4),
        data: bytes,
    };
    (factory, store, snapshot, staged)
}

fn store_snapshot(store: &mut FileStore, snapshot: &Snapshot, staged: &StagedSnapshot) {
    store
        .write(&[WriteBatch {
            snapshot: Some(snapshot.clone()),
            staged_snapshot: Some(staged.clone()),
            ..WriteBatch::default()
        }])
        .expect("store the snapshot");
}

fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    snapshot_file::list(dir)
        .expect("list")
        .snapshots
        .into_iter()
        .map(|(_, path)| path)
        .collect()
}

/// The snapshot a store opened anew finds (`store` is closed first).
fn reopened_snapshot(factory: &mut FileFactory, store: FileStore) -> Option<Snapshot> {
    drop(store);
    factory.open().expect("reopen").1.snapshot
}

#[test]
fn a_staged_snapshot_becomes_the_snapshot_file_without_a_copy() {
    let (mut factory, mut store, snapshot, staged) = staged(b"the whole state");
    let inode = std::fs::metadata(&staged.path).expect("staged file").ino();
    store_snapshot(&mut store, &snapshot, &staged);
    assert!(!staged.path.exists(), "the staged file is still there");
    let files = snapshot_files(factory.dir.path());
    assert_eq!(files.len(), 1);
    assert_eq!(
        std::fs::metadata(&files[0]).expect("snapshot file").ino(),
        inode,
        "the snapshot file is a copy, not the staged file"
    );
    assert_eq!(reopened_snapshot(&mut factory, store), Some(snapshot));
}

#[test]
fn a_staged_file_that_is_gone_is_written_whole_from_the_mapping() {
    let (mut factory, mut store, snapshot, staged) = staged(b"state kept by its mapping");
    std::fs::remove_file(&staged.path).expect("remove");
    store_snapshot(&mut store, &snapshot, &staged);
    assert_eq!(snapshot_files(factory.dir.path()).len(), 1);
    assert_eq!(reopened_snapshot(&mut factory, store), Some(snapshot));
}

#[test]
fn a_staged_file_an_earlier_attempt_appended_to_is_cut_back_first() {
    let (mut factory, mut store, snapshot, staged) = staged(b"state");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&staged.path)
        .expect("open");
    // Longer than a trailer, so that only cutting back leaves a valid file.
    file.write_all(&[0xAB; 256]).expect("append");
    drop(file);
    store_snapshot(&mut store, &snapshot, &staged);
    assert_eq!(reopened_snapshot(&mut factory, store), Some(snapshot));
}

#[test]
fn a_wrong_checksum_from_the_stage_makes_the_file_refused_at_open() {
    // The stage's checksum is trusted, not recomputed: if it were wrong the
    // store must notice at the next open, not hand out the state.
    let (mut factory, mut store, snapshot, mut staged) = staged(b"state");
    staged.crc ^= 1;
    store_snapshot(&mut store, &snapshot, &staged);
    drop(store);
    assert!(matches!(
        factory.open().err(),
        Some(crate::storage::StorageError::Corrupt { .. })
    ));
}

/// The first layout: `RAFTSNP1`, the lengths and the CRC, meta, data.
fn first_layout(meta: &SnapshotMeta, data: &[u8]) -> Vec<u8> {
    let meta = postcard::to_allocvec(meta).expect("meta");
    let mut lengths = (meta.len() as u32).to_le_bytes().to_vec();
    lengths.extend_from_slice(&(data.len() as u64).to_le_bytes());
    let crc = [&lengths[..], &meta, data]
        .iter()
        .fold(0, |crc, part| crc32c::crc32c_append(crc, part));
    let mut file = b"RAFTSNP1".to_vec();
    file.extend_from_slice(&lengths);
    file.extend_from_slice(&crc.to_le_bytes());
    file.extend_from_slice(&meta);
    file.extend_from_slice(data);
    file
}

#[test]
fn a_snapshot_file_of_the_first_layout_still_opens_and_is_still_verified() {
    let (mut factory, store) = store_with_entries(6);
    drop(store);
    let path = factory
        .dir
        .path()
        .join("snapshot-00000000000000000004-00000000000000000001.snap");
    let mut bytes = first_layout(&meta(4), b"written by an earlier version");
    std::fs::write(&path, &bytes).expect("write");
    let expected = Snapshot {
        meta: meta(4),
        data: b"written by an earlier version".to_vec().into(),
    };
    assert_eq!(factory.open().expect("reopen").1.snapshot, Some(expected));
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).expect("write");
    assert!(matches!(
        factory.open().err(),
        Some(crate::storage::StorageError::Corrupt { .. })
    ));
}
