//! A snapshot restore that fails stops the apply worker: nothing after the
//! snapshot is applied on top of the old state, waiters and reads are
//! failed, and the driver hears of the failure (it then stops the node).

use super::apply::{ApplyEvent, ApplyTask, ApplyWorker};
use super::{Fatal, NodeError};
use crate::raft::{Entry, EntryPayload, LogIndex, SnapshotMeta};
use crate::state_machine::{CommittedCommand, StateMachine};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Applies commands by remembering their indexes; every restore fails, as
/// a snapshot that does not decode or a disk error while writing it would.
#[derive(Default)]
struct RestoreFails {
    applied: Vec<LogIndex>,
}

impl StateMachine for RestoreFails {
    type Error = std::io::Error;

    fn applied_index(&self) -> LogIndex {
        self.applied.last().copied().unwrap_or(0)
    }

    fn apply(&mut self, commands: &[CommittedCommand<'_>]) -> Result<Vec<Vec<u8>>, Self::Error> {
        self.applied
            .extend(commands.iter().map(|command| command.index));
        Ok(commands.iter().map(|_| Vec::new()).collect())
    }

    fn skip_to(&mut self, _index: LogIndex) -> Result<(), Self::Error> {
        Ok(())
    }

    fn query(&self, _query: &[u8]) -> Result<Vec<u8>, Self::Error> {
        Ok(Vec::new())
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, Self::Error> {
        Ok(Vec::new())
    }

    fn restore(&mut self, index: LogIndex, _data: &[u8]) -> Result<(), Self::Error> {
        Err(std::io::Error::other(format!(
            "injected failure restoring {index}"
        )))
    }
}

fn commands(indexes: std::ops::RangeInclusive<LogIndex>) -> Vec<Entry> {
    indexes
        .map(|index| Entry {
            term: 1,
            index,
            payload: EntryPayload::Command(vec![1]),
        })
        .collect()
}

#[test]
fn a_failed_restore_stops_applying_and_fails_waiters_and_reads() {
    let machine = Arc::new(Mutex::new(RestoreFails::default()));
    let (events_sender, mut events) = mpsc::unbounded_channel();
    let (applied_sender, applied) = watch::channel(0);
    let worker = ApplyWorker::new(
        machine.clone(),
        events_sender,
        applied_sender,
        (1_000_000, u64::MAX),
        // Never snapshots (every million entries).
        std::env::temp_dir(),
        (0, 0),
        crate::metrics::LatencyHistogram::default(),
    );
    let (tasks, task_receiver) = mpsc::channel(16);
    let (waiter, waiter_reply) = oneshot::channel();
    let (reader, read_reply) = oneshot::channel();
    let queued = [
        ApplyTask::Entries(commands(1..=3)),
        ApplyTask::Await {
            index: 12,
            term: 1,
            reply: waiter,
        },
        ApplyTask::Restore {
            meta: SnapshotMeta {
                last_index: 10,
                last_term: 1,
                membership: Default::default(),
            },
            data: bytes::Bytes::from_static(b"snapshot"),
        },
        ApplyTask::Entries(commands(11..=12)),
        ApplyTask::ReadAt {
            index: 12,
            query: Vec::new(),
            reply: reader,
        },
    ];
    for task in queued {
        assert!(tasks.try_send(task).is_ok(), "the worker takes tasks");
    }
    let worker_thread = std::thread::spawn(move || worker.run(task_receiver));
    // The worker stops by itself: the task channel stays open, so only the
    // failure can end `run`. The join is bounded by the test harness.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(worker_thread.join().is_ok());
    });
    assert_eq!(
        finished.recv_timeout(Duration::from_secs(60)),
        Ok(true),
        "the apply worker did not stop after the failed restore"
    );
    drop(tasks);

    let applied_entries = machine
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .applied
        .clone();
    assert_eq!(
        applied_entries,
        vec![1, 2, 3],
        "entries after the snapshot were applied on top of the old state"
    );
    assert_eq!(*applied.borrow(), 3);
    assert!(applied.has_changed().is_err(), "the worker ended");

    let mut failed = None;
    while let Ok(event) = events.try_recv() {
        if let ApplyEvent::Failed(fatal) = event {
            failed = Some(fatal);
        }
    }
    let fatal = failed.expect("the driver is told of the failure");
    let message = fatal.to_string();
    assert!(message.contains("snapshot at index 10"), "{message}");
    assert!(matches!(
        waiter_reply.blocking_recv(),
        Ok(Err(NodeError::Stopped(Fatal::StateMachine(_))))
    ));
    // The read was queued behind the restore: it is dropped unanswered
    // with the queue, which its caller sees as a failure too.
    assert!(
        !matches!(read_reply.blocking_recv(), Ok(Ok(_))),
        "a read was served from the state the restore failed to replace"
    );
}
