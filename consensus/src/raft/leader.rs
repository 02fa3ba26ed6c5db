//! Leader-only work as a capability (openraft's `LeaderHandler`):
//! [`RaftCore::leader_handle`] returns a [`LeaderHandle`] only on the
//! leader, so "not the leader" is a value every caller must handle, and the
//! handle borrows the leader's own state and the shared state side by side,
//! so code running on it cannot find the node anything but the leader.
//!
//! The leader's mechanisms are `impl LeaderHandle` blocks in the file of
//! each mechanism (replication, ReadIndex, membership, transfer, snapshot
//! streaming); this file holds the handle, the leader's clock and its
//! appends. A handle cannot end its own leadership: work that may step
//! down returns [`Leadership::StepDown`] and the core, which owns the role,
//! becomes a follower once the handle is gone.

use super::core::RaftCore;
use super::errors::{MembershipError, NotLeader, ProposeError, TransferError};
use super::membership::MembershipChange;
use super::message::MessageBody;
use super::ready::RequestId;
use super::role::{LeaderState, RoleState};
use super::shared::SharedState;
use super::types::{Entry, EntryPayload, LogIndex, NodeId};
use std::ops::RangeInclusive;

/// Proof that the core is the leader, borrowed for leader-only operations:
/// the leader's state and the state every role has, side by side.
pub struct LeaderHandle<'a> {
    pub(crate) leader: &'a mut LeaderState,
    pub(crate) shared: &'a mut SharedState,
}

impl std::fmt::Debug for LeaderHandle<'_> {
    // A summary, as for `RaftCore`: the log holds application commands.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderHandle")
            .field("id", &self.shared.id)
            .field("term", &self.shared.term)
            .field("commit", &self.shared.commit)
            .finish_non_exhaustive()
    }
}

/// Whether the leader keeps leading after a piece of its work.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Leadership {
    /// Still the leader.
    Kept,
    /// The leader must step down now, as a follower of no known leader in
    /// its term (it lost its quorum, or its removal committed); nothing
    /// else may be done as the leader.
    StepDown,
}

impl RaftCore {
    /// The leader-only operations, or who to ask instead.
    pub fn leader_handle(&mut self) -> Result<LeaderHandle<'_>, NotLeader> {
        match &mut self.role {
            RoleState::Leader(leader) => Ok(LeaderHandle {
                leader,
                shared: &mut self.shared,
            }),
            _ => Err(self.shared.not_leader()),
        }
    }

    /// Runs leader work if this node leads, then steps down if the work
    /// said so. Returns whether the work ran (whether the node led).
    pub(crate) fn lead(&mut self, work: impl FnOnce(&mut LeaderHandle<'_>) -> Leadership) -> bool {
        let RoleState::Leader(leader) = &mut self.role else {
            return false;
        };
        let mut handle = LeaderHandle {
            leader,
            shared: &mut self.shared,
        };
        if work(&mut handle) == Leadership::StepDown {
            let term = self.shared.term;
            self.become_follower(term, None);
        }
        true
    }

    /// Appends application commands to the log (leader only); returns the
    /// indices they got. They are committed once a majority stores them,
    /// which shows as `committed_entries` in a later [`Ready`](super::Ready).
    pub fn propose(
        &mut self,
        commands: Vec<Vec<u8>>,
    ) -> Result<RangeInclusive<LogIndex>, ProposeError> {
        self.leader_handle()?.propose(commands)
    }

    /// Asks for a linearizable read. On the leader the read is answered
    /// later by a [`ReadState`](super::ReadState) in
    /// [`Ready`](super::Ready) (or listed in `aborted_reads` if leadership
    /// is lost first).
    pub fn read_index(&mut self, request_id: RequestId) -> Result<(), NotLeader> {
        self.leader_handle()?.read_index(request_id);
        Ok(())
    }

    /// Proposes a membership change; returns the index of its entry.
    pub fn change_membership(
        &mut self,
        change: MembershipChange,
    ) -> Result<LogIndex, MembershipError> {
        self.leader_handle()?.change_membership(change)
    }

    /// Hands leadership to `to`. Returns once the transfer started; its
    /// outcome shows as a leader change in a later [`Ready`](super::Ready)
    /// (or no change if it is abandoned after an election timeout).
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), TransferError> {
        self.leader_handle()?.transfer_leader(to)
    }
}

