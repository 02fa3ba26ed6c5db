//! The simulated disk of one node: what a crash keeps. Only writes the core's
//! output contract declares durable land here (step 3 of
//! [`Ready`](consensus::raft::Ready), done when the simulation decides the fsync
//! completed); a crash throws away every write still pending.

use super::abstract_log::{AbstractLog, Digest};
use consensus::raft::{Entry, HardState, RestoredState, Snapshot};

/// Durable state of one node.
#[derive(Clone, Debug, Default)]
pub(crate) struct Disk {
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    /// Entries after the snapshot, consecutive.
    entries: Vec<Entry>,
    /// The same log, chain-hashed, for the invariant checkers.
    pub(crate) view: AbstractLog,
}

impl Disk {
    /// Stores a snapshot received from the leader: it replaces the log.
    pub(crate) fn install_snapshot(&mut self, snapshot: Snapshot, chain: Digest) {
        let meta = &snapshot.meta;
        self.view
            .install_base(meta.last_index, meta.last_term, chain);
        self.entries.clear();
        self.snapshot = Some(snapshot);
    }

    /// Stores a snapshot the node took itself and drops the entries it
    /// covers.
    pub(crate) fn compact(&mut self, snapshot: Snapshot) {
        let last = snapshot.meta.last_index;
        self.entries.retain(|entry| entry.index > last);
        self.view.compact(last);
        self.snapshot = Some(snapshot);
    }

    /// Persists the hard state.
    pub(crate) fn write_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    /// Appends `entries`, truncating the stored log from the first one's
    /// index. Entries that would leave a gap are refused (a core bug the
    /// caller reports).
    pub(crate) fn write_entries(&mut self, entries: &[Entry]) -> Result<(), String> {
        for entry in entries {
            if !self.view.write(entry) {
                return Err(format!(
                    "entry {} cannot be stored after index {} (base {})",
                    entry.index,
                    self.view.last_index(),
                    self.view.base_index()
                ));
            }
            // The entries are consecutive after the base, so the position
            // of an index is its distance from the base.
            let keep = (entry.index - self.view.base_index() - 1) as usize;
            self.entries.truncate(keep);
            self.entries.push(entry.clone());
        }
        Ok(())
    }

    /// What a restarting node loads.
    pub(crate) fn restored(&self) -> RestoredState {
        RestoredState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }

    /// The stored entries after the snapshot.
    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The stored snapshot, if any.
    pub(crate) fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }
}
