//! Leadership transfer (dissertation §3.10): the leader stops accepting
//! proposals, brings the target up to date, then sends it TimeoutNow; the
//! target campaigns at once, and voters let it through the leader lease.
//! The transfer is abandoned after an election timeout.

use super::core::RaftCore;
use super::election::Campaign;
use super::errors::TransferError;
use super::leader::LeaderHandle;
use super::message::MessageBody;
use super::types::NodeId;

/// A transfer under way.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Transfer {
    pub(crate) target: NodeId,
    pub(crate) elapsed: u32,
}

impl LeaderHandle<'_> {
    /// Starts (or continues) a transfer to `to`.
    pub(crate) fn start_transfer(&mut self, to: NodeId) -> Result<(), TransferError> {
        if to == self.shared.id {
            return Ok(());
        }
        if !self.shared.membership.voters.contains(&to) {
            return Err(TransferError::NotVoter(to));
        }
        if self
            .leader
            .transfer
            .is_some_and(|transfer| transfer.target == to)
        {
            return Ok(());
        }
        self.leader.transfer = Some(Transfer {
            target: to,
            elapsed: 0,
        });
        tracing::info!(node = %self.shared.id, term = self.shared.term, target = %to, "leadership transfer started");
        if !self.maybe_send_timeout_now(to) {
            self.send_append(to, true);
        }
        Ok(())
    }

    /// Sends TimeoutNow to `to` if it is the transfer target and its log
    /// matches ours. Returns whether it was sent.
    pub(crate) fn maybe_send_timeout_now(&mut self, to: NodeId) -> bool {
        let last_index = self.shared.log.last_index();
        let ready = self
            .leader
            .transfer
            .is_some_and(|transfer| transfer.target == to)
            && self
                .leader
                .progress
                .get(&to)
                .is_some_and(|progress| progress.match_index == last_index);
        if ready {
            self.send(to, MessageBody::TimeoutNow);
        }
        ready
    }

    /// Abandons a transfer that takes longer than an election timeout.
    pub(crate) fn tick_transfer(&mut self) {
        let limit = self.shared.config.election_ticks_min;
        if let Some(transfer) = &mut self.leader.transfer {
            transfer.elapsed += 1;
            if transfer.elapsed >= limit {
                tracing::info!(node = %self.shared.id, target = %transfer.target, "leadership transfer abandoned");
                self.leader.transfer = None;
            }
        }
    }
}

impl RaftCore {
    /// Follower: the leader asks us to campaign now.
    pub(crate) fn handle_timeout_now(&mut self, from: NodeId) {
        if !self.shared.is_voter() {
            return;
        }
        tracing::info!(node = %self.shared.id, term = self.shared.term, leader = %from, "TimeoutNow received: campaigning");
        self.campaign_as(Campaign::Transfer);
    }
}
