//! The apply worker: a dedicated thread that owns the state machine.
//!
//! Why a thread and not a task: state machines do blocking work (SQLite
//! transactions, fsync of their own files) that must not stall the tokio
//! workers that drive Raft and the network. The worker receives tasks in the
//! order the driver produced them, so "register a waiter for index i" always
//! arrives before "apply entry i", and a read registered at index i is served
//! only once every entry up to i is applied.
//!
//! Consecutive committed entries are applied as one batch (one SQLite
//! transaction for many client writes), which is where most of the
//! throughput at high concurrency comes from.

use super::error::{panic_message, FatalCell};
use super::waiters::{Resolution, Waiters};
use super::{Fatal, NodeError, StateMachineError, StateMachineOperation, Worker};
use crate::metrics::LatencyHistogram;
use crate::raft::{Entry, EntryPayload, LogIndex, SnapshotMeta, Term};
use crate::state_machine::{snapshot_to_vec, CommittedCommand, StateMachine};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// The answer to one proposal or read.
pub type ApplyResult = Result<Vec<u8>, NodeError>;

/// Work for the apply worker, in the order it must be done.
pub(crate) enum ApplyTask {
    /// Resolve `reply` when the entry at `index` is applied, if its term is
    /// still `term`.
    Await {
        index: LogIndex,
        term: Term,
        reply: oneshot::Sender<ApplyResult>,
    },
    /// Committed entries, consecutive, in order.
    Entries(Vec<Entry>),
    /// Replace the whole state with a snapshot received from the leader.
    Restore {
        meta: SnapshotMeta,
        /// Shared with the core's log, not copied.
        data: bytes::Bytes,
    },
    /// Answer `query` once everything up to `index` is applied.
    ReadAt {
        index: LogIndex,
        query: Vec<u8>,
        reply: oneshot::Sender<ApplyResult>,
    },
    /// Once everything up to `index` is applied, pin the state for a
    /// backup and answer with the job that serialises it.
    BackupAt {
        index: LogIndex,
        reply: oneshot::Sender<Result<PinnedBackup, NodeError>>,
    },
    /// The driver stopped on a fatal error (recorded in the node's
    /// [`FatalCell`]): fail every waiter with it and stop. Only a wake-up;
    /// the worker checks the cell before each task, so if the queue is too
    /// full to take this, the next task queued stops it just the same.
    NodeStopped,
}

/// The state machine's state pinned for a backup at `index` (term `term`):
/// running `job` serialises exactly that state, whatever is applied
/// meanwhile.
pub(crate) struct PinnedBackup {
    pub(crate) index: LogIndex,
    pub(crate) term: Term,
    pub(crate) job: Box<dyn FnOnce() -> Result<Vec<u8>, StateMachineError> + Send>,
}

/// What the worker tells the driver.
#[derive(Debug)]
pub(crate) enum ApplyEvent {
    /// Everything up to this index is applied.
    Applied(LogIndex),
    /// A snapshot of the state machine as of `index`: `data` maps the file
    /// `staged` it was written to, which the log writer makes the snapshot
    /// file (or the driver removes, if the snapshot is dropped).
    SnapshotTaken {
        index: LogIndex,
        data: bytes::Bytes,
        staged: crate::storage::StagedSnapshot,
    },
    /// The state machine failed, or the worker panicked: the node must
    /// stop. The worker has stopped and failed its waiters with it.
    Failed(Fatal),
    /// The state machine's disk is full (`Some(why)`: applying waits and
    /// retries) or takes writes again (`None`).
    DiskFull(Option<String>),
}

/// Why applying a batch failed, and whether only because the disk is full
/// (then nothing of it took effect and it is retried).
struct ApplyFailure {
    error: StateMachineError,
    disk_full: bool,
}

impl ApplyFailure {
    fn of<S: StateMachine>(error: S::Error) -> Self {
        ApplyFailure {
            disk_full: S::is_disk_full(&error),
            error: StateMachineError::new(StateMachineOperation::Apply, error),
        }
    }
}

