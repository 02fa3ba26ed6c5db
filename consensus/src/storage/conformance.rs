//! The conformance suite every [`LogStore`] must pass (the contract's
//! "To ensure correctness" section, made executable).
//!
//! ```
//! use consensus::storage::{conformance, MemDisk, MemStore, RestoredState, StorageError};
//!
//! struct Factory(MemDisk);
//! impl conformance::StoreFactory for Factory {
//!     type Store = MemStore;
//!     fn open(&mut self) -> Result<(MemStore, RestoredState), StorageError> {
//!         Ok(self.0.open())
//!     }
//! }
//! conformance::run_all(|| Factory(MemDisk::new()));
//! ```
//!
//! This is test support: a store that breaks the contract makes it panic
//! with the name of the failing case.

use super::{LogStore, RestoredState, Snapshot, StorageError, WriteBatch};
use crate::raft::types::{
    Entry, EntryPayload, HardState, LogIndex, Membership, NodeId, SnapshotMeta, Term,
};

/// Opens the store under test, over the same durable state each time.
pub trait StoreFactory {
    /// The implementation under test.
    type Store: LogStore;

    /// Opens the store. The first call on a new factory sees an empty store;
    /// each later call (after the previous store was dropped) must see what
    /// the earlier stores made durable, as a restarted node would.
    fn open(&mut self) -> Result<(Self::Store, RestoredState), StorageError>;
}

type Case<F> = fn(&mut F);

/// Runs every case, each on a fresh factory from `new_factory`. Panics, naming
/// the case, at the first violation.
pub fn run_all<F: StoreFactory>(mut new_factory: impl FnMut() -> F) {
    let cases: [(&str, Case<F>); 13] = [
        ("a new store is empty", new_store_is_empty),
        ("appends survive reopening", appends_survive_reopening),
        ("the latest hard state survives", hard_state_survives),
        ("a conflict truncates the suffix", conflict_truncates_suffix),
        ("truncation survives restarts", truncation_survives_restarts),
        ("holes are rejected", holes_are_rejected),
        ("batches apply in order", batches_apply_in_order),
        ("a snapshot compacts the log", snapshot_compacts_the_log),
        (
            "a mismatched snapshot discards the log",
            mismatched_snapshot_discards_log,
        ),
        ("a snapshot beyond the log empties it", snapshot_beyond_log),
        (
            "discarded entries stay discarded after compaction",
            discarded_entries_stay_discarded,
        ),
        (
            "compacted or stale data is rejected",
            compacted_or_stale_is_rejected,
        ),
        (
            "one rejected batch spares the others",
            rejection_spares_other_batches,
        ),
    ];
    for (name, case) in cases {
        let mut factory = new_factory();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(&mut factory)));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_default();
            panic!("storage conformance case {name:?} failed: {message}");
        }
    }
}

/// An entry whose payload names its index and term, so mix-ups show.
pub fn entry(index: LogIndex, term: Term) -> Entry {
    Entry {
        term,
        index,
        payload: EntryPayload::Command(format!("entry {index} of term {term}").into_bytes()),
    }
}

/// Entries `range` all in `term`.
pub fn entries(range: std::ops::RangeInclusive<LogIndex>, term: Term) -> Vec<Entry> {
    range.map(|index| entry(index, term)).collect()
}

fn append(entries: Vec<Entry>) -> WriteBatch {
    WriteBatch {
        entries,
        ..WriteBatch::default()
    }
}

fn snapshot(last_index: LogIndex, last_term: Term) -> Snapshot {
    let mut membership = Membership::default();
    membership.voters.insert(NodeId(1));
    Snapshot {
        meta: SnapshotMeta {
            last_index,
            last_term,
            membership,
        },
        data: format!("state up to {last_index}").into_bytes().into(),
    }
}

fn open<F: StoreFactory>(factory: &mut F) -> (F::Store, RestoredState) {
    match factory.open() {
        Ok(opened) => opened,
        Err(error) => panic!("opening the store failed: {error}"),
    }
}

fn write<S: LogStore>(store: &mut S, batch: WriteBatch) {
    if let Err(error) = store.write(&[batch]) {
        panic!("write failed: {error}");
    }
}

/// Drops the store and reopens it, returning what was recovered.
fn reopen<F: StoreFactory>(factory: &mut F, store: F::Store) -> (F::Store, RestoredState) {
    drop(store);
    open(factory)
}

fn new_store_is_empty<F: StoreFactory>(factory: &mut F) {
    let (store, recovered) = open(factory);
    assert_eq!(recovered, RestoredState::default());
    assert_eq!(store.snapshot().ok(), Some(None));
}

