//! The driver's part in snapshots taken on this node: storing them, then
//! holding the stored copy (see `compaction.rs` for when the core compacts
//! to one, and docs/runtime.md, "Snapshots").

use super::Driver;
use crate::node::PeerNetwork;
use crate::raft::LogIndex;
use crate::storage::{self, StagedSnapshot, WriteBatch};
use std::path::{Path, PathBuf};

impl<N: PeerNetwork> Driver<N> {
    /// The state machine took a snapshot (`data` maps the file it was
    /// staged in): store it (which compacts the disk's log; the store makes
    /// the staged file the snapshot's) and compact the core now or once a
    /// tail follows it.
    pub(super) async fn snapshot_taken(
        &mut self,
        index: LogIndex,
        data: bytes::Bytes,
        staged: StagedSnapshot,
    ) {
        let taken = match self.core.snapshot_meta(index) {
            Some(meta) => {
                let snapshot = storage::Snapshot { meta, data };
                self.compaction
                    .taken(&mut self.core, snapshot.clone())
                    .then_some(snapshot)
            }
            None => None,
        };
        let Some(snapshot) = taken else {
            remove_staged(&staged.path);
            return;
        };
        tracing::info!(
            "Node {} took a snapshot at index {index} ({} bytes)",
            self.core.id(),
            snapshot.data.len()
        );
        let staged_path = staged.path.clone();
        let batch = WriteBatch {
            snapshot: Some(snapshot),
            staged_snapshot: Some(staged),
            ..WriteBatch::default()
        };
        self.persist(batch, Vec::new(), None).await;
        // Gone if the store made it the snapshot's file; still there if the
        // store wrote a copy instead (or failed).
        self.hold_stored_snapshot(Some(staged_path));
    }

    /// Once the snapshot just submitted is on disk, has the core hold the
    /// stored copy (mapped from its file) instead of the one it has (in
    /// memory, or mapped from the staged file, which is then removed): a
    /// node then does not keep its whole state twice, once in the state
    /// machine and once as the snapshot to send. The log writer answers
    /// after every batch submitted before, so the copy is of that snapshot
    /// or a newer one (which the core ignores unless it holds that one).
    pub(super) fn hold_stored_snapshot(&self, staged: Option<PathBuf>) {
        let writer = self.writer.clone();
        let stored = self.stored_snapshots_sender.clone();
        tokio::spawn(async move {
            let copy = writer.snapshot().await;
            if let Some(staged) = staged {
                remove_staged(&staged);
            }
            match copy {
                Ok(Some(snapshot)) => {
                    let _ = stored.send(snapshot);
                }
                Ok(None) => {}
                // The copy held stays in use; nothing is lost.
                Err(error) => tracing::warn!("cannot map the stored snapshot: {error}"),
            }
        });
    }
}

/// Removes a staged snapshot file; one already gone (a store repair
/// removes leftovers) is fine, and any other failure only leaves a file
/// that the next start removes.
fn remove_staged(staged: &Path) {
    if let Err(error) = std::fs::remove_file(staged) {
        if error.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!("cannot remove {}: {error}", staged.display());
        }
    }
}