/// What waits for the state machine to reach a read index.
enum PendingRead {
    /// A query and where its answer goes.
    Query(Vec<u8>, oneshot::Sender<ApplyResult>),
    /// A backup, pinned once the index is reached.
    Backup(oneshot::Sender<Result<PinnedBackup, NodeError>>),
}

/// Shared read access for `--stale` queries, which bypass the task queue.
pub(crate) type SharedMachine<S> = Arc<std::sync::Mutex<S>>;

/// The worker's state, owned by its thread.
pub(crate) struct ApplyWorker<S: StateMachine> {
    machine: SharedMachine<S>,
    waiters: Waiters<oneshot::Sender<ApplyResult>>,
    reads: BTreeMap<LogIndex, Vec<PendingRead>>,
    events: mpsc::UnboundedSender<ApplyEvent>,
    /// The applied index, for tasks that wait for the state machine to
    /// reach an index (2PC participants) without polling.
    applied: watch::Sender<LogIndex>,
    snapshot_every: u64,
    snapshot_after_bytes: u64,
    /// Where snapshot jobs write (the Raft directory).
    snapshot_dir: PathBuf,
    last_snapshot: LogIndex,
    /// Size of the latest snapshot, and command bytes applied since: a
    /// snapshot is taken only once the log has grown by as much as the
    /// last snapshot weighed (see [`ApplyWorker::maybe_snapshot`]).
    last_snapshot_bytes: u64,
    bytes_since_snapshot: u64,
    /// Set while a snapshot job runs on its own thread; it reports the size
    /// of what it produced (or its failure) here.
    snapshot_in_flight: Option<std::sync::mpsc::Receiver<Result<u64, String>>>,
    /// The term of the entry at the applied index, which a backup records
    /// next to its index (so a cluster restored from it starts its log
    /// where this one stood).
    applied_term: Term,
    /// Records how long each batch took to apply (`vault_raft_apply_seconds`).
    apply_latency: LatencyHistogram,
    /// The node's fatal error, shared with the driver and the handles: the
    /// worker records its own failure there, and stops when the driver
    /// records one.
    fatal: FatalCell,
}

impl<S: StateMachine> ApplyWorker<S> {
    /// A worker around `machine` that snapshots as
    /// [`maybe_snapshot`](Self::maybe_snapshot) says; `last_snapshot` is
    /// the index of the latest stored snapshot and `last_snapshot_bytes`
    /// its size, so compaction resumes where it left off.
    pub(crate) fn new(
        machine: SharedMachine<S>,
        events: mpsc::UnboundedSender<ApplyEvent>,
        applied: watch::Sender<LogIndex>,
        (snapshot_every, snapshot_after_bytes): (u64, u64),
        snapshot_dir: PathBuf,
        (last_snapshot, last_snapshot_bytes): (LogIndex, u64),
        apply_latency: LatencyHistogram,
    ) -> Self {
        ApplyWorker {
            machine,
            waiters: Waiters::default(),
            reads: BTreeMap::new(),
            events,
            applied,
            snapshot_every: snapshot_every.max(1),
            snapshot_after_bytes,
            snapshot_dir,
            last_snapshot,
            last_snapshot_bytes,
            bytes_since_snapshot: 0,
            snapshot_in_flight: None,
            applied_term: 0,
            apply_latency,
            fatal: FatalCell::default(),
        }
    }

    /// Shares the node's fatal-error cell (a private one by default).
    pub(crate) fn sharing_fatal(mut self, fatal: FatalCell) -> Self {
        self.fatal = fatal;
        self
    }

    /// Sets the term of the entry at the state machine's applied index at
    /// start; from then on the worker follows it as it applies.
    pub(crate) fn starting_at_term(mut self, term: Term) -> Self {
        self.applied_term = term;
        self
    }

