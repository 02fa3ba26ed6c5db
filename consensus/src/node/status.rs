//! [`NodeStatus`]: what a node reports about itself (`status`, `member list`,
//! metrics, health), built from the Raft core's status once per change.

use crate::raft::{self, LogIndex, NodeId, Role, Term};

/// A node's view of itself, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    /// The node.
    pub id: NodeId,
    /// `leader`, `follower`, `learner`, `candidate` or `pre-candidate`.
    pub role: String,
    /// Current term.
    pub term: Term,
    /// The leader it knows, if any.
    pub leader: Option<NodeId>,
    /// Commit index.
    pub commit_index: LogIndex,
    /// Applied index.
    pub applied_index: LogIndex,
    /// Last log index.
    pub last_log_index: LogIndex,
    /// Voters of the membership in force.
    pub voters: Vec<NodeId>,
    /// Learners of the membership in force.
    pub learners: Vec<NodeId>,
    /// Every member of the membership in force (voters, then learners),
    /// with the leader's view of its progress when this node leads.
    pub members: Vec<MemberStatus>,
    /// The log index of the membership entry in force (0 for none yet).
    pub membership_index: LogIndex,
    /// Set while the node refuses new writes because of its disk (free
    /// space below the reserve, or a log write failing and being retried):
    /// why. Cleared by itself once the disk takes writes again.
    #[serde(default)]
    pub writes_refused: Option<String>,
    /// How many log writes have failed (and been retried) since the node
    /// started: a counter to scrape.
    #[serde(default)]
    pub disk_failures: u64,
}

/// One member as a node sees it, for `member list`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct MemberStatus {
    /// The member.
    pub id: NodeId,
    /// Its address as recorded in the membership (`host:port`), if any;
    /// founding members are reached at the addresses of the nodes'
    /// configuration files instead.
    pub address: Option<String>,
    /// Whether it votes (otherwise it is a learner catching up).
    pub voter: bool,
    /// On a leader: how far the member's log matches the leader's (the
    /// leader's own last index for itself).
    pub match_index: Option<LogIndex>,
    /// On a leader: whether the member answered within about an election
    /// timeout (always true for the leader itself).
    pub reachable: Option<bool>,
    /// On a leader, while it streams a snapshot to the member: the bytes
    /// the member acknowledged so far.
    pub snapshot_offset: Option<u64>,
}

impl NodeStatus {
    pub(crate) fn from_core(status: &raft::Status) -> Self {
        let leading = status.role == Role::Leader;
        let member = |id: NodeId, voter: bool| {
            let follower = status.followers.get(&id);
            let (match_index, reachable) = match follower {
                _ if id == status.id && leading => (Some(status.last_log_index), Some(true)),
                Some(follower) => (Some(follower.match_index), Some(follower.reachable)),
                None => (None, None),
            };
            let snapshot_offset = follower.and_then(|follower| match follower.state {
                raft::ReplicationState::Snapshot { offset, .. } => Some(offset),
                _ => None,
            });
            MemberStatus {
                id,
                address: status.membership.addresses.get(&id).cloned(),
                voter,
                match_index,
                reachable,
                snapshot_offset,
            }
        };
        let members = status
            .membership
            .voters
            .iter()
            .map(|id| member(*id, true))
            .chain(
                status
                    .membership
                    .learners
                    .iter()
                    .map(|id| member(*id, false)),
            )
            .collect();
        NodeStatus {
            members,
            membership_index: status.membership_index,
            id: status.id,
            // A learner follows like any follower, but `status` says
            // which it is (SPEC §8 lists `learner` among the roles).
            role: if status.membership.learners.contains(&status.id) {
                "learner".to_string()
            } else {
                status.role.to_string()
            },
            term: status.term,
            leader: status.leader,
            commit_index: status.commit_index,
            applied_index: status.applied_index,
            last_log_index: status.last_log_index,
            voters: status.membership.voters.iter().copied().collect(),
            learners: status.membership.learners.iter().copied().collect(),
            writes_refused: None,
            disk_failures: 0,
        }
    }
}
