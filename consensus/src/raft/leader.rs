//! Leader-only operations as a capability: [`RaftCore::leader_handle`]
//! returns a [`LeaderHandle`] only on the leader, so "not the leader" is a
//! value every caller must handle (openraft's `try_leader_handler`).

use super::core::{RaftCore, RoleState};
use super::errors::{MembershipError, NotLeader, ProposeError, TransferError};
use super::membership::MembershipChange;
use super::ready::RequestId;
use super::types::{EntryPayload, LogIndex};
use std::ops::RangeInclusive;

/// Proof that the core is the leader, borrowed for leader-only operations.
#[derive(Debug)]
pub struct LeaderHandle<'a> {
    core: &'a mut RaftCore,
}

impl RaftCore {
    /// The leader-only operations, or who to ask instead.
    pub fn leader_handle(&mut self) -> Result<LeaderHandle<'_>, NotLeader> {
        match self.role {
            RoleState::Leader(_) => Ok(LeaderHandle { core: self }),
            _ => Err(self.not_leader()),
        }
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
}

impl LeaderHandle<'_> {
    /// See [`RaftCore::propose`]. Refused while a leadership transfer runs
    /// (the new leader would not know of them, dissertation §3.10).
    pub fn propose(self, commands: Vec<Vec<u8>>) -> Result<RangeInclusive<LogIndex>, ProposeError> {
        if commands.is_empty() {
            return Err(ProposeError::Empty);
        }
        if let Some(transfer) = self.core.leader_state().and_then(|leader| leader.transfer) {
            return Err(ProposeError::TransferInProgress(transfer.target));
        }
        let payloads = commands.into_iter().map(EntryPayload::Command).collect();
        let (first, last) = self.core.append_as_leader(payloads);
        Ok(first..=last)
    }

    /// See [`RaftCore::read_index`].
    pub fn read_index(self, request_id: RequestId) {
        self.core.leader_read_index(request_id);
    }

    /// See [`RaftCore::change_membership`].
    pub fn change_membership(self, change: MembershipChange) -> Result<LogIndex, MembershipError> {
        self.core.leader_change_membership(change)
    }

    /// See [`RaftCore::transfer_leader`].
    pub fn transfer_leader(self, to: super::types::NodeId) -> Result<(), TransferError> {
        self.core.leader_transfer(to)
    }
}