    /// Runs until the task channel closes, then fails every waiter; or
    /// until the state machine fails, the node stops on a fatal error, or
    /// the state machine panics: then records the error, tells the driver,
    /// fails every waiter with [`NodeError::Stopped`] and returns.
    ///
    /// The panic is caught here, at the thread's boundary: uncaught, it
    /// would end the thread silently, and the node would run on without
    /// its state machine (leading, committing, never applying), every
    /// proposal waiting out its timeout.
    pub(crate) fn run(mut self, mut tasks: mpsc::Receiver<ApplyTask>) {
        // Unwind safety: after a panic the worker's state is only used to
        // fail its waiters and reads (each answered once, whatever they
        // held), and the state machine, behind a poisoned lock, is never
        // applied to or read from again (the stale reader checks that the
        // worker is alive first).
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_tasks(&mut tasks)));
        match outcome {
            Ok(Ok(())) => {
                let error = self.fatal.gone();
                self.fail_all(error);
            }
            Ok(Err(fatal)) => self.stop(fatal),
            Err(payload) => {
                let fatal = Fatal::Panicked {
                    worker: Worker::Apply,
                    message: panic_message(payload.as_ref()),
                };
                tracing::error!("{fatal}; the apply worker stops and so does the node");
                self.stop(fatal);
            }
        }
    }

    /// The task loop of [`run`](Self::run): `Ok` once the channel closes,
    /// the fatal error the worker must stop on otherwise.
    fn run_tasks(&mut self, tasks: &mut mpsc::Receiver<ApplyTask>) -> Result<(), Fatal> {
        let mut batch: Vec<Entry> = Vec::new();
        while let Some(first) = tasks.blocking_recv() {
            let mut next = Some(first);
            // Drain what is queued so consecutive entry batches merge into
            // one state machine transaction. Waiters and reads only register
            // (they are resolved after the batch that reaches them), so they
            // do not cut the batch: on a leader every proposal's waiter is
            // interleaved with committed entries, and flushing at each one
            // would turn a batch of 64 writes into 64 SQLite transactions.
            // Only a snapshot restore must see every earlier entry applied.
            while let Some(task) = next.take() {
                // The driver stopped on a fatal error: nothing more is
                // applied, and the waiters learn why.
                if let Some(fatal) = self.fatal.get() {
                    return Err(fatal.clone());
                }
                match task {
                    ApplyTask::Entries(entries) => batch.extend(entries),
                    ApplyTask::Restore { meta, data } => {
                        self.apply_batch(&mut batch)?;
                        // A failed restore leaves the old state in place:
                        // applying the entries after the snapshot on top of
                        // it would make this replica diverge for good.
                        self.restore(&meta, &data)?;
                    }
                    register => self.handle(register),
                }
                next = tasks.try_recv().ok();
            }
            self.apply_batch(&mut batch)?;
        }
        Ok(())
    }

    /// Stops on `fatal`: records it for the node (unless the driver's came
    /// first), tells the driver, and fails every waiter and read with it.
    fn stop(&mut self, fatal: Fatal) {
        let fatal = self.fatal.record(fatal);
        let _ = self.events.send(ApplyEvent::Failed(fatal.clone()));
        self.fail_all(NodeError::Stopped(fatal));
    }

    fn handle(&mut self, task: ApplyTask) {
        match task {
            ApplyTask::Await { index, term, reply } => {
                self.waiters.register(index, term, reply, |displaced, _| {
                    let _ = displaced.send(Err(NodeError::Superseded));
                });
            }
            ApplyTask::ReadAt {
                index,
                query,
                reply,
            } => {
                self.reads
                    .entry(index)
                    .or_default()
                    .push(PendingRead::Query(query, reply));
                self.serve_reads();
            }
            ApplyTask::BackupAt { index, reply } => {
                self.reads
                    .entry(index)
                    .or_default()
                    .push(PendingRead::Backup(reply));
                self.serve_reads();
            }
            // Only a wake-up: `run_tasks` checks the fatal cell before
            // every task.
            ApplyTask::NodeStopped => {}
            ApplyTask::Entries(_) | ApplyTask::Restore { .. } => {
                unreachable!("entries and restores are handled by run_tasks()")
            }
        }
    }

    /// Applies `batch` (and empties it); the fatal error when the machine
    /// failed. A full disk is not a failure: the batch is retried until it
    /// applies.
    fn apply_batch(&mut self, batch: &mut Vec<Entry>) -> Result<(), Fatal> {
        let Some(last) = batch.last() else {
            return Ok(());
        };
        let (last_index, last_term) = (last.index, last.term);
        let started = std::time::Instant::now();
        let outcome = self.apply_until_the_disk_takes_it(batch);
        self.apply_latency.observe(started.elapsed());
        batch.clear();
        match outcome {
            Ok(()) => {
                self.applied_term = last_term;
                let _ = self.events.send(ApplyEvent::Applied(last_index));
                self.applied.send_replace(last_index);
                self.serve_reads();
                self.maybe_snapshot(last_index);
                Ok(())
            }
            Err(error) => {
                tracing::error!(
                    "state machine failed, node stops applying: {}",
                    error.message
                );
                Err(Fatal::StateMachine(error))
            }
        }
    }

    /// Applies `batch`; while the state machine says its disk is full,
    /// waits (not holding the state, so stale reads go on) and tries again:
    /// the entries are committed and must be applied, in order, and the
    /// failed attempt left nothing behind. Logged once, and on recovery.
    fn apply_until_the_disk_takes_it(&mut self, batch: &[Entry]) -> Result<(), StateMachineError> {
        let mut delay = std::time::Duration::from_millis(10);
        let mut attempts = 0u32;
        loop {
            match self.apply_entries(batch) {
                Err(ApplyFailure {
                    disk_full: true,
                    error,
                }) => {
                    let message = &error.message;
                    if attempts == 0 {
                        let _ = self.events.send(ApplyEvent::DiskFull(Some(format!(
                            "the state machine's disk is full ({message})"
                        ))));
                        tracing::error!(
                            "the state machine cannot write, its disk is full ({message}); \
                             applying waits and retries by itself until space is back"
                        );
                    }
                    attempts += 1;
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(std::time::Duration::from_secs(1));
                }
                Err(ApplyFailure { error, .. }) => return Err(error),
                Ok(()) => {
                    if attempts > 0 {
                        let _ = self.events.send(ApplyEvent::DiskFull(None));
                        tracing::info!(
                            "the state machine writes again after {attempts} attempts; applying resumes and this node accepts writes again"
                        );
                    }
                    return Ok(());
                }
            }
        }
    }

    fn apply_entries(&mut self, batch: &[Entry]) -> Result<(), ApplyFailure> {
        let commands: Vec<CommittedCommand<'_>> = batch
            .iter()
            .filter_map(|entry| match &entry.payload {
                EntryPayload::Command(command) => Some(CommittedCommand {
                    index: entry.index,
                    term: entry.term,
                    command,
                }),
                _ => None,
            })
            .collect();
        let mut machine = self.lock_machine();
        // Commands are applied in runs between membership entries, so that
        // the state machine hears of each membership exactly where it
        // takes effect in the log (membership entries are rare: one run
        // per batch almost always).
        let mut responses = Vec::with_capacity(commands.len());
        let mut run_start = 0;
        for entry in batch {
            let EntryPayload::Membership(membership) = &entry.payload else {
                continue;
            };
            let run_end = commands.partition_point(|command| command.index < entry.index);
            if run_end > run_start {
                responses.extend(
                    machine
                        .apply(&commands[run_start..run_end])
                        .map_err(ApplyFailure::of::<S>)?,
                );
            }
            run_start = run_end;
            if entry.index > machine.applied_index() {
                machine.membership_changed(entry.index, membership);
            }
        }
        if commands.len() > run_start {
            responses.extend(
                machine
                    .apply(&commands[run_start..])
                    .map_err(ApplyFailure::of::<S>)?,
            );
        }
        if let Some(last) = batch.last() {
            if machine.applied_index() < last.index {
                machine.skip_to(last.index).map_err(ApplyFailure::of::<S>)?;
            }
        }
        drop(machine);
        let applied_bytes: usize = commands.iter().map(|command| command.command.len()).sum();
        self.bytes_since_snapshot = self
            .bytes_since_snapshot
            .saturating_add(applied_bytes as u64);
        let mut responses = responses.into_iter();
        for entry in batch {
            let response = match entry.payload {
                EntryPayload::Command(_) => responses.next().unwrap_or_default(),
                _ => Vec::new(),
            };
            self.resolve_waiter(entry.index, entry.term, response);
        }
        Ok(())
    }

    /// Answers the proposal of the entry at `(index, term)` with its
    /// response; see [`Waiters::applied`] for who else is superseded.
    fn resolve_waiter(&mut self, index: LogIndex, term: Term, response: Vec<u8>) {
        let mut response = Some(response);
        self.waiters
            .applied(index, term, |reply, resolution| match resolution {
                Resolution::Applied => {
                    let _ = reply.send(Ok(response.take().unwrap_or_default()));
                }
                Resolution::Superseded => {
                    let _ = reply.send(Err(NodeError::Superseded));
                }
            });
    }

    fn serve_reads(&mut self) {
        let applied = self.lock_machine().applied_index();
        while let Some(entry) = self.reads.first_entry() {
            if *entry.key() > applied {
                break;
            }
            for pending in entry.remove() {
                match pending {
                    PendingRead::Query(query, reply) => {
                        let outcome = self.lock_machine().query(&query).map_err(|error| {
                            NodeError::StateMachine(StateMachineError::new(
                                StateMachineOperation::Query,
                                error,
                            ))
                        });
                        let _ = reply.send(outcome);
                    }
                    PendingRead::Backup(reply) => {
                        let _ = reply.send(self.pin_backup());
                    }
                }
            }
        }
    }

    /// Pins the state as of the applied index for a backup (the same
    /// consistent view a Raft snapshot uses), leaving the serialising to
    /// the caller's thread so applying goes on.
    fn pin_backup(&self) -> Result<PinnedBackup, NodeError> {
        let mut machine = self.lock_machine();
        let index = machine.applied_index();
        let backup_failed =
            |error: S::Error| StateMachineError::new(StateMachineOperation::Backup, error);
        let job = machine
            .begin_snapshot()
            .map_err(|error| NodeError::StateMachine(backup_failed(error)))?;
        Ok(PinnedBackup {
            index,
            term: self.applied_term,
            job: Box::new(move || snapshot_to_vec(job).map_err(backup_failed)),
        })
    }

    /// Replaces the state with a snapshot; the fatal error when that
    /// failed, and the worker must stop: the machine holds neither the old
    /// state plus the entries the snapshot covers nor the snapshot's state,
    /// so nothing may be applied to it or read from it again.
    fn restore(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), Fatal> {
        let started = std::time::Instant::now();
        let outcome = self.lock_machine().restore(meta.last_index, data);
        match outcome {
            Ok(()) => {
                self.lock_machine()
                    .membership_changed(meta.last_index, &meta.membership);
                tracing::info!(
                    "installed the snapshot at index {} ({:.1} MB) in the state machine in {:.2} s",
                    meta.last_index,
                    data.len() as f64 / 1e6,
                    started.elapsed().as_secs_f64()
                );
                self.last_snapshot = meta.last_index;
                self.applied_term = meta.last_term;
                self.last_snapshot_bytes = data.len() as u64;
                self.bytes_since_snapshot = 0;
                // Proposals at or below the snapshot were decided elsewhere;
                // their callers retry and their sessions dedup.
                self.waiters.covered(meta.last_index, |reply| {
                    let _ = reply.send(Err(NodeError::Superseded));
                });
                let _ = self.events.send(ApplyEvent::Applied(meta.last_index));
                self.applied.send_replace(meta.last_index);
                self.serve_reads();
                Ok(())
            }
            Err(error) => {
                tracing::error!(
                    "restoring the snapshot at index {} failed, the state machine stops applying \
                     and the node stops: {error}",
                    meta.last_index
                );
                Err(Fatal::StateMachine(StateMachineError::new(
                    StateMachineOperation::Restore {
                        index: meta.last_index,
                    },
                    error,
                )))
            }
        }
    }

    /// Snapshots once `snapshot_every` entries were applied since the last
    /// snapshot *and* the commands applied since weigh at least as much as
    /// that snapshot or `snapshot_after_bytes`, whichever is less. The
    /// weight rule keeps the cost amortised: a snapshot rewrites the whole
    /// state, so with a fixed entry count a large vault would rewrite tens
    /// of megabytes every few seconds under load (we measured 27 MB every
    /// 2.5 s at 4,000 writes/s); with it, snapshots of a small state never
    /// write more bytes than the log they replace. The byte bound is what
    /// keeps the log the core holds in memory bounded once the state is
    /// large (at a million secrets the state is 360 MB; unbounded, the
    /// log in memory grew as large before the next snapshot).
    ///
    /// The state machine pins its state here and a thread of its own
    /// serialises it, so applying goes on meanwhile (a 27 MB snapshot on
    /// this thread stalled every write for a quarter of a second).
    fn maybe_snapshot(&mut self, applied: LogIndex) {
        if !self.snapshot_finished()
            || applied < self.last_snapshot + self.snapshot_every
            || self.bytes_since_snapshot < self.last_snapshot_bytes.min(self.snapshot_after_bytes)
        {
            return;
        }
        let job = match self.lock_machine().begin_snapshot() {
            Ok(job) => job,
            Err(error) => {
                tracing::warn!("snapshot at {applied} failed, will retry: {error}");
                return;
            }
        };
        self.last_snapshot = applied;
        self.bytes_since_snapshot = 0;
        let (done, finished) = std::sync::mpsc::channel();
        let events = self.events.clone();
        let dir = self.snapshot_dir.clone();
        let spawned = std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || {
                let outcome = match crate::storage::stage_snapshot(&dir, applied, job) {
                    Ok((data, staged)) => {
                        let size = data.len() as u64;
                        let _ = events.send(ApplyEvent::SnapshotTaken {
                            index: applied,
                            data,
                            staged,
                        });
                        Ok(size)
                    }
                    Err(error) => Err(error),
                };
                let _ = done.send(outcome);
            });
        match spawned {
            Ok(_) => self.snapshot_in_flight = Some(finished),
            Err(error) => tracing::warn!("cannot start the snapshot thread, will retry: {error}"),
        }
    }

    /// Whether no snapshot job is running (collecting the last one's size).
    fn snapshot_finished(&mut self) -> bool {
        let Some(finished) = &self.snapshot_in_flight else {
            return true;
        };
        let outcome = match finished.try_recv() {
            Ok(outcome) => outcome,
            Err(std::sync::mpsc::TryRecvError::Empty) => return false,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                Err("the snapshot thread ended without an answer".into())
            }
        };
        self.snapshot_in_flight = None;
        match outcome {
            Ok(size) => self.last_snapshot_bytes = size,
            Err(error) => tracing::warn!(
                "snapshot at {} failed, will retry: {error}",
                self.last_snapshot
            ),
        }
        true
    }

    fn fail_all(&mut self, error: NodeError) {
        for reply in self.waiters.take_all() {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, readers) in std::mem::take(&mut self.reads) {
            for pending in readers {
                match pending {
                    PendingRead::Query(_, reply) => {
                        let _ = reply.send(Err(error.clone()));
                    }
                    PendingRead::Backup(reply) => {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    fn lock_machine(&self) -> std::sync::MutexGuard<'_, S> {
        // A poisoned lock means a stale reader panicked mid-query; the state
        // itself is only changed here, so it is still consistent.
        self.machine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
