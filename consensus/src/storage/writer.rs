//! [`LogWriter`]: group commit on a dedicated thread.
//!
//! `fdatasync` costs the same for one entry or a thousand, so the writer
//! thread takes every batch queued while the previous sync ran, writes them
//! all, syncs once and completes them all. Under load the number of syncs per
//! second stays near the disk's limit while the entries per sync grow.

use super::{LogStore, Snapshot, StorageError, WriteBatch};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Batches waiting for the writer beyond this make `submit` wait: the
/// back-pressure that keeps a slow disk from growing memory without bound.
const QUEUE_CAPACITY: usize = 4096;

/// At most this many batches share one sync, bounding the latency of the
/// first one in a group.
const MAX_GROUP: usize = 1024;

enum Request {
    Write {
        // Boxed: a batch (with its optional snapshot) is large and the other
        // requests are a channel each.
        batch: Box<WriteBatch>,
        done: oneshot::Sender<Result<(), StorageError>>,
    },
    ReadSnapshot {
        done: oneshot::Sender<Result<Option<Snapshot>, StorageError>>,
    },
    Close {
        done: oneshot::Sender<()>,
    },
}

/// Counters of the writer's work, for benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Batches written (accepted or rejected).
    pub batches: u64,
    /// Groups written; each is one call to [`LogStore::write_each`], so for a
    /// [`super::FileStore`] one `fdatasync` (plus rare segment and snapshot
    /// syncs).
    pub groups: u64,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    groups: AtomicU64,
    /// Groups whose write failed (each then retried until it succeeded).
    failures: AtomicU64,
    /// Set while a failed group is held and retried.
    failing: AtomicBool,
    /// Why, while `failing`.
    reason: Mutex<Option<String>>,
    /// Set by [`LogWriter::close`], so that a retry loop gives up.
    closing: AtomicBool,
}

/// Whether the log writer can write, for the node's status and its
/// refusal of new proposals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriterHealth {
    /// While the disk refuses: why (the operating system's error). The
    /// batches of the failed group are held, unacknowledged, and retried.
    pub failing: Option<String>,
    /// How many groups have failed since the writer started.
    pub failures: u64,
}

/// How long the writer waits before its first retry of a failed group;
/// the wait doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(10);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

/// A cloneable handle to a [`LogStore`] running on its own thread.
///
/// Batches take effect in the order their [`submit`](Self::submit) calls
/// returned, across all clones of the handle. The thread stops when every
/// handle is dropped or [`close`](Self::close) is called; the store's durable
/// state is whatever was acknowledged (plus possibly later batches).
#[derive(Clone)]
pub struct LogWriter {
    requests: mpsc::Sender<Request>,
    counters: Arc<Counters>,
}

/// Completes once a submitted batch is durable (or failed). Dropping it does
/// not cancel the write.
pub struct Durable {
    receiver: oneshot::Receiver<Result<(), StorageError>>,
}

impl Future for Durable {
    type Output = Result<(), StorageError>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver)
            .poll(context)
            .map(|result| result.unwrap_or(Err(StorageError::WriterStopped)))
    }
}

impl LogWriter {
    /// Moves `store` onto a new thread named `raft-log-writer`.
    pub fn spawn<S: LogStore>(store: S) -> Result<LogWriter, StorageError> {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || run(store, receiver, &thread_counters))
            .map_err(|error| StorageError::io("starting the log writer thread", error))?;
        Ok(LogWriter {
            requests: sender,
            counters,
        })
    }

    /// Queues `batch` behind every batch submitted before and returns a
    /// future that completes once it is durable. Waits only if the queue is
    /// full. Submitting the next batch before this one is durable is how a
    /// leader pipelines; ordering is kept.
    pub async fn submit(&self, batch: WriteBatch) -> Result<Durable, StorageError> {
        let (done, receiver) = oneshot::channel();
        self.requests
            .send(Request::Write {
                batch: Box::new(batch),
                done,
            })
            .await
            .map_err(|_| StorageError::WriterStopped)?;
        Ok(Durable { receiver })
    }

    /// Writes `batch` and returns once it is durable: [`submit`](Self::submit)
    /// then wait.
    pub async fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
        self.submit(batch).await?.await
    }

    /// Reads the latest snapshot, after every batch submitted before.
    pub async fn snapshot(&self) -> Result<Option<Snapshot>, StorageError> {
        let (done, receiver) = oneshot::channel();
        self.requests
            .send(Request::ReadSnapshot { done })
            .await
            .map_err(|_| StorageError::WriterStopped)?;
        receiver.await.map_err(|_| StorageError::WriterStopped)?
    }

    /// Writes everything submitted before, closes the store and stops the
    /// thread; later calls on other handles fail with
    /// [`StorageError::WriterStopped`]. Returns once the store is closed, so
    /// the directory may be reopened right after.
    pub async fn close(self) -> Result<(), StorageError> {
        self.counters.closing.store(true, Ordering::SeqCst);
        let (done, receiver) = oneshot::channel();
        self.requests
            .send(Request::Close { done })
            .await
            .map_err(|_| StorageError::WriterStopped)?;
        receiver.await.map_err(|_| StorageError::WriterStopped)
    }

    /// Whether the writer is holding a failed group (the disk refuses
    /// writes), and how often that happened.
    pub fn health(&self) -> WriterHealth {
        WriterHealth {
            failing: if self.counters.failing.load(Ordering::SeqCst) {
                Some(
                    lock(&self.counters.reason)
                        .clone()
                        .unwrap_or_else(|| "the log cannot be written".into()),
                )
            } else {
                None
            },
            failures: self.counters.failures.load(Ordering::Relaxed),
        }
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> WriterStats {
        WriterStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            groups: self.counters.groups.load(Ordering::Relaxed),
        }
    }
}

