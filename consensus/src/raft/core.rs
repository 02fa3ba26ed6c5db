//! The core type: its state, its constructors, the inputs that are not tied
//! to one mechanism (tick, step, persisted, applied) and the draining of
//! [`Ready`].

use super::config::Config;
use super::errors::{NotLeader, RestoreError};
use super::log::RaftLog;
use super::message::{Message, MessageBody};
use super::progress::Progress;
use super::read_index::ReadQueue;
use super::ready::{Ready, RequestId, Role, SoftState};
use super::snapshot_receive::IncomingSnapshot;
use super::transfer::Transfer;
use super::types::{
    Entry, EntryPayload, HardState, Incarnation, LogIndex, Membership, NodeId, Term,
};
use super::Snapshot;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// What the runtime loaded from disk to start a node.
#[derive(Clone, Debug, Default)]
pub struct RestoredState {
    /// The persisted term, vote and commit index.
    pub hard_state: HardState,
    /// The newest stored snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// The stored log entries after the snapshot, consecutive.
    pub entries: Vec<Entry>,
}

/// The Raft state machine of one node. Feed it inputs ([`tick`](Self::tick),
/// [`step`](Self::step), [`propose`](Self::propose), ...), then drain
/// [`ready`](Self::ready) and do what it says, in the order its documentation
/// gives.
pub struct RaftCore {
    pub(crate) config: Config,
    pub(crate) id: NodeId,
    /// Which life of `id` this is (see [`HardState::incarnation`]).
    pub(crate) incarnation: Incarnation,
    pub(crate) term: Term,
    pub(crate) vote: Option<NodeId>,
    pub(crate) commit: LogIndex,
    /// Entries up to here were handed out for applying.
    pub(crate) apply_cursor: LogIndex,
    /// What the runtime reported applied.
    pub(crate) applied_index: LogIndex,
    pub(crate) log: RaftLog,
    pub(crate) leader: Option<NodeId>,
    pub(crate) role: RoleState,
    /// The membership in force: the latest in the log, committed or not
    /// (dissertation §4.1).
    pub(crate) membership: Membership,
    pub(crate) membership_index: LogIndex,
    pub(crate) election_elapsed: u32,
    pub(crate) heartbeat_elapsed: u32,
    pub(crate) election_timeout: u32,
    rng: ChaCha8Rng,
    pub(crate) outbox: Outbox,
    last_hard_state: HardState,
    last_soft_state: Option<SoftState>,
}

/// Outputs collected between two [`RaftCore::ready`] calls.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) messages: Vec<Message>,
    pub(crate) after_persist: Vec<Message>,
    pub(crate) read_states: Vec<super::ReadState>,
    pub(crate) aborted_reads: Vec<RequestId>,
    pub(crate) snapshot: Option<Snapshot>,
    pub(crate) snapshot_progress: Option<super::SnapshotTransfer>,
}

/// The role of the node, with the state only that role has.
#[derive(Debug)]
pub(crate) enum RoleState {
    Follower(FollowerState),
    PreCandidate(Votes),
    Candidate(Votes),
    Leader(LeaderState),
}

#[derive(Debug, Default)]
pub(crate) struct FollowerState {
    pub(crate) incoming: Option<IncomingSnapshot>,
}

/// Votes received in an election (or pre-vote round): voter -> granted.
pub(crate) type Votes = BTreeMap<NodeId, bool>;

#[derive(Debug)]
pub(crate) struct LeaderState {
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) reads: ReadQueue,
    pub(crate) transfer: Option<Transfer>,
    /// Whether an entry of this leader's term is committed yet.
    pub(crate) committed_in_term: bool,
}

impl RaftCore {
    /// Starts a node from what the runtime loaded from disk. An entirely
    /// empty state is refused ([`RestoreError::NoState`]): a node that lost
    /// its data must not come back as its old self; a node that joins an
    /// existing cluster starts with [`RaftCore::join`] instead.
    pub fn new(config: Config, restored: RestoredState) -> Result<RaftCore, RestoreError> {
        let empty = restored.hard_state == HardState::default()
            && restored.snapshot.is_none()
            && restored.entries.is_empty();
        if empty {
            return Err(RestoreError::NoState);
        }
        RaftCore::restore(config, restored)
    }

    /// Creates the first state of a node that joins a running cluster (an
    /// empty data directory, added with `member add`): it knows no
    /// configuration, learns the log from the leader as a learner, and its
    /// votes count only once a leader has promoted this incarnation.
    /// `incarnation` must be non-zero and fresh (the runtime draws it from
    /// the operating system's randomness); it is part of the hard state in
    /// the first [`Ready`], which must be persisted before anything is sent.
    pub fn join(config: Config, incarnation: Incarnation) -> Result<RaftCore, RestoreError> {
        if incarnation == 0 {
            return Err(RestoreError::ZeroIncarnation);
        }
        let mut core = RaftCore::restore(config, RestoredState::default())?;
        core.incarnation = incarnation;
        Ok(core)
    }