fn appends_survive_reopening<F: StoreFactory>(factory: &mut F) {
    let (mut store, _) = open(factory);
    write(&mut store, append(entries(1..=3, 1)));
    write(&mut store, append(entries(4..=5, 2)));
    let (_, recovered) = reopen(factory, store);
    let mut expected = entries(1..=3, 1);
    expected.extend(entries(4..=5, 2));
    assert_eq!(recovered.entries, expected);
}

fn hard_state_survives<F: StoreFactory>(factory: &mut F) {
    let (mut store, _) = open(factory);
    let first = HardState {
        term: 1,
        vote: Some(NodeId(1)),
        commit: 0,
        incarnation: 0,
    };
    let second = HardState {
        term: 2,
        vote: Some(NodeId(3)),
        commit: 1,
        // A joiner's incarnation is part of what must survive.
        incarnation: 0x5EED_0F11,
    };
    write(
        &mut store,
        WriteBatch {
            hard_state: Some(first),
            entries: entries(1..=1, 1),
            snapshot: None,
            staged_snapshot: None,
        },
    );
    write(
        &mut store,
        WriteBatch {
            hard_state: Some(second),
            ..WriteBatch::default()
        },
    );
    let (mut store, recovered) = reopen(factory, store);
    assert_eq!(recovered.hard_state, second);
    // A batch without a hard state leaves it alone.
    write(&mut store, append(entries(2..=2, 2)));
    let (_, recovered) = reopen(factory, store);
    assert_eq!(recovered.hard_state, second);
    assert_eq!(recovered.entries.len(), 2);
}

fn conflict_truncates_suffix<F: StoreFactory>(factory: &mut F) {
    let (mut store, _) = open(factory);
    write(&mut store, append(entries(1..=10, 1)));
    write(&mut store, append(entries(5..=7, 2)));
    let (_, recovered) = reopen(factory, store);
    let mut expected = entries(1..=4, 1);
    expected.extend(entries(5..=7, 2));
    assert_eq!(recovered.entries, expected);
}

fn truncation_survives_restarts<F: StoreFactory>(factory: &mut F) {
    let (mut store, _) = open(factory);
    write(&mut store, append(entries(1..=6, 1)));
    write(&mut store, append(entries(3..=3, 2)));
    let (mut store, _) = reopen(factory, store);
    write(&mut store, append(entries(4..=5, 3)));
    let (mut store, recovered) = reopen(factory, store);
    let mut expected = entries(1..=2, 1);
    expected.push(entry(3, 2));
    expected.extend(entries(4..=5, 3));
    assert_eq!(recovered.entries, expected);
    // Truncating back to the very first entry also sticks.
    write(&mut store, append(entries(1..=1, 4)));
    let (_, recovered) = reopen(factory, store);
    assert_eq!(recovered.entries, entries(1..=1, 4));
}

fn holes_are_rejected<F: StoreFactory>(factory: &mut F) {
    let (mut store, _) = open(factory);
    write(&mut store, append(entries(1..=3, 1)));
    let hole = store.write(&[append(entries(5..=6, 1))]);
    assert!(
        matches!(
            hole,
            Err(StorageError::Hole {
                expected: 4,
                found: 5
            })
        ),
        "{hole:?}"
    );
    let gap = store.write(&[append(vec![entry(4, 1), entry(6, 1)])]);
    assert!(
        matches!(gap, Err(StorageError::NotConsecutive { .. })),
        "{gap:?}"
    );
    // The store is still usable and nothing of the rejected batches stuck.
    write(&mut store, append(entries(4..=4, 1)));
    let (_, recovered) = reopen(factory, store);
    assert_eq!(recovered.entries, entries(1..=4, 1));
}

fn batches_apply_in_order<F: StoreFactory>(factory: &mut F) {
    let (mut store, _) = open(factory);
    let hard_state = HardState {
        term: 3,
        vote: None,
        commit: 2,
        incarnation: 7,
    };
    let batches = [
        append(entries(1..=4, 1)),
        append(entries(3..=3, 2)),
        WriteBatch {
            hard_state: Some(hard_state),
            entries: entries(4..=4, 3),
            snapshot: None,
            staged_snapshot: None,
        },
    ];
    assert!(store.write_each(&batches).iter().all(Result::is_ok));
    let (_, recovered) = reopen(factory, store);
    assert_eq!(
        recovered.entries,
        vec![entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 3)]
    );
    assert_eq!(recovered.hard_state, hard_state);
}

