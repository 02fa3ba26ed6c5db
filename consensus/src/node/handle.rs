//! [`Node`]: the cloneable handle the application and the transport use.

use super::apply::{ApplyTask, ApplyWorker, PinnedBackup, SharedMachine};
use super::driver::{Driver, Event};
use super::error::{panic_message, FatalCell};
use super::startup::{self, build_core, StartError};
use super::to_leader::RETRY_PAUSE;
use super::{ApplyResult, NodeError, NodeOptions, NodeStatus, PeerNetwork};
use super::{Fatal, StateMachineError, StateMachineOperation, Worker};
use crate::metrics::Metrics;
use crate::raft::{LogIndex, MembershipChange, Message, NodeId, Role, Term};
use crate::state_machine::StateMachine;
use crate::storage::{FileStore, FileStoreOptions, LogWriter};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How many events may wait for the driver; beyond this, proposals wait
/// (back-pressure) and peer messages are dropped (Raft retransmits).
const EVENT_QUEUE: usize = 65_536;

/// How many tasks may wait for the apply worker. When the state machine
/// falls behind, the driver waits for room (back-pressure reaches the
/// proposers through the event queue and [`NodeError::Busy`]) instead of
/// the queue growing without bound.
pub(crate) const APPLY_QUEUE: usize = 1024;

/// How often a linearizable read waiting for the state machine checks
/// whether the node is stuck on a full disk (see `read_reply_within`).
const STUCK_READ_CHECK: Duration = Duration::from_millis(500);

/// How a read is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Linearizable: ReadIndex through the leader, then wait to apply.
    Linearizable,
    /// Whatever this node has applied (`--stale`).
    Stale,
}

/// A copy of the state machine's whole state for a backup, as of a
/// committed log index ([`Node::backup_snapshot`]).
#[derive(Clone, PartialEq, Eq)]
pub struct BackupSnapshot {
    /// The log index the state is as of (everything through it applied).
    pub index: LogIndex,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The state machine's serialised state (its own snapshot format).
    pub data: Vec<u8>,
}

impl std::fmt::Debug for BackupSnapshot {
    /// Shows the size of the data, never the data: it is the application's
    /// content.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupSnapshot")
            .field("index", &self.index)
            .field("term", &self.term)
            .field("data_len", &self.data.len())
            .finish()
    }
}

type StaleReader = dyn Fn(&[u8]) -> ApplyResult + Send + Sync;

/// A running node. Cheap to clone; every clone talks to the same driver.
///
/// `pending` bounds the proposals and linearizable reads in progress: each
/// holds a permit from its start to its answer, and one that finds none is
/// refused with [`NodeError::Busy`]. Together with the bounded event and
/// apply queues, this keeps memory flat under any load.
#[derive(Clone)]
pub struct Node {
    pub(super) id: NodeId,
    events: mpsc::Sender<Event>,
    apply: mpsc::Sender<ApplyTask>,
    pending: Arc<Semaphore>,
    #[cfg(test)]
    max_pending: usize,
    pub(super) network: Arc<dyn PeerNetwork>,
    pub(super) status: watch::Receiver<NodeStatus>,
    stale: Arc<StaleReader>,
    /// The state machine's applied index, updated after every batch.
    applied: watch::Receiver<LogIndex>,
    pub(super) timeout: Duration,
    metrics: Metrics,
    /// The fatal error the node stopped on, once it has: what a request
    /// that finds the driver or the apply worker gone is answered with.
    pub(super) fatal: FatalCell,
}