    fn restore(config: Config, restored: RestoredState) -> Result<RaftCore, RestoreError> {
        config.validate()?;
        check_restored(&restored)?;
        let RestoredState {
            hard_state,
            snapshot,
            entries,
        } = restored;
        let log = RaftLog::restored(snapshot, entries);
        let (membership, membership_index) =
            log.membership_at(log.last_index()).unwrap_or_default();
        let base = log.base_index();
        let seed = config.seed ^ config.id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut core = RaftCore {
            id: config.id,
            incarnation: hard_state.incarnation,
            term: hard_state.term,
            vote: hard_state.vote,
            // A commit index persisted ahead of the entries (crash between
            // the two writes) is clamped: it is only an optimisation.
            commit: hard_state.commit.clamp(base, log.last_index()),
            apply_cursor: base,
            applied_index: base,
            log,
            leader: None,
            role: RoleState::Follower(FollowerState::default()),
            membership,
            membership_index,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            election_timeout: config.election_ticks_min,
            rng: ChaCha8Rng::seed_from_u64(seed),
            outbox: Outbox::default(),
            last_hard_state: hard_state,
            last_soft_state: None,
            config,
        };
        core.last_hard_state.commit = core.commit;
        core.reset_election_timeout();
        Ok(core)
    }

    /// Creates the first state of a node of a brand-new cluster: every node
    /// of the cluster calls this with the same `voters`. The log starts with
    /// one membership entry (index 1, term 1), handed out in the first
    /// [`Ready`] to persist.
    pub fn bootstrap(config: Config, voters: BTreeSet<NodeId>) -> Result<RaftCore, RestoreError> {
        if voters.is_empty() {
            return Err(RestoreError::Bootstrap);
        }
        let mut core = RaftCore::restore(config, RestoredState::default())?;
        let membership = Membership::with_voters(voters);
        core.term = 1;
        core.log.append(vec![Entry {
            term: 1,
            index: 1,
            payload: EntryPayload::Membership(membership.clone()),
        }]);
        core.membership = membership;
        core.membership_index = 1;
        Ok(core)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The leader this node knows, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// This node's role.
    pub fn role(&self) -> Role {
        self.role.kind()
    }

    /// The commit index.
    pub fn commit_index(&self) -> LogIndex {
        self.commit
    }

    /// The membership in force at log index `index`: that of the latest
    /// membership entry at or before it (the snapshot's, if `index` is
    /// covered by the snapshot; the latest one if `index` is past the log).
    pub fn membership_at(&self, index: LogIndex) -> Membership {
        self.log
            .membership_at(index)
            .map_or_else(|| self.membership.clone(), |(membership, _)| membership)
    }

    /// The log index of the membership entry in force (0 for none).
    pub fn membership_index(&self) -> LogIndex {
        self.membership_index
    }

    /// The membership of the latest membership entry known committed (the
    /// one in force when no change is pending). While a change is pending,
    /// the nodes it removes are still members here: they may be needed to
    /// commit it (a leader removing itself leads until then).
    pub fn committed_membership(&self) -> Membership {
        if self.membership_index <= self.commit {
            return self.membership.clone();
        }
        self.log
            .membership_at(self.commit)
            .map_or_else(|| self.membership.clone(), |(membership, _)| membership)
    }

    /// The membership in force (the latest in the log).
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// A "not the leader" answer carrying the leader hint.
    pub(crate) fn not_leader(&self) -> NotLeader {
        NotLeader {
            leader: self.leader.filter(|leader| *leader != self.id),
        }
    }

    /// Advances logical time by one tick: elections, heartbeats, CheckQuorum
    /// and the abort of stalled leadership transfers hang off this.
    pub fn tick(&mut self) {
        if matches!(self.role, RoleState::Leader(_)) {
            self.tick_leader();
        } else {
            self.tick_election();
        }
    }

    /// Handles a message from another node. Messages for another node,
    /// and stale or unexpected messages, are dropped (the protocol tolerates
    /// loss).
    pub fn step(&mut self, message: Message) {
        if message.to != self.id || message.from == self.id || !message.is_well_formed() {
            tracing::debug!(node = %self.id, from = %message.from, rpc = message.rpc_name(), "malformed message dropped");
            return;
        }
        if !self.is_from_known_life(&message) {
            tracing::warn!(node = %self.id, from = %message.from, incarnation = message.incarnation,
                rpc = message.rpc_name(), "message from another life of a voter dropped: that node lost its state; remove it and add it back");
            return;
        }
        if !self.check_term(&message) {
            return;
        }
        let Message {
            from,
            term,
            incarnation,
            body,
            ..
        } = message;
        match body {
            MessageBody::RequestVote(request) => self.handle_vote_request(from, term, request),
            body => match self.role {
                RoleState::Leader(_) => self.step_leader(from, incarnation, body),
                RoleState::PreCandidate(_) | RoleState::Candidate(_) => {
                    self.step_candidate(from, term, body)
                }
                RoleState::Follower(_) => self.step_follower(from, body),
            },
        }
    }

    /// Whether `message` may be heard. An *answer* (a vote, an append,
    /// heartbeat or snapshot acknowledgement) from a voter of our latest
    /// configuration counts only from the incarnation recorded there. Any
    /// other life of that id (a node wiped and restarted, or an id removed
    /// and added back) may have forgotten votes it cast and entries it
    /// acknowledged; counting it as the voter would let it help elect a
    /// leader that lacks committed entries, or complete a quorum its old
    /// life is part of. Requests are heard from any life: they count for
    /// nothing by themselves, and a node whose configuration is stale must
    /// still hear the leader of the configuration that replaced it (else a
    /// stale follower and a new leader could refuse each other for good).
    /// Learners and strangers count for nothing and are heard.
    fn is_from_known_life(&self, message: &Message) -> bool {
        let answer = matches!(
            message.body,
            MessageBody::RequestVoteResponse(_)
                | MessageBody::AppendEntriesResponse(_)
                | MessageBody::HeartbeatResponse(_)
                | MessageBody::InstallSnapshotResponse(_)
        );
        let expected = self.membership.voter_incarnation(message.from);
        !answer
            || expected.is_none_or(|expected| expected == message.incarnation)
            || self.planted_accept_any_incarnation()
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn planted_accept_any_incarnation(&self) -> bool {
        self.config.planted_bugs.accept_any_incarnation
    }

    #[cfg(not(any(test, feature = "testing")))]
    pub(crate) fn planted_accept_any_incarnation(&self) -> bool {
        false
    }

    /// The runtime made the entries through `(index, term)` durable. An
    /// acknowledgement for entries since overwritten is ignored. On a
    /// leader this may advance the commit index: the leader counts its own
    /// log toward a quorum only once durable.
    pub fn persisted(&mut self, index: LogIndex, term: Term) {
        if self.log.persisted(index, term) && matches!(self.role, RoleState::Leader(_)) {
            self.maybe_commit();
        }
    }

    /// The state machine applied (durably) through `index`; shown by
    /// [`status`](Self::status) and bounds [`snapshot_taken`](Self::snapshot_taken).
    pub fn applied(&mut self, index: LogIndex) {
        self.applied_index = self.applied_index.max(index.min(self.apply_cursor));
    }

    /// Whether [`ready`](Self::ready) has anything to hand out.
    pub fn has_ready(&self) -> bool {
        let outbox = &self.outbox;
        !outbox.messages.is_empty()
            || !outbox.after_persist.is_empty()
            || !outbox.read_states.is_empty()
            || !outbox.aborted_reads.is_empty()
            || outbox.snapshot.is_some()
            || outbox.snapshot_progress.is_some()
            || self.log.has_unstable()
            || self.hard_state() != self.last_hard_state
            || Some(self.soft_state()) != self.last_soft_state
            || self.apply_cursor < self.commit.min(self.log.stable_index())
    }

    /// Drains the work accumulated since the last call. See [`Ready`] for
    /// the order in which the runtime must do it.
    pub fn ready(&mut self) -> Ready {
        let hard_state = self.hard_state();
        let soft_state = self.soft_state();
        let apply_to = self.commit.min(self.log.stable_index());
        let committed_entries = self.log.slice(self.apply_cursor + 1, apply_to);
        self.apply_cursor = self.apply_cursor.max(apply_to);
        let outbox = std::mem::take(&mut self.outbox);
        let ready = Ready {
            snapshot: outbox.snapshot,
            messages: outbox.messages,
            hard_state: (hard_state != self.last_hard_state).then_some(hard_state),
            entries: self.log.take_unstable(),
            messages_after_persist: outbox.after_persist,
            committed_entries,
            read_states: outbox.read_states,
            aborted_reads: outbox.aborted_reads,
            soft_state: (Some(soft_state) != self.last_soft_state).then_some(soft_state),
            snapshot_progress: outbox.snapshot_progress,
        };
        self.last_hard_state = hard_state;
        self.last_soft_state = Some(soft_state);
        ready
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.commit,
            incarnation: self.incarnation,
        }
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role.kind(),
            term: self.term,
            leader: self.leader,
        }
    }