impl LeaderHandle<'_> {
    /// See [`RaftCore::propose`]. Refused while a leadership transfer runs
    /// (the new leader would not know of them, dissertation §3.10).
    pub fn propose(
        mut self,
        commands: Vec<Vec<u8>>,
    ) -> Result<RangeInclusive<LogIndex>, ProposeError> {
        if commands.is_empty() {
            return Err(ProposeError::Empty);
        }
        if let Some(transfer) = self.leader.transfer {
            return Err(ProposeError::TransferInProgress(transfer.target));
        }
        let payloads = commands.into_iter().map(EntryPayload::Command).collect();
        let (first, last) = self.append(payloads);
        Ok(first..=last)
    }

    /// See [`RaftCore::read_index`].
    pub fn read_index(mut self, request_id: RequestId) {
        self.queue_read(request_id);
    }

    /// See [`RaftCore::change_membership`].
    pub fn change_membership(
        mut self,
        change: MembershipChange,
    ) -> Result<LogIndex, MembershipError> {
        self.propose_membership(change)
    }

    /// See [`RaftCore::transfer_leader`].
    pub fn transfer_leader(mut self, to: NodeId) -> Result<(), TransferError> {
        self.start_transfer(to)
    }

    /// Queues a message. A leader's messages may leave at once: they
    /// promise nothing about local durable state beyond its term, persisted
    /// when it campaigned.
    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        let term = self.shared.term;
        self.shared.send_with_term(to, term, body, true);
    }

    /// Appends new entries of the current term to the leader's log and
    /// replicates them; returns the first and last index they got.
    pub(crate) fn append(&mut self, payloads: Vec<EntryPayload>) -> (LogIndex, LogIndex) {
        let first = self.shared.log.last_index() + 1;
        let term = self.shared.term;
        let entries: Vec<Entry> = payloads
            .into_iter()
            .enumerate()
            .map(|(offset, payload)| Entry {
                term,
                index: first + offset as u64,
                payload,
            })
            .collect();
        let has_membership = entries
            .iter()
            .any(|entry| matches!(entry.payload, EntryPayload::Membership(_)));
        self.shared.log.append(entries);
        if has_membership && self.shared.refresh_membership() {
            self.sync_progress_with_membership();
        }
        self.broadcast_append(false);
        (first, self.shared.log.last_index())
    }

    /// Leader tick: heartbeats, CheckQuorum, transfer timeout.
    pub(crate) fn tick(&mut self) -> Leadership {
        self.leader.heartbeat_elapsed += 1;
        self.shared.election_elapsed += 1;
        if self.shared.election_elapsed >= self.shared.config.election_ticks_min {
            self.shared.election_elapsed = 0;
            if self.shared.config.check_quorum && !self.quorum_active() {
                tracing::info!(node = %self.shared.id, term = self.shared.term, "lost contact with a quorum: stepping down");
                return Leadership::StepDown;
            }
        }
        self.tick_transfer();
        if self.leader.heartbeat_elapsed >= self.shared.config.heartbeat_ticks {
            self.leader.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
        Leadership::Kept
    }

    /// CheckQuorum: whether a majority of voters (this node included if it
    /// votes) was heard from since the last check; resets the marks.
    fn quorum_active(&mut self) -> bool {
        let voters = &self.shared.membership.voters;
        let mut active = usize::from(self.shared.is_voter());
        for (id, progress) in self.leader.progress.iter_mut() {
            if progress.end_check_round() && voters.contains(id) {
                active += 1;
            }
        }
        active >= self.shared.quorum()
    }
}
