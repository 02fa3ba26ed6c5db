//! A write the disk refuses (full disk, failed `fdatasync`) loses nothing
//! acknowledged, acknowledges nothing that is not durable, and stops the
//! store only until it is repaired; the writer holds and retries the group.

use super::FileFactory;
use crate::storage::conformance::{entries, StoreFactory};
use crate::storage::file_store::InjectedFault;
use crate::storage::{FileStore, LogStore, LogWriter, Snapshot, StorageError, WriteBatch};
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn append(from: u64, to: u64) -> WriteBatch {
    WriteBatch {
        entries: entries(from..=to, 1),
        ..WriteBatch::default()
    }
}

fn segment_inode(factory: &FileFactory) -> u64 {
    let path = factory.dir.path().join("00000000000000000001.wal");
    std::fs::metadata(path).expect("the segment").ino()
}

/// Writes 1..=3, fails the write of 4..=5 with `fault`, and checks that the
/// store refuses until repaired, that the repair keeps exactly 1..=3, and
/// that 4..=5 written again after it survive a reopen.
fn fails_then_repairs(fault: InjectedFault) -> (FileFactory, u64, u64) {
    let mut factory = FileFactory::new(1 << 20);
    let (mut store, _) = factory.open().expect("open");
    store.write(&[append(1, 3)]).expect("durable entries");
    let inode_before = segment_inode(&factory);
    store.inject = Some(fault);
    let error = store
        .write(&[append(4, 5)])
        .expect_err("the injected failure");
    assert!(!error.is_rejected_batch(), "{error}");
    assert!(matches!(
        store.write(&[append(4, 5)]),
        Err(StorageError::Poisoned(_))
    ));
    assert_eq!(store.repair().expect("repair"), 0);
    let inode_after = segment_inode(&factory);
    drop(store);
    let (mut store, recovered) = factory.open().expect("reopen after the repair");
    assert_eq!(
        recovered.entries,
        entries(1..=3, 1),
        "{fault:?}: the repaired log is the durable one"
    );
    store.write(&[append(4, 5)]).expect("written again");
    drop(store);
    let (_, recovered) = factory.open().expect("reopen");
    assert_eq!(recovered.entries, entries(1..=5, 1));
    (factory, inode_before, inode_after)
}

#[test]
fn a_full_disk_during_an_append_is_repaired_by_cutting_the_partial_write() {
    let (_, before, after) = fails_then_repairs(InjectedFault::AppendDiskFull);
    assert_eq!(
        before, after,
        "no sync failed: the segment is cut, not copied"
    );
}

/// fsyncgate: after a failed `fdatasync` the same file is never synced
/// again; its durable prefix is copied into a new file that replaces it.
#[test]
fn a_failed_sync_replaces_the_segment_instead_of_syncing_it_again() {
    let (_, before, after) = fails_then_repairs(InjectedFault::SyncFails);
    assert_ne!(before, after, "the segment whose sync failed was reused");
}

#[test]
fn a_failed_snapshot_write_is_repaired_and_retried() {
    let mut factory = FileFactory::new(1 << 20);
    let (mut store, _) = factory.open().expect("open");
    store.write(&[append(1, 4)]).expect("entries");
    let snapshot = WriteBatch {
        snapshot: Some(Snapshot {
            meta: crate::raft::types::SnapshotMeta {
                last_index: 3,
                last_term: 1,
                membership: Default::default(),
            },
            data: vec![7; 64].into(),
        }),
        ..WriteBatch::default()
    };
    store.inject = Some(InjectedFault::SyncFails);
    // Entries, then a snapshot: the sync before the snapshot fails.
    let results = store.write_each(&[append(5, 5), snapshot.clone()]);
    assert!(results.iter().all(Result::is_err), "{results:?}");
    store.repair().expect("repair");
    store
        .write(&[append(5, 5), snapshot])
        .expect("the group written again");
    drop(store);
    let (_, recovered) = factory.open().expect("reopen");
    assert_eq!(recovered.snapshot.map(|s| s.meta.last_index), Some(3));
    assert_eq!(recovered.entries, entries(4..=5, 1));
}

/// A store whose appends fail with `ENOSPC` while `full` is set: the real
/// [`FileStore`] with its fault injected into every group.
struct FullDisk {
    store: FileStore,
    full: Arc<AtomicBool>,
}

impl LogStore for FullDisk {
    fn write_each(&mut self, batches: &[WriteBatch]) -> Vec<Result<(), StorageError>> {
        if self.full.load(Ordering::SeqCst) {
            self.store.inject = Some(InjectedFault::AppendDiskFull);
        }
        self.store.write_each(batches)
    }

    fn snapshot(&self) -> Result<Option<Snapshot>, StorageError> {
        self.store.snapshot()
    }

    fn repair(&mut self) -> Result<crate::raft::types::LogIndex, StorageError> {
        self.store.repair()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_holds_a_failed_group_unacknowledged_and_completes_it_once_space_is_back() {
    let mut factory = FileFactory::new(1 << 20);
    let (store, _) = factory.open().expect("open");
    let full = Arc::new(AtomicBool::new(false));
    let writer = LogWriter::spawn(FullDisk {
        store,
        full: full.clone(),
    })
    .expect("spawn");
    writer.write(append(1, 2)).await.expect("durable");
    assert_eq!(writer.health().failing, None);

    full.store(true, Ordering::SeqCst);
    let mut held = writer.submit(append(3, 4)).await.expect("queued");
    let behind = writer.submit(append(5, 5)).await.expect("queued");
    let reason = crate::storage::tests::wait_for("the writer to report the failure", || {
        writer.health().failing
    })
    .await;
    assert!(reason.contains("disk is full"), "{reason}");
    // While the disk is full nothing can complete: completion comes only
    // after a write that succeeded.
    assert!(
        std::future::poll_fn(|context| {
            std::task::Poll::Ready(std::pin::Pin::new(&mut held).poll(context).is_pending())
        })
        .await,
        "a batch was acknowledged while the disk refused it"
    );

    full.store(false, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(60), held)
        .await
        .expect("the held batch completes once space is back")
        .expect("durable");
    tokio::time::timeout(Duration::from_secs(60), behind)
        .await
        .expect("the batch queued behind it completes")
        .expect("durable");
    let health = writer.health();
    assert_eq!(health.failing, None);
    assert_eq!(health.failures, 1);
    writer.close().await.expect("close");
    let (_, recovered) = factory.open().expect("reopen");
    assert_eq!(recovered.entries, entries(1..=5, 1));
}
