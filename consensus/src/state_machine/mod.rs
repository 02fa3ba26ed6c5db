//! The plug-in API: what an application implements to receive the committed
//! log, in order, on every node.
//!
//! # To ensure correctness
//!
//! - `apply` is called with entries in strictly increasing index order with no
//!   gaps, across calls and across restarts (after a restart the runtime may
//!   hand again entries at or below [`StateMachine::applied_index`]; the state
//!   machine must then ignore them, so that applying twice equals applying
//!   once).
//! - The effects of an entry and the new applied index must become durable
//!   together (one SQLite transaction, one file rename, ...): a crash may lose
//!   a suffix of applied entries, never half of one.
//! - `apply` must be deterministic: the same entries produce the same state
//!   and the same responses on every node.
//! - `snapshot` captures exactly the state as of `applied_index`; `restore`
//!   replaces the whole state with a snapshot's. A job returned by
//!   `begin_snapshot` must capture the state as of `applied_index` *at the
//!   time `begin_snapshot` returned*, whatever is applied while it runs.
//!
//! [`conformance`] checks these rules against a real implementation, on
//! real files; every application's state machine runs it in its tests.

pub mod conformance;

use crate::raft::{LogIndex, Membership, Term};

/// A committed command handed to the state machine.
#[derive(Debug, Clone, Copy)]
pub struct CommittedCommand<'a> {
    /// Log index of the entry.
    pub index: LogIndex,
    /// Term of the entry.
    pub term: Term,
    /// The application's command bytes, exactly as proposed.
    pub command: &'a [u8],
}

/// The rest of a snapshot, run on its own thread while the state machine
/// goes on applying (see [`StateMachine::begin_snapshot`]): it writes the
/// serialised state into the sink.
pub type SnapshotJob<E> = Box<dyn FnOnce(&mut SnapshotSink<'_>) -> Result<(), E> + Send>;

/// Where a [`SnapshotJob`] writes the state: the node's snapshot file (so
/// that a node never holds a whole snapshot in memory, which at a million
/// secrets is hundreds of megabytes), or a buffer.
///
/// Writing to it never fails from the job's side: the first I/O error is
/// kept, later writes are dropped, and the runtime reports the error once
/// the job has returned. A job therefore needs no error of its own for the
/// sink's failures.
pub struct SnapshotSink<'a> {
    out: &'a mut dyn std::io::Write,
    failed: Option<std::io::Error>,
    written: u64,
}

impl<'a> SnapshotSink<'a> {
    /// A sink writing into `out`.
    pub fn new(out: &'a mut dyn std::io::Write) -> Self {
        SnapshotSink {
            out,
            failed: None,
            written: 0,
        }
    }

    /// Flushes, and returns how many bytes the job wrote, or the first I/O
    /// error met.
    pub fn finish(mut self) -> std::io::Result<u64> {
        if self.failed.is_none() {
            if let Err(error) = self.out.flush() {
                self.failed = Some(error);
            }
        }
        match self.failed {
            Some(error) => Err(error),
            None => Ok(self.written),
        }
    }
}

impl std::io::Write for SnapshotSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.failed.is_none() {
            if let Err(error) = self.out.write_all(buf) {
                self.failed = Some(error);
            }
        }
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `job` into memory: for a backup sent to a client, and for tests.
pub fn snapshot_to_vec<E>(job: SnapshotJob<E>) -> Result<Vec<u8>, E> {
    let mut bytes = Vec::new();
    let mut sink = SnapshotSink::new(&mut bytes);
    job(&mut sink)?;
    // Writing into a Vec cannot fail.
    let _ = sink.finish();
    Ok(bytes)
}

/// An application replicated by Raft.
pub trait StateMachine: Send + 'static {
    /// What can go wrong applying, reading, snapshotting or restoring. An
    /// error from `apply` is fatal for the node (it cannot skip an entry and
    /// stay consistent), so expected outcomes such as "already exists" belong
    /// in the response bytes, not here.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Whether `error` only means the disk is full (or over quota) and
    /// nothing of the failed call took effect (its transaction rolled
    /// back). The runtime then retries the same batch, with back-off and
    /// without holding the state, until the disk takes it, instead of
    /// stopping the node. The default: no error is.
    fn is_disk_full(error: &Self::Error) -> bool {
        let _ = error;
        false
    }

    /// The index of the last entry whose effects are durable.
    fn applied_index(&self) -> LogIndex;

    /// Applies a batch of committed commands, in order, durably, and returns
    /// one response per command (same order). Commands at or below
    /// `applied_index` are skipped and get an empty response.
    fn apply(&mut self, commands: &[CommittedCommand<'_>]) -> Result<Vec<Vec<u8>>, Self::Error>;

    /// Notes that the entries up to `index` were not commands (no-ops and
    /// membership changes), so the applied index may move past them.
    fn skip_to(&mut self, index: LogIndex) -> Result<(), Self::Error>;

    /// The membership in force changed at log index `index`: every command
    /// after `index` (until the next call) is applied under `membership`.
    /// Called in log order between the commands around a membership entry,
    /// after a snapshot restore with the snapshot's membership, and once at
    /// start-up with the membership in force at [`applied_index`](Self::applied_index),
    /// so the state machine can decide by the configuration at a command's
    /// log index, identically on every node (the vault aborts a 2PC commit
    /// whose participants are not the members then). It is not durable by
    /// itself: the runtime calls it again after every restart. The default
    /// ignores it.
    fn membership_changed(&mut self, index: LogIndex, membership: &Membership) {
        let _ = (index, membership);
    }

    /// Answers a read-only query against the current state.
    fn query(&self, query: &[u8]) -> Result<Vec<u8>, Self::Error>;

    /// Serialises the whole state as of `applied_index`.
    fn snapshot(&mut self) -> Result<Vec<u8>, Self::Error>;

    /// Fixes the state as of `applied_index` and returns a job that
    /// serialises it on another thread, into a sink (the node's snapshot
    /// file), so that applying (and with it every
    /// client write) does not stop for the length of a large snapshot. The
    /// runtime calls it between apply batches and runs at most one job at a
    /// time.
    ///
    /// The default serialises at once with [`snapshot`](Self::snapshot); a
    /// store with consistent read views (SQLite in WAL mode, an MVCC engine)
    /// should pin a view here and read it in the job.
    fn begin_snapshot(&mut self) -> Result<SnapshotJob<Self::Error>, Self::Error> {
        let data = self.snapshot()?;
        Ok(Box::new(move |sink| {
            // The sink keeps its own errors (see `SnapshotSink`).
            let _ = std::io::Write::write_all(sink, &data);
            Ok(())
        }))
    }

    /// Replaces the whole state with the snapshot `data` taken at `index`.
    fn restore(&mut self, index: LogIndex, data: &[u8]) -> Result<(), Self::Error>;
}