/// The writer thread: take a request, then everything else already queued,
/// write the writes as one group, answer.
fn run<S: LogStore>(mut store: S, mut requests: mpsc::Receiver<Request>, counters: &Counters) {
    let mut batches = Vec::new();
    let mut waiting = Vec::new();
    while let Some(first) = requests.blocking_recv() {
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Write { batch, done } => {
                    batches.push(*batch);
                    waiting.push(done);
                }
                Request::ReadSnapshot { done } => {
                    write_group(&mut store, &mut batches, &mut waiting, counters);
                    // The reader may have given up waiting; nothing to do then.
                    let _ = done.send(store.snapshot());
                }
                Request::Close { done } => {
                    write_group(&mut store, &mut batches, &mut waiting, counters);
                    drop(store);
                    let _ = done.send(());
                    return;
                }
            }
            if batches.len() < MAX_GROUP {
                next = requests.try_recv().ok();
            }
        }
        write_group(&mut store, &mut batches, &mut waiting, counters);
    }
}

fn write_group<S: LogStore>(
    store: &mut S,
    batches: &mut Vec<WriteBatch>,
    waiting: &mut Vec<oneshot::Sender<Result<(), StorageError>>>,
    counters: &Counters,
) {
    if batches.is_empty() {
        return;
    }
    let mut results = store.write_each(batches);
    if let Some(error) = io_failure(&results) {
        results = retry(store, batches, counters, error);
    }
    counters
        .batches
        .fetch_add(batches.len() as u64, Ordering::Relaxed);
    counters.groups.fetch_add(1, Ordering::Relaxed);
    batches.clear();
    for (done, result) in waiting.drain(..).zip(results) {
        // A submitter that dropped its `Durable` no longer wants the answer.
        let _ = done.send(result);
    }
}

/// The first I/O failure among `results` (not a rejected batch, which is
/// the caller's bug and final).
fn io_failure(results: &[Result<(), StorageError>]) -> Option<StorageError> {
    results.iter().find_map(|result| match result {
        Err(error) if !error.is_rejected_batch() => Some(error.clone()),
        _ => None,
    })
}

/// Holds a group whose write failed and retries it until the disk takes it
/// (or the writer closes): repair the store to its durable state, then
/// write the whole group again. Nothing of the group was acknowledged, so
/// nothing promised is lost, and the requests queued behind it wait: order
/// is kept. The failure is logged once, and once more on recovery.
fn retry<S: LogStore>(
    store: &mut S,
    batches: &mut [WriteBatch],
    counters: &Counters,
    error: StorageError,
) -> Vec<Result<(), StorageError>> {
    let cause = if error.is_disk_full() {
        "the disk is full"
    } else {
        "the disk refused a write"
    };
    tracing::error!(
        "cannot write the Raft log ({cause}): {error}; this node refuses new writes and \
         retries by itself until the disk takes writes again"
    );
    *lock(&counters.reason) = Some(format!("{cause}: {error}"));
    counters.failing.store(true, Ordering::SeqCst);
    counters.failures.fetch_add(1, Ordering::Relaxed);
    let mut delay = FIRST_RETRY_DELAY;
    let mut attempts = 0u64;
    let results = loop {
        if counters.closing.load(Ordering::SeqCst) {
            break batches.iter().map(|_| Err(error.clone())).collect();
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(MAX_RETRY_DELAY);
        attempts += 1;
        let base = match store.repair() {
            Ok(base) => base,
            Err(repair_error) => {
                tracing::debug!("repairing the Raft log failed, will retry: {repair_error}");
                continue;
            }
        };
        for batch in batches.iter_mut() {
            trim_to_snapshot(batch, base);
        }
        let results = store.write_each(batches);
        match io_failure(&results) {
            Some(again) => tracing::debug!("retrying the Raft log write failed: {again}"),
            None => {
                tracing::info!(
                    "the Raft log takes writes again after {attempts} attempts; \
                     this node accepts writes again"
                );
                break results;
            }
        }
    };
    counters.failing.store(false, Ordering::SeqCst);
    *lock(&counters.reason) = None;
    results
}

/// Drops what a snapshot at `base` already covers from a batch written
/// again after a repair: part of the failed group (a snapshot and the
/// batches before it) may have become durable before the failure.
fn trim_to_snapshot(batch: &mut WriteBatch, base: crate::raft::types::LogIndex) {
    if batch
        .snapshot
        .as_ref()
        .is_some_and(|snapshot| snapshot.meta.last_index <= base)
    {
        batch.snapshot = None;
        batch.staged_snapshot = None;
    }
    batch.entries.retain(|entry| entry.index > base);
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Only a string is kept under the lock; a panic cannot leave it torn.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
