//! When the core compacts its log after a snapshot: not at once, but once
//! `keep_bytes` of commands were committed after the snapshot.
//!
//! A snapshot is stored as soon as it is taken (the disk's log is
//! compacted then), but the core keeps the entries it covers a while
//! longer: a follower that was away for less than that tail (a restart, a
//! short partition) catches up from entries in the leader's memory instead
//! of receiving and restoring the whole state, which at a million secrets
//! is hundreds of megabytes and several seconds (etcd keeps a tail of
//! entries behind its snapshots for the same reason). Until then the core
//! keeps its previous snapshot, so the entries it holds always follow the
//! snapshot it would send. The memory this costs is bounded: entries since
//! the previous snapshot, at most the snapshot interval plus the tail.

use crate::raft::types::{Entry, EntryPayload, LogIndex};
use crate::raft::RaftCore;
use crate::storage::Snapshot;

/// The driver's bookkeeping of snapshots stored but not yet compacted into
/// the core.
///
/// Two at most: the oldest one pending, which is the next the core will
/// compact to, and the newest one taken since. A snapshot taken while both
/// are held replaces the newest (the one it replaces would never be used:
/// the oldest becomes due first and the newest covers more). The oldest is
/// never replaced: were it, snapshots taken more often than `keep_bytes`
/// are committed would keep every candidate too young, and the core would
/// never compact.
#[derive(Debug)]
pub(super) struct Compaction {
    keep_bytes: u64,
    /// Command bytes committed so far (since the node started).
    committed_bytes: u64,
    /// The oldest and newest snapshots pending, each with `committed_bytes`
    /// when it was taken.
    oldest: Option<(Snapshot, u64)>,
    newest: Option<(Snapshot, u64)>,
    /// The index of the newest snapshot handed to the store: an older one
    /// would be refused there, which stops the node.
    stored_index: LogIndex,
}

impl Compaction {
    /// Compacts `keep_bytes` of commands after each snapshot (0: at once);
    /// `stored_index` is the index of the snapshot on disk at start.
    pub(super) fn new(keep_bytes: u64, stored_index: LogIndex) -> Self {
        Compaction {
            keep_bytes,
            committed_bytes: 0,
            oldest: None,
            newest: None,
            stored_index,
        }
    }

    /// The state machine took `snapshot`: returns whether the runtime must
    /// store it. The core compacts to it now (no tail kept) or once enough
    /// follows it.
    pub(super) fn taken(&mut self, core: &mut RaftCore, snapshot: Snapshot) -> bool {
        let index = snapshot.meta.last_index;
        if index <= self.stored_index {
            tracing::debug!(
                "snapshot at {index} not used: one at {} is stored",
                self.stored_index
            );
            return false;
        }
        if let Err(error) = core.check_snapshot(&snapshot.meta) {
            tracing::debug!("snapshot at {index} not used: {error}");
            return false;
        }
        self.stored_index = index;
        let pending = Some((snapshot, self.committed_bytes));
        if self.keep_bytes == 0 {
            if let Some((snapshot, _)) = pending {
                compact(core, snapshot);
            }
        } else if self.oldest.is_none() {
            self.oldest = pending;
        } else {
            self.newest = pending;
        }
        true
    }

    /// The stored copy of a snapshot (backed by its file) is back from the
    /// store: whichever holds that snapshot, a pending slot or the core,
    /// keeps the copy instead of the bytes in memory.
    pub(super) fn stored(&mut self, core: &mut RaftCore, copy: Snapshot) {
        for (pending, _) in self.oldest.iter_mut().chain(self.newest.iter_mut()) {
            if pending.meta == copy.meta && pending.data.len() == copy.data.len() {
                *pending = copy;
                return;
            }
        }
        core.snapshot_stored(copy);
    }

    /// A snapshot from the leader replaced the core's log; whatever was
    /// pending is older and covered by it.
    pub(super) fn installed(&mut self, index: LogIndex) {
        self.oldest = None;
        self.newest = None;
        self.stored_index = self.stored_index.max(index);
    }

    /// `entries` were committed: counts their commands, and compacts the
    /// core to the newest pending snapshot with a long enough tail.
    pub(super) fn committed(&mut self, core: &mut RaftCore, entries: &[Entry]) {
        let bytes: usize = entries
            .iter()
            .map(|entry| match &entry.payload {
                EntryPayload::Command(command) => command.len(),
                EntryPayload::Blank | EntryPayload::Membership(_) => 0,
            })
            .sum();
        self.committed_bytes += bytes as u64;
        let due = |pending: &Option<(Snapshot, u64)>| {
            pending
                .as_ref()
                .is_some_and(|(_, since)| self.committed_bytes - since >= self.keep_bytes)
        };
        if due(&self.newest) {
            // Covers the oldest too.
            self.oldest = None;
            if let Some((snapshot, _)) = self.newest.take() {
                compact(core, snapshot);
            }
        } else if due(&self.oldest) {
            if let Some((snapshot, _)) = self.oldest.take() {
                compact(core, snapshot);
            }
            self.oldest = self.newest.take();
        }
    }
}

