//! Log lines of a snapshot arriving from the leader: when it starts, at
//! every tenth of it, and when it is handed over for installation, with the
//! rate so far. The core reports bytes ([`Ready::snapshot_progress`]); the
//! clock is the runtime's, so the rate is computed here.
//!
//! [`Ready::snapshot_progress`]: crate::raft::Ready::snapshot_progress

use crate::raft::{LogIndex, NodeId, SnapshotTransfer};
use tokio::time::Instant;

/// The snapshot being received, if any, and when it started arriving.
#[derive(Debug, Default)]
pub(crate) struct IncomingSnapshotLog {
    current: Option<(LogIndex, Instant)>,
}

impl IncomingSnapshotLog {
    /// The core reported how much of a snapshot arrived.
    pub(crate) fn progress(
        &mut self,
        node: NodeId,
        leader: Option<NodeId>,
        transfer: SnapshotTransfer,
    ) {
        let now = Instant::now();
        match self.current {
            Some((index, started)) if index == transfer.index => {
                if transfer.bytes < transfer.total {
                    tracing::info!(
                        "Node {node} received {}% of the snapshot at index {index} ({} of {}, {})",
                        transfer.percent(),
                        megabytes(transfer.bytes),
                        megabytes(transfer.total),
                        rate(transfer.bytes, started, now),
                    );
                }
            }
            _ => {
                self.current = Some((transfer.index, now));
                let from = leader.map_or_else(|| "the leader".to_string(), |id| id.to_string());
                tracing::info!(
                    "Node {node} is receiving a snapshot at index {} ({}) from {from}",
                    transfer.index,
                    megabytes(transfer.total),
                );
            }
        }
    }

    /// The whole snapshot at `index` (`bytes` long) arrived and goes to the
    /// state machine and the disk.
    pub(crate) fn received(&mut self, node: NodeId, index: LogIndex, bytes: u64) {
        let now = Instant::now();
        match self.current.take() {
            Some((receiving, started)) if receiving == index => tracing::info!(
                "Node {node} received the snapshot at index {index} ({} in {:.2} s, {}); installing it",
                megabytes(bytes),
                now.duration_since(started).as_secs_f64(),
                rate(bytes, started, now),
            ),
            _ => tracing::info!(
                "Node {node} received the snapshot at index {index} ({}); installing it",
                megabytes(bytes)
            ),
        }
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn rate(bytes: u64, started: Instant, now: Instant) -> String {
    let seconds = now.duration_since(started).as_secs_f64();
    if seconds <= 0.0 {
        return "rate not yet known".to_string();
    }
    format!("{:.1} MB/s", bytes as f64 / 1e6 / seconds)
}