    /// Queues a message: a leader's messages may leave at once (they promise
    /// nothing about local durable state beyond its term, persisted when it
    /// campaigned); everything else, and every answer, waits for persistence.
    /// Pre-votes change no state, so they leave at once too.
    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        let term = match &body {
            MessageBody::RequestVote(request) if request.pre_vote => self.term.saturating_add(1),
            _ => self.term,
        };
        let immediate = matches!(self.role, RoleState::Leader(_))
            || matches!(&body, MessageBody::RequestVote(request) if request.pre_vote);
        self.send_with_term(to, term, body, immediate);
    }

    pub(crate) fn send_with_term(
        &mut self,
        to: NodeId,
        term: Term,
        body: MessageBody,
        immediate: bool,
    ) {
        let message = Message {
            from: self.id,
            to,
            term,
            incarnation: self.incarnation,
            body,
        };
        if immediate {
            self.outbox.messages.push(message);
        } else {
            self.outbox.after_persist.push(message);
        }
    }

    pub(crate) fn reset_election_timeout(&mut self) {
        self.election_elapsed = 0;
        self.election_timeout = self
            .rng
            .gen_range(self.config.election_ticks_min..self.config.election_ticks_max);
    }

    /// Whether this node, in this life, is a voter of its latest
    /// configuration. A forgotten life (the configuration records another
    /// incarnation for this id) is not: it never counts its own vote, log
    /// or acknowledgement, and campaigns only as a removed node would.
    pub(crate) fn is_voter(&self) -> bool {
        self.membership.voter_incarnation(self.id) == Some(self.incarnation)
            || (self.membership.voters.contains(&self.id) && self.planted_accept_any_incarnation())
    }

    /// Whether the latest configuration names this id as a voter of
    /// another life: this node lost the state that voter had.
    pub(crate) fn is_forgotten_voter(&self) -> bool {
        self.membership
            .voter_incarnation(self.id)
            .is_some_and(|recorded| recorded != self.incarnation)
            && !self.planted_accept_any_incarnation()
    }

    /// The number of voters that make a majority.
    pub(crate) fn quorum(&self) -> usize {
        self.membership.voters.len() / 2 + 1
    }

    pub(crate) fn leader_state_mut(&mut self) -> Option<&mut LeaderState> {
        match &mut self.role {
            RoleState::Leader(leader) => Some(leader),
            _ => None,
        }
    }

    pub(crate) fn leader_state(&self) -> Option<&LeaderState> {
        match &self.role {
            RoleState::Leader(leader) => Some(leader),
            _ => None,
        }
    }

    /// Recomputes the membership in force after the log changed (an append
    /// of a membership entry, or a truncation that removed one).
    pub(crate) fn refresh_membership(&mut self) {
        if let Some((membership, index)) = self.log.membership_at(self.log.last_index()) {
            if index != self.membership_index || membership != self.membership {
                tracing::info!(node = %self.id, index, ?membership, "membership in force changed");
                self.membership = membership;
                self.membership_index = index;
                self.sync_progress_with_membership();
            }
        }
    }
}

