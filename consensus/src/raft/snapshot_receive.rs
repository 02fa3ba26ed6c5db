//! Follower side of InstallSnapshot: chunks assembled in order, whatever the
//! network does to them (loss, duplication, reordering), and the whole
//! snapshot installed after the last byte.
//!
//! Only the chunk that continues what arrived is kept. A duplicate (a
//! resend of bytes already held) is answered with the offset held; a chunk
//! that starts beyond it is dropped and answered with `gap` set, so that
//! the leader goes back to the offset the follower expects (go-back-N: the
//! follower buffers nothing out of order, see `snapshot_send.rs`). Every
//! answer carries the contiguous offset held.

use super::core::RaftCore;
use super::message::{InstallSnapshot, InstallSnapshotResponse};
use super::role::RoleState;
use super::snapshot::{Snapshot, SnapshotTransfer};
use super::types::{LogIndex, NodeId, SnapshotMeta, Term};
use bytes::Bytes;

/// Largest buffer reserved when a snapshot starts arriving; a larger one
/// grows as its chunks arrive. The announced size comes from the network,
/// so it is not trusted with an allocation of any size.
const MAX_PREALLOCATION: u64 = 1 << 30;

/// A snapshot being received, chunk by chunk.
pub(crate) struct IncomingSnapshot {
    meta: SnapshotMeta,
    /// The leader sending it, and its term: bytes of another leader's
    /// snapshot with the same metadata need not be the same bytes (each
    /// node serialises its own state machine), so they are never mixed.
    leader: NodeId,
    term: Term,
    total: u64,
    data: Vec<u8>,
    /// Tenths of the snapshot reported so far (`None` before the first
    /// report).
    reported_tenths: Option<u64>,
}

impl std::fmt::Debug for IncomingSnapshot {
    // Sizes only: the bytes are application state.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingSnapshot")
            .field("meta", &self.meta)
            .field("leader", &self.leader)
            .field("received", &self.data.len())
            .field("total", &self.total)
            .finish()
    }
}

impl IncomingSnapshot {
    fn start(leader: NodeId, term: Term, chunk: &InstallSnapshot) -> IncomingSnapshot {
        let mut data = Vec::new();
        // `try_`: a refused reservation just means growing as bytes come.
        let _ = data.try_reserve_exact(chunk.total.min(MAX_PREALLOCATION) as usize);
        IncomingSnapshot {
            meta: chunk.meta.clone(),
            leader,
            term,
            total: chunk.total,
            data,
            reported_tenths: None,
        }
    }

    /// Whether `chunk`, from `leader` in `term`, belongs to this snapshot.
    fn continued_by(&self, leader: NodeId, term: Term, chunk: &InstallSnapshot) -> bool {
        self.leader == leader
            && self.term == term
            && self.total == chunk.total
            && self.meta == chunk.meta
    }

    fn received(&self) -> u64 {
        self.data.len() as u64
    }

    /// Keeps the part of `chunk` beyond what arrived; returns false if the
    /// chunk starts beyond it (a gap: it is dropped).
    fn accept(&mut self, chunk: &InstallSnapshot) -> bool {
        let held = self.received();
        if chunk.offset > held {
            return false;
        }
        // `is_well_formed` checked `offset + len <= total`, and `offset <=
        // held`, so the skip is within the chunk.
        let skip = (held - chunk.offset) as usize;
        if let Some(fresh) = chunk.data.get(skip..) {
            self.data.extend_from_slice(fresh);
        }
        true
    }

    fn is_complete(&self) -> bool {
        self.received() == self.total
    }

    /// A report for the runtime's log when the snapshot started arriving
    /// or crossed another tenth of its size.
    fn progress_report(&mut self) -> Option<SnapshotTransfer> {
        let transfer = SnapshotTransfer {
            index: self.meta.last_index,
            bytes: self.received(),
            total: self.total,
        };
        let tenths = transfer.percent() / 10;
        if self
            .reported_tenths
            .is_some_and(|reported| reported >= tenths)
        {
            return None;
        }
        self.reported_tenths = Some(tenths);
        Some(transfer)
    }
}

impl RaftCore {
    /// Follower: one chunk arrived. Assembles it, installs the whole
    /// snapshot after the last byte, and answers with the offset held.
    pub(crate) fn handle_snapshot_chunk(&mut self, from: NodeId, chunk: InstallSnapshot) {
        let snapshot_index = chunk.meta.last_index;
        if snapshot_index <= self.shared.commit {
            // Already have everything it covers.
            self.reply_snapshot(from, answer(snapshot_index, 0, false, true));
            return;
        }
        let term = self.shared.term;
        let RoleState::Follower(follower) = &mut self.role else {
            return;
        };
        let current = follower.incoming.as_ref();
        if !current.is_some_and(|incoming| incoming.continued_by(from, term, &chunk)) {
            if current.is_some_and(|incoming| {
                incoming.leader == from
                    && incoming.term == term
                    && incoming.meta.last_index > snapshot_index
            }) {
                // A late chunk of a snapshot this leader replaced with a
                // newer one since: it must not displace the newer one.
                return;
            }
            if chunk.offset != 0 {
                // Not the start of anything being assembled: ask for it.
                self.reply_snapshot(from, answer(snapshot_index, 0, true, false));
                return;
            }
            tracing::debug!(node = %self.shared.id, leader = %from, index = snapshot_index, bytes = chunk.total, "snapshot starts arriving");
            follower.incoming = Some(IncomingSnapshot::start(from, term, &chunk));
        }
        let Some(incoming) = follower.incoming.as_mut() else {
            return;
        };
        let in_order = incoming.accept(&chunk);
        let held = incoming.received();
        if let Some(report) = incoming.progress_report() {
            self.shared.outbox.snapshot_progress = Some(report);
        }
        if !incoming.is_complete() {
            self.reply_snapshot(from, answer(snapshot_index, held, !in_order, false));
            return;
        }
        if let Some(IncomingSnapshot { meta, data, .. }) = follower.incoming.take() {
            self.install_snapshot(Snapshot {
                meta,
                data: Bytes::from(data),
            });
        }
        self.reply_snapshot(from, answer(snapshot_index, 0, false, true));
    }
}

fn answer(
    snapshot_index: LogIndex,
    next_offset: u64,
    gap: bool,
    done: bool,
) -> InstallSnapshotResponse {
    InstallSnapshotResponse {
        snapshot_index,
        next_offset,
        gap,
        done,
    }
}
