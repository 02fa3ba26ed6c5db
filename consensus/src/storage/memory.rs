//! [`MemStore`]: the [`LogStore`] of tests and simulations.

use super::tail::Tail;
use super::{LogStore, RestoredState, Snapshot, StorageError, WriteBatch};
use crate::raft::types::{Entry, HardState, LogIndex};
use std::sync::{Arc, Mutex, MutexGuard};

/// The "disk" of memory stores: what a [`MemStore`] made durable outlives the
/// store, so a simulation can crash a node (drop its store) and restart it
/// (open a new store on the same disk).
#[derive(Clone, Default)]
pub struct MemDisk {
    state: Arc<Mutex<DiskState>>,
}

#[derive(Default)]
struct DiskState {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    log: Tail<Entry>,
}

impl MemDisk {
    /// An empty disk.
    pub fn new() -> MemDisk {
        MemDisk::default()
    }

    /// Opens a store on this disk and returns what it holds.
    pub fn open(&self) -> (MemStore, RestoredState) {
        let state = self.lock();
        let recovered = RestoredState {
            hard_state: state.hard_state,
            snapshot: state.snapshot.clone(),
            entries: state.log.items.iter().cloned().collect(),
        };
        drop(state);
        (MemStore { disk: self.clone() }, recovered)
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        // A panic while holding the lock can only come from a failed test
        // assertion elsewhere; the state itself is never left half-updated.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A [`LogStore`] in memory: every write is "durable" (on its [`MemDisk`])
/// when `write` returns. It checks batches exactly as [`super::FileStore`]
/// does, so a simulation catches a core that breaks the storage contract.
pub struct MemStore {
    disk: MemDisk,
}

impl LogStore for MemStore {
    fn write_each(&mut self, batches: &[WriteBatch]) -> Vec<Result<(), StorageError>> {
        let mut state = self.disk.lock();
        batches
            .iter()
            .map(|batch| {
                let snapshot = batch
                    .snapshot
                    .as_ref()
                    .map(|snapshot| (snapshot.meta.last_index, snapshot.meta.last_term));
                state
                    .log
                    .check_batch(snapshot, batch.entries.iter().map(|entry| entry.index))?;
                if let Some(snapshot) = &batch.snapshot {
                    state
                        .log
                        .compact(snapshot.meta.last_index, snapshot.meta.last_term);
                    state.snapshot = Some(snapshot.clone());
                }
                for entry in &batch.entries {
                    state.log.put(entry.index, entry.clone());
                }
                if let Some(hard_state) = batch.hard_state {
                    state.hard_state = hard_state;
                }
                Ok(())
            })
            .collect()
    }

    fn snapshot(&self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.disk.lock().snapshot.clone())
    }

    /// Memory never fails a write, so there is nothing to repair.
    fn repair(&mut self) -> Result<LogIndex, StorageError> {
        Ok(self.disk.lock().log.base_index)
    }
}