fn compact(core: &mut RaftCore, snapshot: Snapshot) {
    let index = snapshot.meta.last_index;
    if let Err(error) = core.snapshot_taken(snapshot.meta, snapshot.data) {
        tracing::debug!("no compaction to the snapshot at {index}: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::tests::{accept, leader, persist};

    /// A leader (see `raft::tests::leader`) with entries 3..=8 committed,
    /// durable and applied.
    fn applied_through_8() -> RaftCore {
        let mut core = leader();
        let commands = (3..=8).map(|index| format!("command-{index}").into_bytes());
        core.propose(commands.collect()).expect("leader accepts");
        persist(&mut core);
        accept(&mut core, 2, 8);
        persist(&mut core);
        core.applied(8);
        core
    }

    fn snapshot(core: &RaftCore, index: LogIndex, data: &'static [u8]) -> Snapshot {
        Snapshot {
            meta: core.snapshot_meta(index).expect("index held"),
            data: bytes::Bytes::from_static(data),
        }
    }

    /// `compaction.taken` of the snapshot at `index`.
    fn take(
        compaction: &mut Compaction,
        core: &mut RaftCore,
        index: LogIndex,
        data: &'static [u8],
    ) -> bool {
        let taken = snapshot(core, index, data);
        compaction.taken(core, taken)
    }

    /// Committed entries with `bytes` of commands in all.
    fn commands(bytes: usize) -> Vec<Entry> {
        vec![Entry {
            term: 2,
            index: 9,
            payload: EntryPayload::Command(vec![0; bytes]),
        }]
    }

    fn compacted_to(core: &RaftCore) -> LogIndex {
        core.status().snapshot_index
    }

    #[test]
    fn with_no_tail_the_core_compacts_at_once() {
        let mut core = applied_through_8();
        let mut compaction = Compaction::new(0, 0);
        assert!(take(&mut compaction, &mut core, 4, b"state"));
        assert_eq!(compacted_to(&core), 4);
        // An older or equal snapshot is not stored again.
        assert!(!take(&mut compaction, &mut core, 4, b"state"));
    }

    #[test]
    fn the_core_compacts_once_the_tail_behind_the_snapshot_is_long_enough() {
        let mut core = applied_through_8();
        let mut compaction = Compaction::new(25, 0);
        assert!(take(&mut compaction, &mut core, 4, b"state"));
        assert_eq!(compacted_to(&core), 0);
        compaction.committed(&mut core, &commands(20));
        assert_eq!(compacted_to(&core), 0);
        compaction.committed(&mut core, &commands(5));
        assert_eq!(compacted_to(&core), 4);
    }

    /// Snapshots taken more often than the tail is committed still let the
    /// core compact: the oldest pending one is kept, not replaced.
    #[test]
    fn frequent_snapshots_do_not_keep_the_core_from_compacting() {
        let mut core = applied_through_8();
        let mut compaction = Compaction::new(25, 0);
        take(&mut compaction, &mut core, 4, b"four");
        compaction.committed(&mut core, &commands(10));
        take(&mut compaction, &mut core, 5, b"five");
        compaction.committed(&mut core, &commands(10));
        take(&mut compaction, &mut core, 6, b"six");
        compaction.committed(&mut core, &commands(10));
        assert_eq!(compacted_to(&core), 4);
        compaction.committed(&mut core, &commands(20));
        assert_eq!(compacted_to(&core), 6);
    }

    /// The stored copy of a pending snapshot is what the core compacts to.
    #[test]
    fn the_stored_copy_replaces_the_pending_snapshot() {
        let mut core = applied_through_8();
        let mut compaction = Compaction::new(10, 0);
        take(&mut compaction, &mut core, 4, b"in-memory");
        let copy = snapshot(&core, 4, b"from-disk");
        compaction.stored(&mut core, copy);
        compaction.committed(&mut core, &commands(10));
        let held = core.shared.log.snapshot().expect("a snapshot");
        assert_eq!(held.data, bytes::Bytes::from_static(b"from-disk"));
        // A copy of another snapshot changes nothing.
        let other = snapshot(&core, 5, b"elsewhere");
        assert!(!core.snapshot_stored(other));
    }
}
