//! Membership changes, one server at a time (dissertation §4.1, §4.2.2).
//!
//! A change is a membership entry; every node uses the latest membership in
//! its log, committed or not, from the moment it appends it. Safety rests on
//! three rules enforced here: at most one uncommitted change at a time; the
//! leader first commits an entry of its own term (this fixes the bug of the
//! original single-server algorithm, where a change by a deposed leader
//! could be lost and two disjoint majorities formed); and new nodes join as
//! learners and vote only once promoted.

use super::errors::MembershipError;
use super::leader::{LeaderHandle, Leadership};
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

impl LeaderHandle<'_> {
    /// Validates and appends a membership change (see
    /// [`RaftCore::change_membership`](super::RaftCore::change_membership)).
    pub(crate) fn propose_membership(
        &mut self,
        change: MembershipChange,
    ) -> Result<LogIndex, MembershipError> {
        if let Some(transfer) = self.leader.transfer {
            return Err(MembershipError::TransferInProgress(transfer.target));
        }
        if !self.leader.committed_in_term {
            return Err(MembershipError::LeaderNotReady);
        }
        if self.shared.membership_index > self.shared.commit {
            return Err(MembershipError::ChangeInProgress(
                self.shared.membership_index,
            ));
        }
        tracing::debug!(node = %self.shared.id, term = self.shared.term, ?change, "membership change asked");
        let membership = self.changed_membership(change)?;
        tracing::info!(node = %self.shared.id, term = self.shared.term, voters = ?membership.voters, learners = ?membership.learners, "proposing membership change");
        let (index, _) = self.append(vec![EntryPayload::Membership(membership)]);
        Ok(index)
    }

    fn changed_membership(&self, change: MembershipChange) -> Result<Membership, MembershipError> {
        let mut membership = self.shared.membership.clone();
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
                let progress = self.leader.progress.get(&node);
                let match_index = progress.map_or(0, |progress| progress.match_index);
                if match_index < self.shared.commit {
                    return Err(MembershipError::LearnerBehind {
                        node,
                        match_index,
                        commit: self.shared.commit,
                    });
                }
                let incarnation = progress.map_or(0, |progress| progress.incarnation);
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

    /// Tracks exactly the current members (new learners start in Probe at
    /// our log's end; removed nodes are forgotten).
    pub(crate) fn sync_progress_with_membership(&mut self) {
        let members = self.shared.members();
        let id = self.shared.id;
        let next = self.shared.log.last_index() + 1;
        let progress = &mut self.leader.progress;
        progress.retain(|node, _| members.contains(node));
        for member in members {
            if member != id {
                progress
                    .entry(member)
                    .or_insert_with(|| Progress::new(next));
            }
        }
    }

    /// Once a membership without this node is committed, step down
    /// (dissertation §4.2.2) and hand over to the most up-to-date voter to
    /// spare the cluster an election timeout.
    pub(crate) fn step_down_if_removed(&mut self) -> Leadership {
        if self.shared.is_voter() || self.shared.membership_index > self.shared.commit {
            return Leadership::Kept;
        }
        let last_index = self.shared.log.last_index();
        let successor = self
            .leader
            .progress
            .iter()
            .filter(|(node, progress)| {
                self.shared.membership.voters.contains(node) && progress.match_index == last_index
            })
            .map(|(node, _)| *node)
            .next();
        // Make sure followers learn the commit of the change first.
        self.broadcast_append(true);
        if let Some(successor) = successor {
            self.send(successor, MessageBody::TimeoutNow);
        }
        tracing::info!(node = %self.shared.id, term = self.shared.term, "removed from the cluster: stepping down");
        Leadership::StepDown
    }
}
