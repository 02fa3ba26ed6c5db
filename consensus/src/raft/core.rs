//! The core type: its state, its constructors, the inputs that are not tied
//! to one mechanism (tick, step, persisted, applied) and the draining of
//! [`Ready`].

use super::config::Config;
use super::errors::RestoreError;
use super::log::RaftLog;
use super::message::{Message, MessageBody};
use super::ready::{Ready, Role, SoftState};
use super::role::{FollowerState, RoleState};
use super::shared::{Outbox, SharedState};
use super::types::{
    Entry, EntryPayload, HardState, Incarnation, LogIndex, Membership, NodeId, Term,
};
use super::Snapshot;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

/// What the runtime loaded from disk to start a node (what a
/// [`LogStore`](crate::storage::LogStore) recovers at open).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
///
/// Inside, the state every role has ([`SharedState`]) is kept apart from
/// the role and the state only that role has ([`RoleState`]), so leader
/// work can borrow the leader's state and the shared state at once through
/// a [`LeaderHandle`](super::LeaderHandle).
pub struct RaftCore {
    pub(crate) shared: SharedState,
    pub(crate) role: RoleState,
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
        core.shared.incarnation = incarnation;
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
        let shared = SharedState {
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
            membership,
            membership_index,
            election_elapsed: 0,
            election_timeout: config.election_ticks_min,
            rng: ChaCha8Rng::seed_from_u64(seed),
            outbox: Outbox::default(),
            last_hard_state: hard_state,
            last_soft_state: None,
            config,
        };
        let mut core = RaftCore {
            shared,
            role: RoleState::Follower(FollowerState::default()),
        };
        core.shared.last_hard_state.commit = core.shared.commit;
        core.shared.reset_election_timeout();
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
        core.shared.term = 1;
        core.shared.log.append(vec![Entry {
            term: 1,
            index: 1,
            payload: EntryPayload::Membership(membership.clone()),
        }]);
        core.shared.membership = membership;
        core.shared.membership_index = 1;
        Ok(core)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.shared.term
    }

    /// The leader this node knows, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.shared.leader
    }

    /// This node's role.
    pub fn role(&self) -> Role {
        self.role.kind()
    }

    /// The commit index.
    pub fn commit_index(&self) -> LogIndex {
        self.shared.commit
    }

    /// The membership in force at log index `index`: that of the latest
    /// membership entry at or before it (the snapshot's, if `index` is
    /// covered by the snapshot; the latest one if `index` is past the log).
    pub fn membership_at(&self, index: LogIndex) -> Membership {
        self.shared.log.membership_at(index).map_or_else(
            || self.shared.membership.clone(),
            |(membership, _)| membership,
        )
    }

    /// The log index of the membership entry in force (0 for none).
    pub fn membership_index(&self) -> LogIndex {
        self.shared.membership_index
    }

    /// The membership of the latest membership entry known committed (the
    /// one in force when no change is pending). While a change is pending,
    /// the nodes it removes are still members here: they may be needed to
    /// commit it (a leader removing itself leads until then).
    pub fn committed_membership(&self) -> Membership {
        if self.shared.membership_index <= self.shared.commit {
            return self.shared.membership.clone();
        }
        self.shared
            .log
            .membership_at(self.shared.commit)
            .map_or_else(
                || self.shared.membership.clone(),
                |(membership, _)| membership,
            )
    }

    /// The membership in force (the latest in the log).
    pub fn membership(&self) -> &Membership {
        &self.shared.membership
    }

    /// Advances logical time by one tick: elections, heartbeats, CheckQuorum
    /// and the abort of stalled leadership transfers hang off this.
    pub fn tick(&mut self) {
        if !self.lead(|leader| leader.tick()) {
            self.tick_election();
        }
    }

    /// How many more [`RaftCore::tick`] calls may pass before one of them
    /// can do anything (start an election, send heartbeats, check the
    /// quorum, abandon a transfer); at least 1.
    ///
    /// Promise: calling `tick` fewer times than this changes nothing but
    /// counters, so a driver may sleep for this many ticks and then make
    /// them all at once, provided it also makes every tick that has passed
    /// before it hands the core any other input. An idle node then wakes
    /// on its heartbeats instead of on every tick.
    pub fn ticks_until_due(&self) -> u32 {
        let election = self
            .shared
            .election_timeout
            .saturating_sub(self.shared.election_elapsed);
        let due = match &self.role {
            RoleState::Leader(leader) if leader.transfer.is_some() => 1,
            RoleState::Leader(leader) => {
                let heartbeat = self
                    .shared
                    .config
                    .heartbeat_ticks
                    .saturating_sub(leader.heartbeat_elapsed);
                let check_quorum = self
                    .shared
                    .config
                    .election_ticks_min
                    .saturating_sub(self.shared.election_elapsed);
                heartbeat.min(check_quorum)
            }
            _ => election,
        };
        due.max(1)
    }

    /// Handles a message from another node. Messages for another node,
    /// and stale or unexpected messages, are dropped (the protocol tolerates
    /// loss).
    pub fn step(&mut self, message: Message) {
        if message.to != self.shared.id
            || message.from == self.shared.id
            || !message.is_well_formed()
        {
            tracing::debug!(node = %self.shared.id, from = %message.from, rpc = message.rpc_name(), "malformed message dropped");
            return;
        }
        if !self.is_from_known_life(&message) {
            tracing::warn!(node = %self.shared.id, from = %message.from, incarnation = message.incarnation,
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
                RoleState::Leader(_) => {
                    self.lead(|leader| leader.step(from, incarnation, body));
                }
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
        let expected = self.shared.membership.voter_incarnation(message.from);
        !answer
            || expected.is_none_or(|expected| expected == message.incarnation)
            || self.shared.planted_accept_any_incarnation()
    }

    /// The runtime made the entries through `(index, term)` durable. An
    /// acknowledgement for entries since overwritten is ignored. On a
    /// leader this may advance the commit index: the leader counts its own
    /// log toward a quorum only once durable.
    pub fn persisted(&mut self, index: LogIndex, term: Term) {
        if self.shared.log.persisted(index, term) {
            self.lead(|leader| leader.maybe_commit());
        }
    }

    /// The state machine applied (durably) through `index`; shown by
    /// [`status`](Self::status) and bounds [`snapshot_taken`](Self::snapshot_taken).
    pub fn applied(&mut self, index: LogIndex) {
        self.shared.applied_index = self
            .shared
            .applied_index
            .max(index.min(self.shared.apply_cursor));
    }

    /// Whether [`ready`](Self::ready) has anything to hand out.
    pub fn has_ready(&self) -> bool {
        let outbox = &self.shared.outbox;
        !outbox.messages.is_empty()
            || !outbox.after_persist.is_empty()
            || !outbox.read_states.is_empty()
            || !outbox.aborted_reads.is_empty()
            || outbox.snapshot.is_some()
            || outbox.snapshot_progress.is_some()
            || self.shared.log.has_unstable()
            || self.shared.hard_state() != self.shared.last_hard_state
            || Some(self.soft_state()) != self.shared.last_soft_state
            || self.shared.apply_cursor < self.shared.commit.min(self.shared.log.stable_index())
    }

    /// Drains the work accumulated since the last call. See [`Ready`] for
    /// the order in which the runtime must do it.
    pub fn ready(&mut self) -> Ready {
        let hard_state = self.shared.hard_state();
        let soft_state = self.soft_state();
        let apply_to = self.shared.commit.min(self.shared.log.stable_index());
        let committed_entries = self
            .shared
            .log
            .slice(self.shared.apply_cursor + 1, apply_to);
        self.shared.apply_cursor = self.shared.apply_cursor.max(apply_to);
        let outbox = std::mem::take(&mut self.shared.outbox);
        let ready = Ready {
            snapshot: outbox.snapshot,
            messages: outbox.messages,
            hard_state: (hard_state != self.shared.last_hard_state).then_some(hard_state),
            entries: self.shared.log.take_unstable(),
            messages_after_persist: outbox.after_persist,
            committed_entries,
            read_states: outbox.read_states,
            aborted_reads: outbox.aborted_reads,
            soft_state: (Some(soft_state) != self.shared.last_soft_state).then_some(soft_state),
            snapshot_progress: outbox.snapshot_progress,
        };
        self.shared.last_hard_state = hard_state;
        self.shared.last_soft_state = Some(soft_state);
        ready
    }

    fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role.kind(),
            term: self.shared.term,
            leader: self.shared.leader,
        }
    }

    /// Queues a message of a follower or candidate: it waits for
    /// persistence (an answer or a vote request vouches for the local
    /// durable state), except pre-votes, which change no state. A leader's
    /// messages go through [`LeaderHandle::send`](super::LeaderHandle) and
    /// leave at once.
    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        let term = match &body {
            MessageBody::RequestVote(request) if request.pre_vote => {
                self.shared.term.saturating_add(1)
            }
            _ => self.shared.term,
        };
        let immediate = matches!(&body, MessageBody::RequestVote(request) if request.pre_vote);
        self.shared.send_with_term(to, term, body, immediate);
    }
}

impl std::fmt::Debug for RaftCore {
    // A summary: the log holds application commands, which have no place in
    // debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftCore")
            .field("id", &self.shared.id)
            .field("role", &self.role.kind())
            .field("term", &self.shared.term)
            .field("leader", &self.shared.leader)
            .field("commit", &self.shared.commit)
            .field("last_index", &self.shared.log.last_index())
            .finish_non_exhaustive()
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