impl std::fmt::Debug for RaftCore {
    // A summary: the log holds application commands, which have no place in
    // debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftCore")
            .field("id", &self.id)
            .field("role", &self.role.kind())
            .field("term", &self.term)
            .field("leader", &self.leader)
            .field("commit", &self.commit)
            .field("last_index", &self.log.last_index())
            .finish_non_exhaustive()
    }
}

impl RoleState {
    pub(crate) fn kind(&self) -> Role {
        match self {
            RoleState::Follower(_) => Role::Follower,
            RoleState::PreCandidate(_) => Role::PreCandidate,
            RoleState::Candidate(_) => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }
}

/// Checks the shape of what came from disk: no holes, terms never decrease
/// and never exceed the persisted term.
fn check_restored(restored: &RestoredState) -> Result<(), RestoreError> {
    let (mut expected, mut previous_term) = restored.snapshot.as_ref().map_or((1, 0), |snapshot| {
        (
            snapshot.meta.last_index.saturating_add(1),
            snapshot.meta.last_term,
        )
    });
    for entry in &restored.entries {
        if entry.index != expected {
            return Err(RestoreError::Gap {
                expected,
                found: entry.index,
            });
        }
        if entry.term < previous_term || entry.term > restored.hard_state.term {
            return Err(RestoreError::TermOrder {
                index: entry.index,
                term: entry.term,
            });
        }
        expected += 1;
        previous_term = entry.term;
    }
    Ok(())
}
