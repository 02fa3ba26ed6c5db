//! Leader side of InstallSnapshot: a snapshot streamed to a follower with a
//! window of chunks in flight, go-back-N on loss (design notes in
//! `docs/raft-core.md`, "Snapshot streaming").
//!
//! The leader sends chunks ahead until `max_inflight_snapshot_chunks` of
//! them are unacknowledged. Each answer carries the contiguous offset the
//! follower holds. A follower that receives a chunk beyond that offset
//! (one before it was lost, or the network reordered them) says so (`gap`),
//! and the leader goes back and resends from the offset the follower
//! expects; a follower keeps nothing that arrives out of order. When
//! answers stop coming altogether (the last chunks, or every answer, were
//! lost, or the connection was reset), heartbeats notice: a follower that
//! answers heartbeats but no chunk for an election timeout's worth of
//! heartbeats gets the window again from the acknowledged offset. A leader
//! that compacted again meanwhile restarts with its new snapshot.

use super::leader::LeaderHandle;
use super::message::{InstallSnapshot, InstallSnapshotResponse, MessageBody};
use super::progress::{Progress, ReplicationState};
use super::snapshot::SnapshotTransfer;
use super::types::{Incarnation, LogIndex, NodeId};
use std::ops::Range;

/// The leader's bookkeeping for one follower in
/// [`ReplicationState::Snapshot`] (whose `offset` is what the follower
/// acknowledged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SnapshotStream {
    /// Size of the snapshot being sent.
    total: u64,
    /// Offset of the next chunk to send.
    next: u64,
    /// The chunk that ends the snapshot was sent (needed apart from
    /// `next == total` because an empty snapshot is still one chunk).
    sent_last: bool,
    /// The offset the leader last went back to on a gap report: the other
    /// reports of the same gap (one per chunk that was in flight behind the
    /// lost one) must not send the window again each time.
    rewound_to: Option<u64>,
    /// Heartbeats sent since the follower last answered a chunk. Counted
    /// when sent, not when answered: a burst of late heartbeat answers
    /// (queued while the follower was down) must not resend the window
    /// once per answer.
    heartbeats_unanswered: u32,
}

impl Progress {
    /// Starts streaming the snapshot ending at `snapshot_index`, of `total`
    /// bytes, from its first byte.
    pub(crate) fn become_snapshot(&mut self, snapshot_index: LogIndex, total: u64) {
        self.state = ReplicationState::Snapshot {
            snapshot_index,
            offset: 0,
        };
        self.snapshot_stream = SnapshotStream {
            total,
            ..SnapshotStream::default()
        };
        self.probe_sent = false;
        self.inflight.clear();
    }

    /// The transfer in progress, for `status`.
    pub(crate) fn snapshot_transfer(&self) -> Option<SnapshotTransfer> {
        match self.state {
            ReplicationState::Snapshot {
                snapshot_index,
                offset,
            } => Some(SnapshotTransfer {
                index: snapshot_index,
                bytes: offset,
                total: self.snapshot_stream.total,
            }),
            _ => None,
        }
    }

    /// The byte range of the next chunk to send, if the window has room:
    /// at most `window_bytes` sent beyond the acknowledged offset.
    pub(crate) fn next_snapshot_chunk(
        &mut self,
        chunk_bytes: u64,
        window_bytes: u64,
    ) -> Option<Range<u64>> {
        let ReplicationState::Snapshot {
            offset: acknowledged,
            ..
        } = self.state
        else {
            return None;
        };
        let stream = &mut self.snapshot_stream;
        if stream.sent_last || stream.next.saturating_sub(acknowledged) >= window_bytes {
            return None;
        }
        let start = stream.next.min(stream.total);
        let end = start.saturating_add(chunk_bytes).min(stream.total);
        stream.next = end;
        stream.sent_last = end == stream.total;
        Some(start..end)
    }

    /// The follower holds `next_offset` bytes (and said whether the chunk
    /// it answers started beyond them). Returns whether the leader may
    /// send: the window moved, or the leader went back to resend.
    pub(crate) fn snapshot_answered(&mut self, next_offset: u64, gap: bool) -> bool {
        let ReplicationState::Snapshot {
            snapshot_index,
            offset: acknowledged,
        } = self.state
        else {
            return false;
        };
        let stream = &mut self.snapshot_stream;
        if next_offset > stream.total {
            return false;
        }
        let advanced = next_offset > acknowledged;
        if advanced {
            self.state = ReplicationState::Snapshot {
                snapshot_index,
                offset: next_offset,
            };
        }
        // Any answer, a duplicate's included, shows chunks are moving.
        stream.heartbeats_unanswered = 0;
        if gap {
            if stream.rewound_to == Some(next_offset) && !advanced {
                // Another report of the gap already resent: a second loss
                // of the same chunk is left to the heartbeat timeout.
                return false;
            }
            // Go back N. Below the acknowledged offset too: the follower
            // lost what it held (it restarted, or a new leader's stream
            // replaced ours there), so the acknowledgement no longer holds.
            self.state = ReplicationState::Snapshot {
                snapshot_index,
                offset: next_offset,
            };
            stream.next = next_offset;
            stream.sent_last = false;
            stream.rewound_to = Some(next_offset);
            return true;
        }
        if advanced && stream.next < next_offset {
            // The follower is past what we meant to send next (answers to
            // chunks sent before a go-back arrived late): skip ahead.
            stream.next = next_offset;
            stream.sent_last = false;
        }
        advanced
    }

