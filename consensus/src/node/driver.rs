//! The driver task: the one owner of the Raft core.
//!
//! Each turn of the loop waits for something to happen (an event, an apply
//! report, a tick that matters: see `tick_clock.rs`), makes the ticks that
//! have passed, drains everything else already queued, feeds it all to
//! the core, then carries out the core's [`Ready`] in the order its contract
//! gives. Draining before asking for `Ready` is deliberate: 64 clients'
//! proposals that arrive together become one log append, one fsync and one
//! AppendEntries per follower.

use super::apply::{ApplyEvent, ApplyResult, ApplyTask};
use super::compaction::Compaction;
use super::disk::DiskGuard;
use super::error::FatalCell;
use super::snapshot_log::IncomingSnapshotLog;
use super::status::NodeStatus;
use super::tick_clock::TickClock;
use super::{Fatal, LogOperation, NodeError, PeerNetwork};
use crate::metrics::Metrics;
use crate::raft::{
    LogIndex, Membership, MembershipChange, MembershipError, Message, NodeId, ProgressMark,
    RaftCore, Ready, RequestId, Role, Term,
};
use crate::storage::{self, LogWriter, WriteBatch};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// At most this many events are taken per loop turn, so ticks and apply
/// reports are never starved by a flood of proposals.
const MAX_EVENTS_PER_TURN: usize = 4096;

/// What ended the driver's wait.
enum Woken {
    Persisted(PersistReport),
    Applied(ApplyEvent),
    Stored(storage::Snapshot),
    Event(Option<Event>),
    /// The core is due for a tick.
    Alarm,
}

/// Everything that can happen to a node, sent by [`Node`](super::Node)
/// handles and the transport.
pub(crate) enum Event {
    /// A Raft message from a peer.
    Peer(Message),
    /// Append `command` to the log (leader only) and answer once applied.
    Propose {
        command: Vec<u8>,
        reply: oneshot::Sender<ApplyResult>,
    },
    /// Start a ReadIndex round (leader only); answer with the read index.
    ReadIndex {
        reply: oneshot::Sender<Result<LogIndex, NodeError>>,
    },
    /// Hand leadership to `to` (or the most caught-up voter).
    TransferLeader {
        to: Option<NodeId>,
        reply: oneshot::Sender<Result<NodeId, NodeError>>,
    },
    /// Change the membership, one server at a time.
    ChangeMembership {
        change: MembershipChange,
        reply: oneshot::Sender<Result<LogIndex, NodeError>>,
    },
    /// Stop the node.
    Shutdown,
}

use super::follow_up::{spawn_follow_up_task, PersistFollowUp, PersistReport};

mod publish;
mod snapshots;

/// The driver's state; see the module documentation.
pub(crate) struct Driver<N: PeerNetwork> {
    pub(crate) core: RaftCore,
    pub(crate) network: Arc<N>,
    pub(crate) writer: LogWriter,
    /// Bounded: when the state machine falls behind, the driver waits for
    /// room here rather than queueing without limit.
    pub(crate) apply: mpsc::Sender<ApplyTask>,
    pub(crate) status: watch::Sender<NodeStatus>,
    pub(crate) tick: Duration,
    pending_reads: BTreeMap<RequestId, oneshot::Sender<Result<LogIndex, NodeError>>>,
    next_read_id: RequestId,
    follow_ups: Option<mpsc::UnboundedSender<PersistFollowUp>>,
    persisted: mpsc::UnboundedReceiver<PersistReport>,
    persisted_sender: mpsc::UnboundedSender<PersistReport>,
    /// Batches handed to the log writer whose follow-up the driver has not
    /// heard back from yet: while there are none, everything submitted is
    /// durable and its messages are out.
    follow_ups_in_flight: usize,
    /// The stored copies of snapshots the log writer wrote, backed by their
    /// files, for the core to hold instead of the in-memory ones.
    stored_snapshots: mpsc::UnboundedReceiver<storage::Snapshot>,
    stored_snapshots_sender: mpsc::UnboundedSender<storage::Snapshot>,
    /// Snapshots stored but not yet compacted into the core.
    compaction: Compaction,
    /// The fatal error met during this loop turn; the driver stops at the
    /// end of the turn (so a turn's other work is not cut in half).
    failed: Option<Fatal>,
    /// The node's fatal error, shared with the apply worker and the
    /// handles, so that requests arriving after the driver stopped are
    /// answered with it.
    fatal: FatalCell,
    /// When the status was last published: building it allocates, so under
    /// load it is refreshed at most once per tick.
    status_published: Option<tokio::time::Instant>,
    /// The core's progress when the status was last published, and
    /// whether it has moved since without being published.
    status_mark: Option<ProgressMark>,
    status_stale: bool,
    /// The latest membership last given to
    /// [`PeerNetwork::members_changed`], and whether it was committed.
    announced: Option<(Membership, bool)>,
    /// When the snapshot arriving from the leader started, for the rate in
    /// its progress lines.
    incoming_snapshot: IncomingSnapshotLog,
    /// Whether the disk takes new writes (free-space reserve, writer
    /// failures); see `disk.rs`.
    disk: DiskGuard,
    /// Where the driver records the Raft gauges, proposals and commit
    /// latencies.
    metrics: Metrics,
    /// On the leader: when each proposal not yet committed was appended,
    /// oldest (lowest index) first, for the commit latency histogram.
    /// Emptied when the node stops leading, so it never outgrows the
    /// uncommitted tail of one leader's log.
    uncommitted: VecDeque<(LogIndex, std::time::Instant)>,
}

