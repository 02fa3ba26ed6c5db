//! Snapshots: compaction when the application took one, and installation of
//! one received from the leader (Raft §7). The streaming itself lives in
//! `snapshot_send.rs` (leader) and `snapshot_receive.rs` (follower).

use super::core::RaftCore;
use super::errors::SnapshotError;
use super::message::{InstallSnapshotResponse, MessageBody};
use super::types::{LogIndex, NodeId, SnapshotMeta};
use bytes::Bytes;

/// A snapshot: the state machine's bytes after applying every entry up to
/// `meta.last_index`.
#[derive(Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// The state machine's serialised state (opaque to Raft). Shared, not
    /// owned: cloning a `Snapshot`, or cutting a chunk out of it for a
    /// follower, copies no bytes (a leader streams a 100 MB snapshot to
    /// several followers at once from one buffer).
    pub data: Bytes,
}

impl std::fmt::Debug for Snapshot {
    // The bytes are the application's state (ciphertext for the vault, but
    // still nothing to print): show only their size.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("meta", &self.meta)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// How far the transfer of a snapshot has got. A leader shows one for each
/// follower it streams a snapshot to ([`FollowerStatus::snapshot`](super::FollowerStatus::snapshot):
/// `bytes` is what the follower acknowledged); a receiving follower reports
/// one in [`Ready::snapshot_progress`](super::Ready::snapshot_progress)
/// (`bytes` is what arrived).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotTransfer {
    /// `last_index` of the snapshot.
    pub index: LogIndex,
    /// Bytes transferred so far, contiguous from the start.
    pub bytes: u64,
    /// Size of the whole snapshot.
    pub total: u64,
}

impl SnapshotTransfer {
    /// Whole percent transferred (100 for an empty snapshot).
    pub fn percent(&self) -> u64 {
        if self.total == 0 {
            return 100;
        }
        // u128: `bytes * 100` of a huge snapshot must not overflow.
        (u128::from(self.bytes.min(self.total)) * 100 / u128::from(self.total)) as u64
    }
}

impl RaftCore {
    /// The metadata a snapshot of the state machine at `index` must carry,
    /// if `index` is still in the log (held, durable and applied).
    pub fn snapshot_meta(&self, index: LogIndex) -> Option<SnapshotMeta> {
        let term = self.shared.log.term_at(index)?;
        let (membership, _) = self.shared.log.membership_at(index).unwrap_or_default();
        Some(SnapshotMeta {
            last_index: index,
            last_term: term,
            membership,
        })
    }

    /// Whether [`snapshot_taken`](Self::snapshot_taken) would take a
    /// snapshot with `meta` now: newer than the log's, applied and durable
    /// here, and matching the log. A runtime that stores a snapshot before
    /// it compacts the core with it checks first.
    pub fn check_snapshot(&self, meta: &SnapshotMeta) -> Result<(), SnapshotError> {
        let base = self.shared.log.base_index();
        if meta.last_index <= base {
            return Err(SnapshotError::Stale {
                index: meta.last_index,
                base,
            });
        }
        let limit = self.shared.apply_cursor.min(self.shared.log.stable_index());
        if meta.last_index > limit {
            return Err(SnapshotError::Ahead {
                index: meta.last_index,
                limit,
            });
        }
        if self.snapshot_meta(meta.last_index).as_ref() != Some(meta) {
            return Err(SnapshotError::Mismatch {
                index: meta.last_index,
                term: meta.last_term,
            });
        }
        Ok(())
    }

    /// The application took a snapshot (after applying through
    /// `meta.last_index`): compact the log up to it and keep the bytes to
    /// send to followers that fall behind. The runtime stores the snapshot
    /// and may drop its stored entries up to `meta.last_index`. A
    /// `Vec<u8>` converts into [`Bytes`] without a copy.
    pub fn snapshot_taken(
        &mut self,
        meta: SnapshotMeta,
        data: impl Into<Bytes>,
    ) -> Result<(), SnapshotError> {
        self.check_snapshot(&meta)?;
        tracing::info!(node = %self.shared.id, index = meta.last_index, "log compacted up to snapshot");
        self.shared.log.compact(Snapshot {
            meta,
            data: data.into(),
        });
        Ok(())
    }

    /// The runtime stored the snapshot the log holds and hands back the
    /// stored copy (the same bytes, backed by the disk rather than by
    /// memory). The log keeps that copy instead, so the memory of the one
    /// it had is freed once nothing else holds it. Returns whether it was
    /// taken: a copy of any other snapshot (the log moved on to a newer
    /// one meanwhile) is ignored.
    pub fn snapshot_stored(&mut self, stored: Snapshot) -> bool {
        self.shared.log.replace_snapshot(stored)
    }

    /// Follower: a whole snapshot arrived from the leader; replace the log
    /// with it and hand it out for the state machine.
    pub(crate) fn install_snapshot(&mut self, snapshot: Snapshot) {
        let SnapshotMeta {
            last_index,
            last_term,
            ..
        } = snapshot.meta;
        if self.shared.log.term_at(last_index) == Some(last_term) {
            // Our log already holds the snapshot's last entry: it is
            // committed, nothing to install (Raft §7, retain the suffix).
            self.shared.commit = self.shared.commit.max(last_index);
            return;
        }
        tracing::info!(node = %self.shared.id, index = last_index, term = last_term, "installing snapshot from leader");
        self.shared.membership = snapshot.meta.membership.clone();
        self.shared.membership_index = last_index;
        self.shared.commit = last_index;
        self.shared.apply_cursor = last_index;
        self.shared.applied_index = self.shared.applied_index.max(last_index);
        // A clone of `Bytes`: the log and the runtime share one buffer.
        self.shared.log.install(snapshot.clone());
        self.shared.outbox.snapshot = Some(snapshot);
    }

    /// Follower: answers a chunk. `next_offset` is how much of the
    /// snapshot it holds, contiguous from the start.
    pub(crate) fn reply_snapshot(&mut self, to: NodeId, answer: InstallSnapshotResponse) {
        self.send(to, MessageBody::InstallSnapshotResponse(answer));
    }
}
