//! Snapshots: compaction when the application took one, chunked streaming to
//! followers behind the compaction point (Raft §7), and assembly and
//! installation on the receiving side.

use super::core::{RaftCore, RoleState};
use super::errors::SnapshotError;
use super::message::{InstallSnapshot, InstallSnapshotResponse, MessageBody};
use super::progress::ReplicationState;
use super::types::{Incarnation, LogIndex, NodeId, SnapshotMeta};

/// A snapshot: the state machine's bytes after applying every entry up to
/// `meta.last_index`.
#[derive(Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// The state machine's serialised state (opaque to Raft).
    pub data: Vec<u8>,
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

/// A snapshot being received, chunk by chunk.
pub(crate) struct IncomingSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

impl std::fmt::Debug for IncomingSnapshot {
    // Sizes only: the bytes are application state.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingSnapshot")
            .field("meta", &self.meta)
            .field("received", &self.data.len())
            .finish()
    }
}

impl RaftCore {
    /// The metadata a snapshot of the state machine at `index` must carry,
    /// if `index` is still in the log (held, durable and applied).
    pub fn snapshot_meta(&self, index: LogIndex) -> Option<SnapshotMeta> {
        let term = self.log.term_at(index)?;
        let (membership, _) = self.log.membership_at(index).unwrap_or_default();
        Some(SnapshotMeta {
            last_index: index,
            last_term: term,
            membership,
        })
    }

    /// The application took a snapshot (after applying through
    /// `meta.last_index`): compact the log up to it and keep the bytes to
    /// send to followers that fall behind. The runtime stores the snapshot
    /// and may drop its stored entries up to `meta.last_index`.
    pub fn snapshot_taken(
        &mut self,
        meta: SnapshotMeta,
        data: Vec<u8>,
    ) -> Result<(), SnapshotError> {
        let base = self.log.base_index();
        if meta.last_index <= base {
            return Err(SnapshotError::Stale {
                index: meta.last_index,
                base,
            });
        }
        let limit = self.apply_cursor.min(self.log.stable_index());
        if meta.last_index > limit {
            return Err(SnapshotError::Ahead {
                index: meta.last_index,
                limit,
            });
        }
        if self.snapshot_meta(meta.last_index).as_ref() != Some(&meta) {
            return Err(SnapshotError::Mismatch {
                index: meta.last_index,
                term: meta.last_term,
            });
        }
        tracing::info!(node = %self.id, index = meta.last_index, "log compacted up to snapshot");
        self.log.compact(Snapshot { meta, data });
        Ok(())
    }

    /// Leader: switches `to` to snapshot streaming and sends the first chunk.
    pub(crate) fn start_snapshot(&mut self, to: NodeId) {
        let Some(snapshot_index) = self.log.snapshot().map(|snapshot| snapshot.meta.last_index)
        else {
            return;
        };
        if let Some(progress) = self
            .leader_state_mut()
            .and_then(|leader| leader.progress.get_mut(&to))
        {
            progress.become_snapshot(snapshot_index);
        }
        self.send_snapshot_chunk(to);
    }

    /// Leader: (re)sends the chunk at the acknowledged offset.
    pub(crate) fn send_snapshot_chunk(&mut self, to: NodeId) {
        let chunk_size = self.config.snapshot_chunk_bytes as u64;
        let Some(snapshot) = self.log.snapshot().cloned() else {
            return;
        };
        let Some(progress) = self
            .leader_state_mut()
            .and_then(|leader| leader.progress.get_mut(&to))
        else {
            return;
        };
        let ReplicationState::Snapshot {
            snapshot_index,
            offset,
        } = progress.state
        else {
            return;
        };
        // The leader compacted again meanwhile: restart with the new one.
        let offset = if snapshot_index != snapshot.meta.last_index {
            progress.become_snapshot(snapshot.meta.last_index);
            0
        } else {
            offset
        };
        let total = snapshot.data.len() as u64;
        let start = offset.min(total);
        let end = (start + chunk_size).min(total);
        let body = MessageBody::InstallSnapshot(InstallSnapshot {
            meta: snapshot.meta,
            offset: start,
            data: snapshot.data[start as usize..end as usize].to_vec(),
            done: end == total,
        });
        self.send(to, body);
    }