impl<N: PeerNetwork> Driver<N> {
    pub(crate) fn new(
        core: RaftCore,
        network: Arc<N>,
        writer: LogWriter,
        apply: mpsc::Sender<ApplyTask>,
        status: watch::Sender<NodeStatus>,
        tick: Duration,
        disk: DiskGuard,
    ) -> Self {
        let (persisted_sender, persisted) = mpsc::unbounded_channel();
        let (stored_snapshots_sender, stored_snapshots) = mpsc::unbounded_channel();
        let compaction = Compaction::new(0, core.status().snapshot_index);
        Driver {
            core,
            network,
            writer,
            apply,
            status,
            tick,
            pending_reads: BTreeMap::new(),
            next_read_id: 1,
            follow_ups: None,
            persisted,
            persisted_sender,
            follow_ups_in_flight: 0,
            stored_snapshots,
            stored_snapshots_sender,
            compaction,
            failed: None,
            fatal: FatalCell::default(),
            status_published: None,
            status_mark: None,
            status_stale: false,
            announced: None,
            incoming_snapshot: IncomingSnapshotLog::default(),
            disk,
            metrics: Metrics::default(),
            uncommitted: VecDeque::new(),
        }
    }

    /// Records into `metrics` (the node's) instead of a private registry.
    pub(crate) fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Keeps `bytes` of commands in the core behind each snapshot before
    /// compacting to it (none by default); see `compaction.rs`.
    pub(crate) fn keeping_log_bytes(mut self, bytes: u64) -> Self {
        self.compaction = Compaction::new(bytes, self.core.status().snapshot_index);
        self
    }

    /// Shares the node's fatal-error cell (a private one by default).
    pub(crate) fn sharing_fatal(mut self, fatal: FatalCell) -> Self {
        self.fatal = fatal;
        self
    }

