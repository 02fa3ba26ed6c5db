//! Membership changes, one server at a time (dissertation §4.1, §4.2.2).
//!
//! A change is a membership entry; every node uses the latest membership in
//! its log, committed or not, from the moment it appends it. Safety rests on
//! three rules enforced here: at most one uncommitted change at a time; the
//! leader first commits an entry of its own term (this fixes the bug of the
//! original single-server algorithm, where a change by a deposed leader
//! could be lost and two disjoint majorities formed); and new nodes join as
//! learners and vote only once promoted.

use super::core::RaftCore;
use super::errors::MembershipError;
use super::message::MessageBody;
use super::progress::Progress;
use super::types::{EntryPayload, LogIndex, Membership, NodeId};

/// One server-at-a-time change of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a node that receives the log but does not vote yet, reachable at
    /// `address` (recorded in [`Membership::addresses`]; empty for none).
    AddLearner {
        /// The new node.
        node: NodeId,
        /// Where the runtime dials it (`host:port`), opaque to the core.
        address: String,
    },
    /// Make a caught-up learner a voter.
    PromoteLearner(NodeId),
    /// Remove a voter or learner (possibly the leader itself: it keeps
    /// leading until the change commits, then steps down).
    RemoveNode(NodeId),
}

impl RaftCore {
    /// Proposes a membership change; returns the index of its entry.
    pub fn change_membership(
        &mut self,
        change: MembershipChange,
    ) -> Result<LogIndex, MembershipError> {
        self.leader_handle()?.change_membership(change)
    }

    /// Leader: validate and append a membership change.
    pub(crate) fn leader_change_membership(
        &mut self,
        change: MembershipChange,
    ) -> Result<LogIndex, MembershipError> {
        let Some(leader) = self.leader_state() else {
            return Err(MembershipError::NotLeader(self.not_leader()));
        };
        if let Some(transfer) = leader.transfer {
            return Err(MembershipError::TransferInProgress(transfer.target));
        }
        if !leader.committed_in_term {
            return Err(MembershipError::LeaderNotReady);
        }
        if self.membership_index > self.commit {
            return Err(MembershipError::ChangeInProgress(self.membership_index));
        }
        tracing::debug!(node = %self.id, term = self.term, ?change, "membership change asked");
        let membership = self.changed_membership(change)?;
        tracing::info!(node = %self.id, term = self.term, voters = ?membership.voters, learners = ?membership.learners, "proposing membership change");
        let (index, _) = self.append_as_leader(vec![EntryPayload::Membership(membership)]);
        Ok(index)
    }

    fn changed_membership(&self, change: MembershipChange) -> Result<Membership, MembershipError> {
        let mut membership = self.membership.clone();
        match change {
            MembershipChange::AddLearner { node, address } => {
                if membership.voters.contains(&node) || membership.learners.contains(&node) {
                    return Err(MembershipError::AlreadyMember(node));
                }
                membership.learners.insert(node);
                if address.is_empty() {
                    membership.addresses.remove(&node);
                } else {
                    membership.addresses.insert(node, address);
                }
            }
            MembershipChange::PromoteLearner(node) => {
                if !membership.learners.contains(&node) {
                    return Err(MembershipError::NotLearner(node));
                }
                let match_index = self
                    .leader_state()
                    .and_then(|leader| leader.progress.get(&node))
                    .map_or(0, |progress| progress.match_index);
                if match_index < self.commit {
                    return Err(MembershipError::LearnerBehind {
                        node,
                        match_index,
                        commit: self.commit,
                    });
                }
                let incarnation = self
                    .leader_state()
                    .and_then(|leader| leader.progress.get(&node))
                    .map_or(0, |progress| progress.incarnation);
                membership.learners.remove(&node);
                membership.voters.insert(node);
                // The life that holds the entries is the one that votes.
                if incarnation == 0 {
                    membership.incarnations.remove(&node);
                } else {
                    membership.incarnations.insert(node, incarnation);
                }
            }
            MembershipChange::RemoveNode(node) => {
                if membership.voters.contains(&node) {
                    if membership.voters.len() == 1 {
                        return Err(MembershipError::LastVoter(node));
                    }
                    membership.voters.remove(&node);
                } else if !membership.learners.remove(&node) {
                    return Err(MembershipError::UnknownNode(node));
                }
                membership.incarnations.remove(&node);
                membership.addresses.remove(&node);
            }
        }
        Ok(membership)
    }

    /// Leader: track exactly the current members (new learners start in
    /// Probe at our log's end; removed nodes are forgotten).
    pub(crate) fn sync_progress_with_membership(&mut self) {
        let members = self.members();
        let id = self.id;
        let next = self.log.last_index() + 1;
        let Some(leader) = self.leader_state_mut() else {
            return;
        };
        leader.progress.retain(|node, _| members.contains(node));
        for member in members {
            if member != id {
                leader
                    .progress
                    .entry(member)
                    .or_insert_with(|| Progress::new(next));
            }
        }
    }

    /// Leader: once a membership without this node is committed, step down
    /// (dissertation §4.2.2) and hand over to the most up-to-date voter to
    /// spare the cluster an election timeout. Returns whether it stepped
    /// down.
    pub(crate) fn step_down_if_removed(&mut self) -> bool {
        if self.is_voter() || self.membership_index > self.commit {
            return false;
        }
        let last_index = self.log.last_index();
        let successor = self.leader_state().and_then(|leader| {
            leader
                .progress
                .iter()
                .filter(|(node, progress)| {
                    self.membership.voters.contains(node) && progress.match_index == last_index
                })
                .map(|(node, _)| *node)
                .next()
        });
        // Make sure followers learn the commit of the change first.
        self.broadcast_append(true);
        if let Some(successor) = successor {
            self.send(successor, MessageBody::TimeoutNow);
        }
        tracing::info!(node = %self.id, term = self.term, "removed from the cluster: stepping down");
        self.become_follower(self.term, None);
        true
    }
}