    /// Leader: a follower reported how much of the snapshot it holds.
    pub(crate) fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        incarnation: Incarnation,
        response: InstallSnapshotResponse,
    ) {
        let Some(progress) = self
            .leader_state_mut()
            .and_then(|leader| leader.progress.get_mut(&from))
        else {
            return;
        };
        progress.heard_from();
        let ReplicationState::Snapshot { snapshot_index, .. } = progress.state else {
            return;
        };
        if response.snapshot_index != snapshot_index {
            return;
        }
        if response.done {
            progress.update_match(snapshot_index, incarnation);
            progress.become_replicate();
            self.send_appends_to(from);
        } else {
            progress.state = ReplicationState::Snapshot {
                snapshot_index,
                offset: response.next_offset,
            };
            self.send_snapshot_chunk(from);
        }
    }

    /// Follower: one chunk arrived. Assembles it, installs the whole
    /// snapshot after the last chunk, and answers with the next offset.
    pub(crate) fn handle_snapshot_chunk(&mut self, from: NodeId, chunk: InstallSnapshot) {
        let snapshot_index = chunk.meta.last_index;
        if snapshot_index <= self.commit {
            // Already have everything it covers.
            self.reply_snapshot(from, snapshot_index, 0, true);
            return;
        }
        let RoleState::Follower(follower) = &mut self.role else {
            return;
        };
        let incoming = follower.incoming.take();
        let mut incoming = match incoming {
            Some(incoming) if incoming.meta == chunk.meta && chunk.offset != 0 => incoming,
            other if chunk.offset != 0 => {
                follower.incoming = other;
                let expected = follower
                    .incoming
                    .as_ref()
                    .filter(|incoming| incoming.meta == chunk.meta)
                    .map_or(0, |incoming| incoming.data.len() as u64);
                self.reply_snapshot(from, snapshot_index, expected, false);
                return;
            }
            _ => IncomingSnapshot {
                meta: chunk.meta.clone(),
                data: Vec::new(),
            },
        };
        if chunk.offset != incoming.data.len() as u64 {
            let expected = incoming.data.len() as u64;
            follower.incoming = Some(incoming);
            self.reply_snapshot(from, snapshot_index, expected, false);
            return;
        }
        incoming.data.extend_from_slice(&chunk.data);
        if !chunk.done {
            let expected = incoming.data.len() as u64;
            follower.incoming = Some(incoming);
            self.reply_snapshot(from, snapshot_index, expected, false);
            return;
        }
        self.install_snapshot(Snapshot {
            meta: incoming.meta,
            data: incoming.data,
        });
        self.reply_snapshot(from, snapshot_index, 0, true);
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let SnapshotMeta {
            last_index,
            last_term,
            ..
        } = snapshot.meta;
        if self.log.term_at(last_index) == Some(last_term) {
            // Our log already holds the snapshot's last entry: it is
            // committed, nothing to install (Raft §7, retain the suffix).
            self.commit = self.commit.max(last_index);
            return;
        }
        tracing::info!(node = %self.id, index = last_index, term = last_term, "installing snapshot from leader");
        self.membership = snapshot.meta.membership.clone();
        self.membership_index = last_index;
        self.commit = last_index;
        self.apply_cursor = last_index;
        self.applied_index = self.applied_index.max(last_index);
        self.log.install(snapshot.clone());
        self.outbox.snapshot = Some(snapshot);
    }

    fn reply_snapshot(
        &mut self,
        to: NodeId,
        snapshot_index: LogIndex,
        next_offset: u64,
        done: bool,
    ) {
        let body = MessageBody::InstallSnapshotResponse(InstallSnapshotResponse {
            snapshot_index,
            next_offset,
            done,
        });
        self.send(to, body);
    }
}
