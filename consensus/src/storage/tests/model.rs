//! Model check: random histories of appends, conflicts, snapshots, hard
//! states and restarts give the file store (with tiny segments, so that
//! compaction deletes segments all the time) exactly the state of the
//! memory store.

use super::FileFactory;
use crate::raft::types::{Entry, HardState, LogIndex, SnapshotMeta};
use crate::storage::conformance::{entry, StoreFactory};
use crate::storage::{LogStore, MemDisk, RestoredState, Snapshot, WriteBatch};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Append `len` entries starting `back` positions before the next index
    /// (0 = plain append, more = truncate a conflicting suffix), maybe in a
    /// new term.
    Append { back: u64, len: u64, new_term: bool },
    /// Snapshot `ahead` entries past the snapshot point, with the log's term
    /// there or a different one.
    Snapshot { ahead: u64, matching: bool },
    /// A new hard state.
    HardState { vote: u64 },
    /// Append leaving a hole: both stores must reject it.
    Hole,
    /// Crash and restart.
    Reopen,
    /// Two operations in one group (one `write_each`, one sync).
    Group(Box<Op>, Box<Op>),
}

fn op() -> impl Strategy<Value = Op> {
    let single = single_op();
    prop_oneof![
        8 => single.clone(),
        1 => (single.clone(), single).prop_map(|(first, second)| Op::Group(Box::new(first), Box::new(second))),
    ]
}

fn single_op() -> impl Strategy<Value = Op> + Clone {
    prop_oneof![
        6 => (0..4u64, 1..4u64, any::<bool>()).prop_map(|(back, len, new_term)| Op::Append { back, len, new_term }),
        2 => (1..6u64, any::<bool>()).prop_map(|(ahead, matching)| Op::Snapshot { ahead, matching }),
        2 => (0..4u64).prop_map(|vote| Op::HardState { vote }),
        1 => Just(Op::Hole),
        2 => Just(Op::Reopen),
    ]
}

/// First and last index of the log in `view` (base, last).
fn bounds(view: &RestoredState) -> (LogIndex, LogIndex) {
    let base = view.snapshot.as_ref().map_or(0, |s| s.meta.last_index);
    (base, view.entries.last().map_or(base, |e| e.index))
}

fn term_at(view: &RestoredState, index: LogIndex) -> Option<u64> {
    view.entries
        .iter()
        .find(|e| e.index == index)
        .map(|e| e.term)
}

/// Turns an operation into a batch valid for the log in `view`.
fn batch_for(op: &Op, view: &RestoredState, term: &mut u64) -> Option<WriteBatch> {
    let (base, last) = bounds(view);
    let batch = match *op {
        Op::Append {
            back,
            len,
            new_term,
        } => {
            *term += u64::from(new_term);
            let start = (last + 1).saturating_sub(back).max(base + 1);
            let entries: Vec<Entry> = (start..start + len)
                .map(|index| entry(index, *term))
                .collect();
            WriteBatch {
                entries,
                ..WriteBatch::default()
            }
        }
        Op::Snapshot { ahead, matching } => {
            let last_index = base + ahead;
            let last_term = match term_at(view, last_index) {
                Some(found) if matching => found,
                _ => *term + 1000,
            };
            let meta = SnapshotMeta {
                last_index,
                last_term,
                membership: Default::default(),
            };
            let data = format!("state {last_index}/{last_term}").into_bytes();
            WriteBatch {
                snapshot: Some(Snapshot {
                    meta,
                    data: data.into(),
                }),
                ..WriteBatch::default()
            }
        }
        Op::HardState { vote } => WriteBatch {
            hard_state: Some(HardState {
                term: *term,
                vote: (vote > 0).then_some(crate::raft::types::NodeId(vote)),
                commit: base,
                incarnation: 0,
            }),
            ..WriteBatch::default()
        },
        Op::Hole => WriteBatch {
            entries: vec![entry(last + 2, *term)],
            ..WriteBatch::default()
        },
        Op::Reopen | Op::Group(..) => return None,
    };
    Some(batch)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn file_store_matches_memory_store(ops in proptest::collection::vec(op(), 1..50)) {
        let disk = MemDisk::new();
        let (mut memory, _) = disk.open();
        let mut files = FileFactory::new(96);
        let (mut file, _) = files.open().expect("open");
        let mut term = 1;
        for op in &ops {
            let (_, view) = disk.open();
            if let Op::Group(first, second) = op {
                // The second batch is made for the log as it is now; the
                // first may change it, and then both stores must agree on
                // whether the second still fits.
                let batches: Vec<WriteBatch> = [first, second]
                    .iter()
                    .filter_map(|op| batch_for(op, &view, &mut term))
                    .collect();
                let expected = memory.write_each(&batches);
                let actual = file.write_each(&batches);
                let expected: Vec<bool> = expected.iter().map(Result::is_ok).collect();
                let actual: Vec<bool> = actual.iter().map(Result::is_ok).collect();
                prop_assert_eq!(expected, actual, "{:?}", op);
                continue;
            }
            match batch_for(op, &view, &mut term) {
                Some(batch) => {
                    let expected = memory.write(std::slice::from_ref(&batch));
                    let actual = file.write(std::slice::from_ref(&batch));
                    prop_assert_eq!(expected.is_ok(), actual.is_ok(), "{:?}: {:?} vs {:?}", op, expected, actual);
                }
                None => {
                    drop(file);
                    let (reopened, recovered) = files.open().expect("reopen");
                    file = reopened;
                    prop_assert_eq!(&recovered, &view);
                    memory = disk.open().0;
                }
            }
        }
        drop(file);
        let (_, recovered) = files.open().expect("final reopen");
        prop_assert_eq!(recovered, disk.open().1);
    }
}
