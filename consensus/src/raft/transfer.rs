//! Leadership transfer (dissertation §3.10): the leader stops accepting
//! proposals, brings the target up to date, then sends it TimeoutNow; the
//! target campaigns at once, and voters let it through the leader lease.
//! The transfer is abandoned after an election timeout.

use super::core::RaftCore;
use super::election::Campaign;
use super::errors::TransferError;
use super::message::MessageBody;
use super::types::NodeId;

/// A transfer under way.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Transfer {
    pub(crate) target: NodeId,
    pub(crate) elapsed: u32,
}

impl RaftCore {
    /// Hands leadership to `to`. Returns once the transfer started; its
    /// outcome shows as a leader change in a later [`Ready`](super::Ready)
    /// (or no change if it is abandoned after an election timeout).
    pub fn transfer_leader(&mut self, to: NodeId) -> Result<(), TransferError> {
        self.leader_handle()?.transfer_leader(to)
    }

    /// Leader: starts (or continues) a transfer to `to`.
    pub(crate) fn leader_transfer(&mut self, to: NodeId) -> Result<(), TransferError> {
        if to == self.id {
            return Ok(());
        }
        if !self.membership.voters.contains(&to) {
            return Err(TransferError::NotVoter(to));
        }
        let Some(leader) = self.leader_state_mut() else {
            return Err(TransferError::NotLeader(self.not_leader()));
        };
        if leader
            .transfer
            .is_some_and(|transfer| transfer.target == to)
        {
            return Ok(());
        }
        leader.transfer = Some(Transfer {
            target: to,
            elapsed: 0,
        });
        tracing::info!(node = %self.id, term = self.term, target = %to, "leadership transfer started");
        if !self.maybe_send_timeout_now(to) {
            self.send_append(to, true);
        }
        Ok(())
    }

    /// Leader: sends TimeoutNow to `to` if it is the transfer target and its
    /// log matches ours. Returns whether it was sent.
    pub(crate) fn maybe_send_timeout_now(&mut self, to: NodeId) -> bool {
        let last_index = self.log.last_index();
        let Some(leader) = self.leader_state() else {
            return false;
        };
        let ready = leader
            .transfer
            .is_some_and(|transfer| transfer.target == to)
            && leader
                .progress
                .get(&to)
                .is_some_and(|progress| progress.match_index == last_index);
        if ready {
            self.send(to, MessageBody::TimeoutNow);
        }
        ready
    }

    /// Leader tick: abandon a transfer that takes longer than an election
    /// timeout.
    pub(crate) fn tick_transfer(&mut self) {
        let limit = self.config.election_ticks_min;
        let id = self.id;
        let Some(leader) = self.leader_state_mut() else {
            return;
        };
        if let Some(transfer) = &mut leader.transfer {
            transfer.elapsed += 1;
            if transfer.elapsed >= limit {
                tracing::info!(node = %id, target = %transfer.target, "leadership transfer abandoned");
                leader.transfer = None;
            }
        }
    }

    /// Follower: the leader asks us to campaign now.
    pub(crate) fn handle_timeout_now(&mut self, from: NodeId) {
        if !self.is_voter() {
            return;
        }
        tracing::info!(node = %self.id, term = self.term, leader = %from, "TimeoutNow received: campaigning");
        self.campaign_as(Campaign::Transfer);
    }
}