impl Node {
    /// Opens the Raft log in `options.raft_dir`, brings `machine` up to the
    /// stored snapshot if it is behind, and starts the driver and the apply
    /// worker. The returned task ends when the node stops: `Ok` after
    /// [`Node::shutdown`], or the [`Fatal`] error it stopped on (its log or
    /// its state machine failed, or the driver or the apply thread
    /// panicked). Requests then get [`NodeError::Stopped`] with that error.
    ///
    /// A Raft directory without state is refused with
    /// [`StartError::NoState`] before anything is written, unless
    /// `options.join` is set: the node then starts as a new member with a
    /// fresh incarnation (see [`preflight`](super::preflight)).
    pub fn start<S: StateMachine, N: PeerNetwork>(
        options: &NodeOptions,
        mut machine: S,
        network: Arc<N>,
    ) -> Result<(Node, tokio::task::JoinHandle<Result<(), Fatal>>), StartError> {
        startup::preflight(options)?;
        let store_options = FileStoreOptions {
            fsync_latency: Some(options.metrics.wal_fsync_latency().clone()),
            ..FileStoreOptions::default()
        };
        let (store, recovered) = FileStore::open(&options.raft_dir, store_options)?;
        let last_snapshot = recovered.snapshot.as_ref().map_or((0, 0), |snapshot| {
            (snapshot.meta.last_index, snapshot.data.len() as u64)
        });
        if let Some(snapshot) = &recovered.snapshot {
            if machine.applied_index() < snapshot.meta.last_index {
                machine
                    .restore(snapshot.meta.last_index, &snapshot.data)
                    .map_err(|error| StartError::StateMachine {
                        index: snapshot.meta.last_index,
                        source: Box::new(error),
                    })?;
            }
        }
        let core = build_core(options, recovered, machine.applied_index())?;
        machine.membership_changed(
            machine.applied_index(),
            &core.membership_at(machine.applied_index()),
        );
        let writer = LogWriter::spawn(store)?;

        let fatal = FatalCell::default();
        let machine: SharedMachine<S> = Arc::new(std::sync::Mutex::new(machine));
        let (apply_sender, apply_tasks) = mpsc::channel(APPLY_QUEUE);
        let (apply_events_sender, apply_events) = mpsc::unbounded_channel();
        let initial_applied = machine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .applied_index();
        let (applied_sender, applied) = watch::channel(initial_applied);
        let worker = ApplyWorker::new(
            machine.clone(),
            apply_events_sender,
            applied_sender,
            (options.snapshot_every, options.snapshot_after_bytes),
            options.raft_dir.clone(),
            last_snapshot,
            options.metrics.apply_latency().clone(),
        )
        // The applied entry is in the log or is the snapshot's last one (it
        // was durable before it was applied); a backup taken before any
        // entry of this run is applied records its term.
        .starting_at_term(
            core.snapshot_meta(initial_applied)
                .map_or(0, |meta| meta.last_term),
        )
        .sharing_fatal(fatal.clone());
        std::thread::Builder::new()
            .name(format!("apply-{}", options.id))
            .spawn(move || worker.run(apply_tasks))?;

        let (status_sender, status) = watch::channel(NodeStatus::from_core(&core.status()));
        let (events_sender, events) = mpsc::channel(EVENT_QUEUE);
        let driver = Driver::new(
            core,
            network.clone(),
            writer,
            apply_sender.clone(),
            status_sender,
            options.tick(),
            super::disk::DiskGuard::new(options.raft_dir.clone(), options.min_free_bytes),
        )
        .with_metrics(options.metrics.clone())
        .sharing_fatal(fatal.clone())
        .keeping_log_bytes(options.keep_log_bytes);
        let task = spawn_driver(
            options.id,
            driver.run(events, apply_events),
            fatal.clone(),
            apply_sender.clone(),
        );
        let worker_alive = applied.clone();
        let stale_fatal = fatal.clone();
        let stale: Arc<StaleReader> = Arc::new(move |query: &[u8]| {
            // The apply worker drops its end when it stops, on a failed
            // apply or restore or a panic: the state left behind may be
            // neither the old one nor the new one, so it is not served.
            // The cell is set first (the worker may still be failing its
            // waiters), and after any fatal error: a stopped node serves
            // nothing.
            if stale_fatal.get().is_some() || worker_alive.has_changed().is_err() {
                return Err(stale_fatal.gone());
            }
            let machine = machine
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            machine.query(query).map_err(|error| {
                NodeError::StateMachine(StateMachineError::new(StateMachineOperation::Query, error))
            })
        });
        let node = Node {
            id: options.id,
            events: events_sender,
            apply: apply_sender,
            pending: Arc::new(Semaphore::new(options.max_pending_requests.max(1))),
            #[cfg(test)]
            max_pending: options.max_pending_requests.max(1),
            network,
            status,
            stale,
            applied,
            timeout: options.request_timeout,
            metrics: options.metrics.clone(),
            fatal,
        };
        Ok((node, task))
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The node's latest status.
    pub fn status(&self) -> NodeStatus {
        self.status.borrow().clone()
    }

    /// A receiver that wakes at each change of the node's status (at most
    /// about once per tick), for a watcher of leader changes such as the
    /// systemd notifier.
    pub fn watch_status(&self) -> watch::Receiver<NodeStatus> {
        self.status.clone()
    }

    /// The metrics this node records into ([`NodeOptions::metrics`]); the
    /// application adds its own counts (2PC decisions) through it.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The index of the last entry this node's state machine applied. Unlike
    /// [`Node::status`], which is refreshed at most once per tick, it is
    /// current after every apply batch.
    pub fn applied_index(&self) -> LogIndex {
        *self.applied.borrow()
    }

    /// Waits until this node's state machine has applied `index`, or until
    /// `deadline`; returns whether it got there. Woken by each apply batch,
    /// so a waiter learns of progress at once rather than at its next poll.
    pub async fn wait_applied(&self, index: LogIndex, deadline: Instant) -> bool {
        let mut applied = self.applied.clone();
        // Bound to a local: as a tail expression the borrow of `applied`
        // would outlive it.
        let reached = tokio::time::timeout_at(deadline, applied.wait_for(|now| *now >= index))
            .await
            .is_ok_and(|outcome| outcome.is_ok());
        reached
    }

    /// Hands a Raft message from a peer to the driver. Never waits: when the
    /// queue is full the message is dropped and Raft retransmits.
    pub fn deliver(&self, message: Message) {
        tracing::debug!(
            "Node {} runs RPC {} called by Node {}",
            message.to,
            message.rpc_name(),
            message.from
        );
        let _ = self.events.try_send(Event::Peer(message));
    }

    /// How many requests are in progress now (a closure, so a test can
    /// poll it while the node is in use).
    #[cfg(test)]
    pub(crate) fn pending_requests(&self) -> impl Fn() -> usize {
        let (pending, limit) = (self.pending.clone(), self.max_pending);
        move || limit - pending.available_permits()
    }

    /// How many more tasks the apply queue takes before its sender waits.
    #[cfg(test)]
    pub(crate) fn apply_queue_room(&self) -> impl Fn() -> usize {
        let apply = self.apply.clone();
        move || apply.capacity()
    }

    /// A permit for one request in progress, or [`NodeError::Busy`].
    pub(super) fn admit(&self) -> Result<OwnedSemaphorePermit, NodeError> {
        self.pending
            .clone()
            .try_acquire_owned()
            .map_err(|_| NodeError::Busy)
    }

    /// Answers `query` from the state machine with the given consistency.
    ///
    /// A linearizable read is refused with [`NodeError::Busy`] when the node
    /// has too many requests in progress, and fails with
    /// [`NodeError::Unavailable`] if it is not answered within the request
    /// timeout, so no reader waits forever.
    pub async fn read(&self, query: Vec<u8>, consistency: ReadConsistency) -> ApplyResult {
        if consistency == ReadConsistency::Stale {
            // The query takes the state machine's lock, which the apply
            // worker holds for a whole batch, and may scan many rows: it
            // runs on a blocking thread so that it never holds up the
            // async threads (with a single one, the Raft driver and every
            // connection would wait for it).
            let stale = self.stale.clone();
            return tokio::task::spawn_blocking(move || stale(&query))
                .await
                .unwrap_or_else(|panicked| {
                    Err(NodeError::StateMachine(StateMachineError::new(
                        StateMachineOperation::Query,
                        panicked,
                    )))
                });
        }
        let _pending = self.admit()?;
        let deadline = Instant::now() + self.timeout;
        let index = self.read_index_within(deadline).await?;
        let (reply, response) = oneshot::channel();
        let task = ApplyTask::ReadAt {
            index,
            query,
            reply,
        };
        match tokio::time::timeout_at(deadline, self.apply.send(task)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(self.fatal.gone()),
            Err(_) => return Err(NodeError::Unavailable),
        }
        self.read_reply_within(response, deadline).await
    }

    /// A consistent copy of the whole replicated state for a backup
    /// (`snapshot save`): a linearizable ReadIndex round, then, once this
    /// node has applied through that index, the state machine's snapshot of
    /// its state at its applied index (at or past the read index, so the
    /// copy holds every write acknowledged before the call). The state is
    /// pinned on the apply thread and serialised on a blocking thread, so
    /// applying goes on meanwhile.
    ///
    /// Refused with [`NodeError::Busy`] when the node has too many requests
    /// in progress; [`NodeError::Unavailable`] when no leader confirms the
    /// read index, or this node does not reach it, within the request
    /// timeout.
    pub async fn backup_snapshot(&self) -> Result<BackupSnapshot, NodeError> {
        let _pending = self.admit()?;
        let deadline = Instant::now() + self.timeout;
        let index = self.read_index_within(deadline).await?;
        let (reply, response) = oneshot::channel();
        let task = ApplyTask::BackupAt { index, reply };
        match tokio::time::timeout_at(deadline, self.apply.send(task)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(self.fatal.gone()),
            Err(_) => return Err(NodeError::Unavailable),
        }
        let pinned = match tokio::time::timeout_at(deadline, response).await {
            Ok(outcome) => outcome.unwrap_or_else(|_| Err(self.fatal.gone()))?,
            Err(_) => return Err(NodeError::Unavailable),
        };
        let PinnedBackup { index, term, job } = pinned;
        // A backup that fails (or whose thread panics) fails this request
        // only: the pinned state is a copy, the node goes on.
        let data = tokio::task::spawn_blocking(job)
            .await
            .map_err(|error| {
                NodeError::StateMachine(StateMachineError::new(
                    StateMachineOperation::Backup,
                    format!("the snapshot thread failed: {error}"),
                ))
            })?
            .map_err(NodeError::StateMachine)?;
        Ok(BackupSnapshot { index, term, data })
    }

    /// Waits for a linearizable read's answer from the apply worker. A
    /// state machine that cannot write (SQLite's disk is full) cannot apply
    /// up to the read index, so such a read would only time out: while the
    /// node refuses writes and its applied index stands still, the read is
    /// refused at once with [`NodeError::DiskFull`] instead, the same clear
    /// error a write gets.
    async fn read_reply_within(
        &self,
        mut response: oneshot::Receiver<ApplyResult>,
        deadline: Instant,
    ) -> ApplyResult {
        let mut last_applied = self.applied_index();
        loop {
            let check = (Instant::now() + STUCK_READ_CHECK).min(deadline);
            match tokio::time::timeout_at(check, &mut response).await {
                Ok(outcome) => return outcome.unwrap_or_else(|_| Err(self.fatal.gone())),
                Err(_) if Instant::now() >= deadline => return Err(NodeError::Unavailable),
                Err(_) => {
                    let applied = self.applied_index();
                    let refused = self.status.borrow().writes_refused.clone();
                    if let (true, Some(reason)) = (applied == last_applied, refused) {
                        return Err(NodeError::DiskFull(format!(
                            "node {}: {reason}; reads that need the latest state wait for it \
                             (stale reads are served)",
                            self.id
                        )));
                    }
                    last_applied = applied;
                }
            }
        }
    }

    /// Asks the leader (this node must be it) to hand leadership to `to`, or
    /// to the most caught-up voter; returns the target.
    pub async fn transfer_leader(&self, to: Option<NodeId>) -> Result<NodeId, NodeError> {
        let (reply, response) = oneshot::channel();
        self.send_event(Event::TransferLeader { to, reply }).await?;
        let target = response.await.unwrap_or_else(|_| Err(self.fatal.gone()))?;
        // Wait until the transfer took effect (or the timeout passed).
        let mut status = self.status.clone();
        let finished = tokio::time::timeout(self.timeout, async {
            loop {
                if status.borrow().leader == Some(target) {
                    return true;
                }
                if status.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await;
        match finished {
            Ok(true) => Ok(target),
            _ => Err(NodeError::Unavailable),
        }
    }

    /// Proposes a one-server-at-a-time membership change on this node
    /// (leader only) and returns the index of its entry, without waiting
    /// for it to commit. Refused with [`NodeError::Refused`] while another
    /// change is in progress: an uncommitted membership entry, or a
    /// learner that has not been promoted yet (only removing that learner
    /// is allowed then, which cancels its addition).
    pub async fn change_membership(&self, change: MembershipChange) -> Result<LogIndex, NodeError> {
        let (reply, response) = oneshot::channel();
        self.send_event(Event::ChangeMembership { change, reply })
            .await?;
        response.await.unwrap_or_else(|_| Err(self.fatal.gone()))
    }

    /// What an operator's `member add` / `member remove` does on the
    /// leader: proposes `change`, retrying while the leader is not ready
    /// for it (a new leader's first entry not yet committed, a transfer
    /// under way), and waits until the change is committed and in force
    /// here. Returns the status then.
    ///
    /// A follower answers [`NodeError::NotLeader`] naming the leader, for
    /// the caller to forward the request; a change that a new leader
    /// discarded before it committed fails with [`NodeError::Superseded`].
    /// A learner added this way is promoted to voter by the leader once it
    /// has caught up (see the driver).
    pub async fn change_membership_and_wait(
        &self,
        change: MembershipChange,
    ) -> Result<NodeStatus, NodeError> {
        let deadline = Instant::now() + self.timeout;
        let index = loop {
            match self.change_membership(change.clone()).await {
                Err(NodeError::NotLeader { leader }) if leader.is_some_and(|l| l != self.id) => {
                    return Err(NodeError::NotLeader { leader });
                }
                Err(error) if error.is_retryable() && Instant::now() < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(error) if error.is_retryable() => return Err(NodeError::Unavailable),
                outcome => break outcome?,
            }
        };
        let mut status = self.status.clone();
        let committed = tokio::time::timeout_at(
            deadline,
            status.wait_for(|status| status.commit_index >= index),
        )
        .await;
        if !matches!(committed, Ok(Ok(_))) {
            return Err(NodeError::Unavailable);
        }
        let status = self.status();
        let in_force = match &change {
            MembershipChange::AddLearner { node, .. } => {
                status.members.iter().any(|member| member.id == *node)
            }
            MembershipChange::PromoteLearner(node) => status.voters.contains(node),
            MembershipChange::RemoveNode(node) => {
                status.members.iter().all(|member| member.id != *node)
            }
        };
        if in_force {
            Ok(status)
        } else {
            Err(NodeError::Superseded)
        }
    }

    /// Stops the driver (in-flight log writes complete first, since the log
    /// writer drains its queue before closing).
    pub async fn shutdown(&self) {
        let _ = self.events.send(Event::Shutdown).await;
    }

    /// Whether this node currently believes it leads.
    pub fn is_leader(&self) -> bool {
        self.status.borrow().role == Role::Leader.to_string()
    }

    pub(super) async fn send_event(&self, event: Event) -> Result<(), NodeError> {
        self.events.send(event).await.map_err(|_| self.fatal.gone())
    }
}

/// Runs the driver as a task of its own under a watcher task whose handle
/// is the node's: a panic of the driver is caught there (tokio catches it
/// at the task's boundary) and becomes [`Fatal::Panicked`], recorded for
/// the handles, with the apply worker told to stop, just as the driver
/// itself stops on a fatal error. Aborting the returned handle aborts the
/// driver too, as when the handle was the driver's own.
pub(crate) fn spawn_driver(
    id: NodeId,
    driver: impl std::future::Future<Output = Result<(), Fatal>> + Send + 'static,
    fatal: FatalCell,
    apply: mpsc::Sender<ApplyTask>,
) -> tokio::task::JoinHandle<Result<(), Fatal>> {
    /// Aborts the driver when the watcher ends or is dropped (a no-op once
    /// the driver is done).
    struct AbortOnDrop(tokio::task::AbortHandle);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let driver = tokio::spawn(driver);
    let abort = AbortOnDrop(driver.abort_handle());
    tokio::spawn(async move {
        let _abort = abort;
        let join_error = match driver.await {
            Ok(outcome) => return outcome,
            Err(join_error) => join_error,
        };
        let message = match join_error.try_into_panic() {
            Ok(payload) => panic_message(payload.as_ref()),
            // Cancelled: only when the runtime shuts down under the node.
            Err(join_error) => join_error.to_string(),
        };
        let stopped = fatal.record(Fatal::Panicked {
            worker: Worker::Driver,
            message,
        });
        tracing::error!("node {id} stops: {stopped}");
        let _ = apply.try_send(ApplyTask::NodeStopped);
        Err(stopped)
    })
}