    /// A heartbeat is on its way to the follower.
    pub(crate) fn snapshot_heartbeat_sent(&mut self) {
        if matches!(self.state, ReplicationState::Snapshot { .. }) {
            let stream = &mut self.snapshot_stream;
            stream.heartbeats_unanswered = stream.heartbeats_unanswered.saturating_add(1);
        }
    }

    /// A heartbeat answer arrived during the transfer: the follower is
    /// alive. Returns whether the leader must resend from the acknowledged
    /// offset because no chunk was answered during the last `stall_after`
    /// heartbeats (what was in flight is lost). Answers, not
    /// acknowledgements, are what counts: on a slow link the chunks keep
    /// being answered, and nothing is resent however long they take.
    pub(crate) fn snapshot_heartbeat_answered(&mut self, stall_after: u32) -> bool {
        let ReplicationState::Snapshot {
            offset: acknowledged,
            ..
        } = self.state
        else {
            return false;
        };
        let stream = &mut self.snapshot_stream;
        if stream.heartbeats_unanswered < stall_after {
            return false;
        }
        stream.heartbeats_unanswered = 0;
        stream.next = acknowledged;
        stream.sent_last = false;
        stream.rewound_to = None;
        true
    }
}

impl LeaderHandle<'_> {
    /// Switches `to` to snapshot streaming and fills its window.
    pub(crate) fn start_snapshot(&mut self, to: NodeId) {
        let Some((snapshot_index, total)) = self
            .shared
            .log
            .snapshot()
            .map(|snapshot| (snapshot.meta.last_index, snapshot.data.len() as u64))
        else {
            return;
        };
        let Some(progress) = self.leader.progress.get_mut(&to) else {
            return;
        };
        progress.become_snapshot(snapshot_index, total);
        tracing::info!(node = %self.shared.id, follower = %to, index = snapshot_index, bytes = total, "streaming snapshot to follower");
        self.send_snapshot_window(to);
    }

    /// Sends chunks to `to` until its window is full or the whole
    /// snapshot is on its way. Each chunk's bytes are a slice of the
    /// snapshot's shared buffer, not a copy.
    pub(crate) fn send_snapshot_window(&mut self, to: NodeId) {
        let chunk_bytes = self.shared.config.snapshot_chunk_bytes as u64;
        let window_bytes =
            chunk_bytes.saturating_mul(self.shared.config.max_inflight_snapshot_chunks as u64);
        let Some(snapshot) = self.shared.log.snapshot() else {
            return;
        };
        let (meta, data) = (snapshot.meta.clone(), snapshot.data.clone());
        let total = data.len() as u64;
        let id = self.shared.id;
        let Some(progress) = self.leader.progress.get_mut(&to) else {
            return;
        };
        let ReplicationState::Snapshot { snapshot_index, .. } = progress.state else {
            return;
        };
        if snapshot_index != meta.last_index {
            // The leader compacted again meanwhile: restart with the new
            // snapshot (the follower drops the old one at the first chunk).
            tracing::info!(node = %id, follower = %to, index = meta.last_index, bytes = total, "restarting snapshot stream with a newer snapshot");
            progress.become_snapshot(meta.last_index, total);
        }
        let mut chunks = Vec::new();
        while let Some(range) = progress.next_snapshot_chunk(chunk_bytes, window_bytes) {
            chunks.push(range);
        }
        for range in chunks {
            // The ranges lie within `0..total` (`next_snapshot_chunk` clamps
            // them), so the slice cannot panic.
            let chunk = InstallSnapshot {
                meta: meta.clone(),
                total,
                offset: range.start,
                data: data.slice(range.start as usize..range.end as usize),
            };
            self.send(to, MessageBody::InstallSnapshot(chunk));
        }
    }

    /// A follower reported how much of the snapshot it holds.
    pub(crate) fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        incarnation: Incarnation,
        response: InstallSnapshotResponse,
    ) {
        let Some(progress) = self.leader.progress.get_mut(&from) else {
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
        } else if progress.snapshot_answered(response.next_offset, response.gap) {
            self.send_snapshot_window(from);
        }
    }

    /// A heartbeat answer from a follower in snapshot streaming;
    /// resends if no chunk was answered for an election timeout's worth of
    /// heartbeats (the CheckQuorum window: a live follower answers within
    /// it).
    pub(crate) fn snapshot_heartbeat_answered(&mut self, from: NodeId) {
        let stall_after =
            (self.shared.config.election_ticks_min / self.shared.config.heartbeat_ticks).max(2);
        let stalled = self
            .leader
            .progress
            .get_mut(&from)
            .is_some_and(|progress| progress.snapshot_heartbeat_answered(stall_after));
        if stalled {
            self.send_snapshot_window(from);
        }
    }
}