    /// Runs until shutdown (`Ok`) or a fatal failure of the log, the state
    /// machine or the apply thread (`Err`, after every pending read and,
    /// through the apply worker, every pending proposal got it as
    /// [`NodeError::Stopped`]).
    pub(crate) async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        mut apply_events: mpsc::UnboundedReceiver<ApplyEvent>,
    ) -> Result<(), Fatal> {
        self.follow_ups = Some(spawn_follow_up_task(
            self.network.clone(),
            self.persisted_sender.clone(),
        ));
        let mut clock = TickClock::new(self.tick, tokio::time::Instant::now());
        let alarm = tokio::time::sleep_until(clock.deadline(self.core.ticks_until_due()));
        tokio::pin!(alarm);
        let mut proposals = Vec::new();
        loop {
            let tick_due = clock.deadline(self.core.ticks_until_due());
            alarm
                .as_mut()
                .reset(self.status_due().map_or(tick_due, |due| due.min(tick_due)));
            let woken = tokio::select! {
                biased;
                Some(report) = self.persisted.recv() => Woken::Persisted(report),
                Some(report) = apply_events.recv() => Woken::Applied(report),
                Some(stored) = self.stored_snapshots.recv() => Woken::Stored(stored),
                event = events.recv() => Woken::Event(event),
                () = &mut alarm => Woken::Alarm,
            };
            // Every tick that has passed comes before what woke us, as it
            // would with a timer firing on each one.
            let ticks = clock.woke(tokio::time::Instant::now());
            if ticks > 0 {
                self.make_ticks(ticks);
            }
            match woken {
                Woken::Persisted(report) => self.on_persisted(report),
                Woken::Applied(report) => self.on_apply_event(report).await,
                Woken::Stored(stored) => self.compaction.stored(&mut self.core, stored),
                Woken::Event(Some(Event::Shutdown) | None) => break,
                Woken::Event(Some(event)) => self.on_event(event, &mut proposals),
                Woken::Alarm => {}
            }
            self.drain(&mut events, &mut apply_events, &mut proposals)
                .await;
            self.propose(std::mem::take(&mut proposals)).await;
            while self.core.has_ready() {
                let ready = self.core.ready();
                self.carry_out(ready).await;
            }
            if let Some(fatal) = self.failed.take() {
                return Err(self.stop(fatal));
            }
            self.announce_membership();
            self.publish_status();
            clock.turn_done(tokio::time::Instant::now());
        }
        self.abort_reads(NodeError::ShuttingDown);
        // Everything queued before the shutdown reaches the disk first.
        if let Err(error) = self.writer.clone().close().await {
            tracing::warn!("closing the Raft log: {error}");
        }
        Ok(())
    }

    async fn drain(
        &mut self,
        events: &mut mpsc::Receiver<Event>,
        apply_events: &mut mpsc::UnboundedReceiver<ApplyEvent>,
        proposals: &mut Vec<(Vec<u8>, oneshot::Sender<ApplyResult>)>,
    ) {
        while let Ok(report) = self.persisted.try_recv() {
            self.on_persisted(report);
        }
        while let Ok(report) = apply_events.try_recv() {
            self.on_apply_event(report).await;
        }
        for _ in 0..MAX_EVENTS_PER_TURN {
            match events.try_recv() {
                Ok(Event::Shutdown) => {
                    // Put the shutdown back in effect by closing: the next
                    // `recv` returns None once the queue is empty.
                    events.close();
                }
                Ok(event) => self.on_event(event, proposals),
                Err(_) => break,
            }
        }
    }

    /// Makes `ticks` ticks of the core, and what the driver does on ticks:
    /// the disk check, learner promotion, abandoned reads.
    fn make_ticks(&mut self, ticks: u32) {
        self.disk.check(self.core.id(), &self.writer.health());
        for _ in 0..ticks {
            self.core.tick();
        }
        self.promote_caught_up_learners();
        self.forget_abandoned_reads();
    }

    fn on_persisted(&mut self, report: PersistReport) {
        self.follow_ups_in_flight = self.follow_ups_in_flight.saturating_sub(1);
        match report {
            Ok(Some((index, term))) => self.core.persisted(index, term),
            Ok(None) => {}
            Err(fatal) => self.fail(fatal),
        }
    }

    /// Notes a fatal error; the driver stops at the end of this turn. The
    /// first one is kept: a later one is fallout of it.
    fn fail(&mut self, fatal: Fatal) {
        self.failed.get_or_insert(fatal);
    }

    /// Stops the node on `fatal`: records it for the handles, stops the
    /// apply worker (which fails the proposals waiting there) and fails
    /// the pending reads. Returns the error the node stopped on (the
    /// worker's, if it recorded one first).
    fn stop(&mut self, fatal: Fatal) -> Fatal {
        let fatal = self.fatal.record(fatal);
        tracing::error!("node {} stops: {fatal}", self.core.id());
        // Never waits: a full queue holds tasks, and the worker checks the
        // cell before each one, so it stops at the next anyway.
        let _ = self.apply.try_send(ApplyTask::NodeStopped);
        self.abort_reads(NodeError::Stopped(fatal.clone()));
        fatal
    }

    fn on_event(
        &mut self,
        event: Event,
        proposals: &mut Vec<(Vec<u8>, oneshot::Sender<ApplyResult>)>,
    ) {
        match event {
            Event::Peer(message) => self.core.step(message),
            Event::Propose { command, reply } => proposals.push((command, reply)),
            Event::ReadIndex { reply } => self.read_index(reply),
            Event::TransferLeader { to, reply } => {
                let _ = reply.send(self.transfer_leader(to));
            }
            Event::ChangeMembership { change, reply } => {
                let _ = reply.send(self.change_membership(change));
            }
            Event::Shutdown => {}
        }
    }

    /// An operator's membership change: one at a time, where a learner
    /// that has not been promoted yet counts as a change in progress (its
    /// addition is not finished until it votes). Removing that learner is
    /// allowed: it is how an operator cancels an addition whose node never
    /// came up.
    fn change_membership(&mut self, change: MembershipChange) -> Result<LogIndex, NodeError> {
        let membership = self.core.membership();
        let pending_learner = membership.learners.iter().next().copied();
        if let Some(learner) = pending_learner {
            let cancels = change == MembershipChange::RemoveNode(learner);
            if !cancels && self.core.role() == Role::Leader {
                return Err(NodeError::Refused(format!(
                    "a membership change is in progress: {learner} is a learner catching up; \
                     wait until it is a voter, or remove it"
                )));
            }
        }
        self.core
            .change_membership(change)
            .map_err(|error| match error {
                MembershipError::NotLeader(not_leader) => NodeError::NotLeader {
                    leader: not_leader.leader,
                },
                // Both pass within a heartbeat or two: retried by the caller.
                MembershipError::LeaderNotReady | MembershipError::TransferInProgress(_) => {
                    NodeError::Unavailable
                }
                MembershipError::UnknownNode(node) => NodeError::NotMember(node),
                MembershipError::ChangeInProgress(index) => NodeError::Refused(format!(
                    "a membership change is in progress: the change at index {index} \
                     is not committed yet"
                )),
                other => NodeError::Refused(other.to_string()),
            })
    }

    /// Leader, on every tick: promotes a learner to voter once its log
    /// matches the leader's through the commit index (no lag at all when
    /// the leader looks; it looks every tick, so under a steady write load
    /// the learner has to receive appends as fast as the voters do). The
    /// core refuses while another change is uncommitted or the leader has
    /// not committed an entry of its term; the next tick tries again.
    fn promote_caught_up_learners(&mut self) {
        if self.core.role() != Role::Leader || self.core.membership().learners.is_empty() {
            return;
        }
        let status = self.core.status();
        let Some(learner) = status.membership.learners.iter().copied().find(|learner| {
            status
                .followers
                .get(learner)
                .is_some_and(|follower| follower.match_index >= status.commit_index)
        }) else {
            return;
        };
        match self
            .core
            .change_membership(MembershipChange::PromoteLearner(learner))
        {
            Ok(index) => tracing::info!(
                "Node {} promotes learner {learner} to voter: it has caught up \
                 (entry {index})",
                self.core.id()
            ),
            Err(error) => tracing::debug!("promotion of {learner} deferred: {error}"),
        }
    }

    /// Appends every queued proposal as one batch.
    async fn propose(&mut self, proposals: Vec<(Vec<u8>, oneshot::Sender<ApplyResult>)>) {
        if proposals.is_empty() {
            return;
        }
        // A node that cannot write refuses at once rather than letting the
        // client wait for a commit that needs its disk.
        self.disk
            .check_if_due(self.core.id(), &self.writer.health());
        if let Some(reason) = self.disk.refusal(&self.writer.health()) {
            let refusal = NodeError::DiskFull(format!("node {}: {reason}", self.core.id()));
            for (_, reply) in proposals {
                let _ = reply.send(Err(refusal.clone()));
            }
            return;
        }
        let (commands, replies): (Vec<_>, Vec<_>) = proposals.into_iter().unzip();
        match self.core.propose(commands) {
            Ok(indices) => {
                let term = self.core.term();
                let appended = std::time::Instant::now();
                self.metrics.proposals_appended(replies.len() as u64);
                for (index, reply) in indices.zip(replies) {
                    self.uncommitted.push_back((index, appended));
                    let _ = self
                        .apply
                        .send(ApplyTask::Await { index, term, reply })
                        .await;
                }
            }
            Err(error) => {
                let leader = match error {
                    crate::raft::ProposeError::NotLeader(not_leader) => not_leader.leader,
                    // During a transfer nobody takes writes for a moment:
                    // the caller waits and retries.
                    _ => None,
                };
                for reply in replies {
                    let _ = reply.send(Err(NodeError::NotLeader { leader }));
                }
            }
        }
    }

    /// Drops the ReadIndex rounds whose callers stopped waiting (they time
    /// out, see [`Node::read`](super::Node::read)), so a leader that cannot
    /// confirm reads does not accumulate them.
    fn forget_abandoned_reads(&mut self) {
        self.pending_reads.retain(|_, reply| !reply.is_closed());
    }

    fn read_index(&mut self, reply: oneshot::Sender<Result<LogIndex, NodeError>>) {
        let request_id = self.next_read_id;
        self.next_read_id += 1;
        match self.core.read_index(request_id) {
            Ok(()) => {
                self.pending_reads.insert(request_id, reply);
            }
            Err(not_leader) => {
                let _ = reply.send(Err(NodeError::NotLeader {
                    leader: not_leader.leader,
                }));
            }
        }
    }

    fn transfer_leader(&mut self, to: Option<NodeId>) -> Result<NodeId, NodeError> {
        let status = self.core.status();
        let target = match to {
            Some(target) => target,
            None => status
                .followers
                .iter()
                .filter(|(id, _)| status.membership.voters.contains(id))
                .max_by_key(|(_, follower)| follower.match_index)
                .map(|(id, _)| *id)
                .ok_or_else(|| match status.role {
                    Role::Leader => NodeError::Refused("no other voter to transfer to".into()),
                    _ => NodeError::NotLeader {
                        leader: status.leader,
                    },
                })?,
        };
        self.core
            .transfer_leader(target)
            .map(|()| target)
            .map_err(|error| match error {
                crate::raft::TransferError::NotLeader(not_leader) => NodeError::NotLeader {
                    leader: not_leader.leader,
                },
                other => NodeError::Refused(other.to_string()),
            })
    }

    async fn on_apply_event(&mut self, report: ApplyEvent) {
        match report {
            ApplyEvent::Applied(index) => self.core.applied(index),
            ApplyEvent::SnapshotTaken {
                index,
                data,
                staged,
            } => self.snapshot_taken(index, data, staged).await,
            ApplyEvent::Failed(fatal) => self.fail(fatal),
            ApplyEvent::DiskFull(reason) => self.disk.state_machine_full(reason),
        }
    }

    /// Carries out one [`Ready`] in the order its contract prescribes.
    async fn carry_out(&mut self, ready: Ready) {
        if let Some(soft) = ready.soft_state {
            self.log_soft_state(soft);
        }
        for request_id in ready.aborted_reads {
            if let Some(reply) = self.pending_reads.remove(&request_id) {
                let _ = reply.send(Err(NodeError::NotLeader {
                    leader: self.core.leader(),
                }));
            }
        }
        // Step 1: a snapshot from the leader replaces the state machine
        // before any later entry is applied (the apply queue is FIFO).
        if let Some(progress) = ready.snapshot_progress {
            self.incoming_snapshot
                .progress(self.core.id(), self.core.leader(), progress);
        }
        let snapshot = match ready.snapshot {
            Some(snapshot) => {
                self.compaction.installed(snapshot.meta.last_index);
                let bytes = snapshot.data.len() as u64;
                self.incoming_snapshot
                    .received(self.core.id(), snapshot.meta.last_index, bytes);
                let restore = ApplyTask::Restore {
                    meta: snapshot.meta.clone(),
                    data: snapshot.data.clone(),
                };
                let _ = self.apply.send(restore).await;
                Some(snapshot)
            }
            None => None,
        };
        // Step 2: these may overlap our own fsync.
        for message in ready.messages {
            self.send(message);
        }
        // Steps 3 and 4: persist, then send what promises durability.
        let batch = WriteBatch {
            hard_state: ready.hard_state,
            entries: ready.entries,
            snapshot,
            staged_snapshot: None,
        };
        let acknowledge = batch.entries.last().map(|entry| (entry.index, entry.term));
        let stores_snapshot = batch.snapshot.is_some();
        if !batch.is_empty() || !ready.messages_after_persist.is_empty() {
            self.persist(batch, ready.messages_after_persist, acknowledge)
                .await;
        }
        if stores_snapshot {
            self.hold_stored_snapshot(None);
        }
        // Step 5: committed entries are durable here; apply in order.
        if let Some(last) = ready.committed_entries.last() {
            self.observe_commits(last.index);
        }
        if !ready.committed_entries.is_empty() {
            self.compaction
                .committed(&mut self.core, &ready.committed_entries);
            let entries = ApplyTask::Entries(ready.committed_entries);
            let _ = self.apply.send(entries).await;
        }
        // Step 6: reads confirmed by a quorum.
        for read in ready.read_states {
            if let Some(reply) = self.pending_reads.remove(&read.request_id) {
                let _ = reply.send(Ok(read.index));
            }
        }
    }

    /// Queues `batch` on the log writer; `messages` go out and the core
    /// hears of `acknowledge` once it is durable, in submission order.
    async fn persist(
        &mut self,
        batch: WriteBatch,
        messages: Vec<Message>,
        acknowledge: Option<(LogIndex, Term)>,
    ) {
        // A heartbeat's answer waits on nothing new: once every earlier
        // batch is durable and its messages are out, it goes at once
        // rather than through the log writer's thread and the follow-up
        // task (three wake-ups per heartbeat on an idle follower).
        if batch.is_empty() && acknowledge.is_none() && self.follow_ups_in_flight == 0 {
            for message in messages {
                self.send(message);
            }
            return;
        }
        match self.writer.submit(batch).await {
            Ok(durable) => {
                if let Some(follow_ups) = &self.follow_ups {
                    self.follow_ups_in_flight += 1;
                    let _ = follow_ups.send(PersistFollowUp {
                        durable,
                        messages,
                        acknowledge,
                    });
                }
            }
            Err(error) => self.fail(Fatal::Storage {
                operation: LogOperation::Submit,
                message: error.to_string(),
            }),
        }
    }

    fn send(&self, message: Message) {
        tracing::debug!(
            "Node {} sends RPC {} to Node {}",
            message.from,
            message.rpc_name(),
            message.to
        );
        self.network.send(message);
    }

    /// Records the commit latency of every timed proposal up to `committed`.
    fn observe_commits(&mut self, committed: LogIndex) {
        let now = std::time::Instant::now();
        while let Some(&(index, appended)) = self.uncommitted.front() {
            if index > committed {
                break;
            }
            self.metrics
                .proposal_commit_latency()
                .observe(now.saturating_duration_since(appended));
            self.uncommitted.pop_front();
        }
    }

    fn log_soft_state(&mut self, soft: crate::raft::SoftState) {
        // Role changes are shown at once, whatever the throttle.
        self.status_published = None;
        if soft.role != Role::Leader {
            // A former leader's uncommitted entries may be overwritten:
            // their commit, if it comes, is not this node's doing.
            self.uncommitted.clear();
        }
        let id = self.core.id();
        match (soft.role, soft.leader) {
            (Role::Leader, _) => tracing::info!("Node {id} is the leader for term {}", soft.term),
            (role, Some(leader)) => {
                tracing::info!(
                    "Node {id} is a {role} in term {}; leader is Node {leader}",
                    soft.term
                )
            }
            (role, None) => tracing::info!(
                "Node {id} is a {role} in term {}; no leader known",
                soft.term
            ),
        }
    }

    fn abort_reads(&mut self, error: NodeError) {
        for (_, reply) in std::mem::take(&mut self.pending_reads) {
            let _ = reply.send(Err(error.clone()));
        }
    }
}
