//! A snapshot of a node's Raft state for `vault-cli status` and logs.

use super::core::RaftCore;
use super::progress::ReplicationState;
use super::ready::Role;
use super::role::{LeaderState, RoleState};
use super::snapshot::SnapshotTransfer;
use super::types::{LogIndex, Membership, NodeId, Term};
use std::collections::BTreeMap;

/// What `status` shows about one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader it knows, if any.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit_index: LogIndex,
    /// What the runtime reported applied.
    pub applied_index: LogIndex,
    /// The index of its last log entry.
    pub last_log_index: LogIndex,
    /// The last index covered by its snapshot (0 without one).
    pub snapshot_index: LogIndex,
    /// The membership in force.
    pub membership: Membership,
    /// The log index of the entry that set it (0 before any).
    pub membership_index: LogIndex,
    /// On a leader: each follower's replication state.
    pub followers: BTreeMap<NodeId, FollowerStatus>,
}

/// The scalar part of a [`Status`]: equal marks mean the log, the role
/// and the membership have not moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgressMark {
    /// The node's role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader it knows, if any.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit_index: LogIndex,
    /// What the runtime reported applied.
    pub applied_index: LogIndex,
    /// The index of its last log entry.
    pub last_log_index: LogIndex,
    /// The log index of the entry that set the membership in force.
    pub membership_index: LogIndex,
}

/// A leader's view of one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerStatus {
    /// The follower's log matches the leader's through this index.
    pub match_index: LogIndex,
    /// The next index the leader will send.
    pub next_index: LogIndex,
    /// How the leader replicates to it.
    pub state: ReplicationState,
    /// Whether the leader heard from it within the last election timeout
    /// or so (this CheckQuorum round or the one before).
    pub reachable: bool,
    /// While the leader streams a snapshot to it: which one, and how many
    /// of its bytes the follower acknowledged (what `member list` shows as
    /// the catch-up progress).
    pub snapshot: Option<SnapshotTransfer>,
}

impl RaftCore {
    /// The figures of [`RaftCore::status`] that move with the log, without
    /// building the whole status: a driver compares them to decide whether
    /// a status it throttled is worth publishing.
    pub fn progress_mark(&self) -> ProgressMark {
        ProgressMark {
            role: self.role(),
            term: self.shared.term,
            leader: self.shared.leader,
            commit_index: self.shared.commit,
            applied_index: self.shared.applied_index,
            last_log_index: self.shared.log.last_index(),
            membership_index: self.shared.membership_index,
        }
    }

    /// The node's current state.
    pub fn status(&self) -> Status {
        let followers = match &self.role {
            RoleState::Leader(leader) => leader.follower_statuses(),
            _ => BTreeMap::new(),
        };
        Status {
            id: self.shared.id,
            role: self.role(),
            term: self.shared.term,
            leader: self.shared.leader,
            commit_index: self.shared.commit,
            applied_index: self.shared.applied_index,
            last_log_index: self.shared.log.last_index(),
            snapshot_index: self.shared.log.base_index(),
            membership: self.shared.membership.clone(),
            membership_index: self.shared.membership_index,
            followers,
        }
    }
}

impl LeaderState {
    /// The leader's view of each follower, for `status`.
    fn follower_statuses(&self) -> BTreeMap<NodeId, FollowerStatus> {
        self.progress
            .iter()
            .map(|(id, progress)| {
                let status = FollowerStatus {
                    match_index: progress.match_index,
                    next_index: progress.next_index,
                    state: progress.state,
                    reachable: progress.reachable,
                    snapshot: progress.snapshot_transfer(),
                };
                (*id, status)
            })
            .collect()
    }
}