fn snapshot_compacts_the_log<F: StoreFactory>(factory: &mut F) {
    let (mut store, _) = open(factory);
    write(&mut store, append(entries(1..=10, 1)));
    write(
        &mut store,
        WriteBatch {
            snapshot: Some(snapshot(6, 1)),
            ..WriteBatch::default()
        },
    );
    assert_eq!(store.snapshot().ok(), Some(Some(snapshot(6, 1))));
    let (mut store, recovered) = reopen(factory, store);
    assert_eq!(recovered.snapshot, Some(snapshot(6, 1)));
    assert_eq!(recovered.entries, entries(7..=10, 1));
    // The log goes on after the snapshot, and a second snapshot replaces it.
    write(&mut store, append(entries(11..=12, 2)));
    write(
        &mut store,
        WriteBatch {
            snapshot: Some(snapshot(11, 2)),
            ..WriteBatch::default()
        },
    );
    let (_, recovered) = reopen(factory, store);
    assert_eq!(recovered.snapshot, Some(snapshot(11, 2)));
    assert_eq!(recovered.entries, entries(12..=12, 2));
}

fn mismatched_snapshot_discards_log<F: StoreFactory>(factory: &mut F) {
    let (mut store, _) = open(factory);
    write(&mut store, append(entries(1..=10, 1)));
    // A leader's snapshot whose entry at 6 has another term: our 7..10 diverge.
    write(
        &mut store,
        WriteBatch {
            snapshot: Some(snapshot(6, 2)),
            entries: entries(7..=7, 2),
            hard_state: None,
            staged_snapshot: None,
        },
    );
    let (_, recovered) = reopen(factory, store);
    assert_eq!(recovered.snapshot, Some(snapshot(6, 2)));
    assert_eq!(recovered.entries, entries(7..=7, 2));
}

fn snapshot_beyond_log<F: StoreFactory>(factory: &mut F) {
    let (mut store, _) = open(factory);
    write(&mut store, append(entries(1..=3, 1)));
    write(
        &mut store,
        WriteBatch {
            snapshot: Some(snapshot(20, 2)),
            ..WriteBatch::default()
        },
    );
    let (mut store, recovered) = reopen(factory, store);
    assert!(recovered.entries.is_empty());
    write(&mut store, append(entries(21..=22, 2)));
    let (_, recovered) = reopen(factory, store);
    assert_eq!(recovered.snapshot, Some(snapshot(20, 2)));
    assert_eq!(recovered.entries, entries(21..=22, 2));
}

fn discarded_entries_stay_discarded<F: StoreFactory>(factory: &mut F) {
    let (mut store, _) = open(factory);
    write(&mut store, append(entries(1..=5, 1)));
    write(&mut store, append(entries(6..=8, 1)));
    // The entry at 5 has another term: 6..8 go, and 1..5 are compacted.
    write(
        &mut store,
        WriteBatch {
            snapshot: Some(snapshot(5, 2)),
            ..WriteBatch::default()
        },
    );
    let (mut store, recovered) = reopen(factory, store);
    assert!(recovered.entries.is_empty(), "{:?}", recovered.entries);
    write(&mut store, append(entries(6..=7, 2)));
    write(
        &mut store,
        WriteBatch {
            snapshot: Some(snapshot(6, 2)),
            ..WriteBatch::default()
        },
    );
    let (_, recovered) = reopen(factory, store);
    assert_eq!(recovered.snapshot, Some(snapshot(6, 2)));
    assert_eq!(recovered.entries, entries(7..=7, 2));
}

fn compacted_or_stale_is_rejected<F: StoreFactory>(factory: &mut F) {
    let (mut store, _) = open(factory);
    write(&mut store, append(entries(1..=8, 1)));
    write(
        &mut store,
        WriteBatch {
            snapshot: Some(snapshot(5, 1)),
            ..WriteBatch::default()
        },
    );
    let compacted = store.write(&[append(entries(5..=9, 1))]);
    assert!(
        matches!(
            compacted,
            Err(StorageError::Compacted {
                index: 5,
                snapshot_index: 5
            })
        ),
        "{compacted:?}"
    );
    let stale = store.write(&[WriteBatch {
        snapshot: Some(snapshot(5, 1)),
        ..WriteBatch::default()
    }]);
    assert!(
        matches!(stale, Err(StorageError::StaleSnapshot { .. })),
        "{stale:?}"
    );
    let (_, recovered) = reopen(factory, store);
    assert_eq!(recovered.snapshot, Some(snapshot(5, 1)));
    assert_eq!(recovered.entries, entries(6..=8, 1));
}

fn rejection_spares_other_batches<F: StoreFactory>(factory: &mut F) {
    let (mut store, _) = open(factory);
    let results = store.write_each(&[
        append(entries(1..=2, 1)),
        append(entries(9..=9, 1)),
        append(entries(3..=3, 1)),
    ]);
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(
        results[1]
            .as_ref()
            .is_err_and(StorageError::is_rejected_batch),
        "{results:?}"
    );
    let (_, recovered) = reopen(factory, store);
    assert_eq!(recovered.entries, entries(1..=3, 1));
}
