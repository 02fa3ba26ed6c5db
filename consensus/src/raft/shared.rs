//! The state every role has: the log, the hard state, the configuration,
//! the membership in force and the outputs waiting for [`Ready`]. The state
//! only one role has lives in [`RoleState`](super::role::RoleState); keeping
//! the two apart is what lets the leader's code borrow both at once (see
//! [`LeaderHandle`](super::LeaderHandle)).
//!
//! [`Ready`]: super::Ready

use super::config::Config;
use super::errors::NotLeader;
use super::log::RaftLog;
use super::message::{Message, MessageBody};
use super::ready::{ReadState, RequestId, SoftState};
use super::snapshot::{Snapshot, SnapshotTransfer};
use super::types::{HardState, Incarnation, LogIndex, Membership, NodeId, Term};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// What a node knows whatever its role.
pub(crate) struct SharedState {
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
    /// The leader this node knows (itself, when it leads).
    pub(crate) leader: Option<NodeId>,
    /// The membership in force: the latest in the log, committed or not
    /// (dissertation §4.1).
    pub(crate) membership: Membership,
    pub(crate) membership_index: LogIndex,
    /// Ticks since the leader was last heard from (on the leader: since
    /// the last CheckQuorum round).
    pub(crate) election_elapsed: u32,
    pub(crate) election_timeout: u32,
    /// Seeded from the configuration: the only randomness of the core.
    pub(crate) rng: ChaCha8Rng,
    pub(crate) outbox: Outbox,
    /// What the last [`Ready`](super::Ready) handed out, to hand out only
    /// changes.
    pub(crate) last_hard_state: HardState,
    pub(crate) last_soft_state: Option<SoftState>,
}

/// Outputs collected between two [`RaftCore::ready`](super::RaftCore::ready)
/// calls.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) messages: Vec<Message>,
    pub(crate) after_persist: Vec<Message>,
    pub(crate) read_states: Vec<ReadState>,
    pub(crate) aborted_reads: Vec<RequestId>,
    pub(crate) snapshot: Option<Snapshot>,
    pub(crate) snapshot_progress: Option<SnapshotTransfer>,
}

impl SharedState {
    /// A "not the leader" answer carrying the leader hint.
    pub(crate) fn not_leader(&self) -> NotLeader {
        NotLeader {
            leader: self.leader.filter(|leader| *leader != self.id),
        }
    }

    pub(crate) fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.commit,
            incarnation: self.incarnation,
        }
    }

    /// Queues a message in `term`: `immediate` ones may leave before the
    /// [`Ready`](super::Ready)'s writes are durable, the others only after.
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

    /// Every member: voters and learners.
    pub(crate) fn members(&self) -> Vec<NodeId> {
        self.membership
            .voters
            .iter()
            .chain(self.membership.learners.iter())
            .copied()
            .collect()
    }

    /// Recomputes the membership in force after the log changed (an append
    /// of a membership entry, or a truncation that removed one). Returns
    /// whether it changed (a leader then tracks the new members).
    pub(crate) fn refresh_membership(&mut self) -> bool {
        let Some((membership, index)) = self.log.membership_at(self.log.last_index()) else {
            return false;
        };
        if index == self.membership_index && membership == self.membership {
            return false;
        }
        tracing::info!(node = %self.id, index, ?membership, "membership in force changed");
        self.membership = membership;
        self.membership_index = index;
        true
    }

    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn planted_accept_any_incarnation(&self) -> bool {
        self.config.planted_bugs.accept_any_incarnation
    }

    #[cfg(not(any(test, feature = "testing")))]
    pub(crate) fn planted_accept_any_incarnation(&self) -> bool {
        false
    }
}
