//! The role of a node, each variant carrying only the state that role has:
//! a follower has no `next_index` table, a leader no half-received
//! snapshot. Code that needs a role's state matches on the variant (the
//! leader's through [`LeaderHandle`](super::LeaderHandle)), so no role
//! reads another role's state by mistake.

use super::progress::Progress;
use super::read_index::ReadQueue;
use super::ready::Role;
use super::snapshot_receive::IncomingSnapshot;
use super::transfer::Transfer;
use super::types::NodeId;
use std::collections::BTreeMap;

/// The role of the node, with the state only that role has.
#[derive(Debug)]
pub(crate) enum RoleState {
    Follower(FollowerState),
    PreCandidate(Votes),
    Candidate(Votes),
    Leader(LeaderState),
}

/// What only a follower has.
#[derive(Debug, Default)]
pub(crate) struct FollowerState {
    /// A snapshot being received from the leader, chunk by chunk.
    pub(crate) incoming: Option<IncomingSnapshot>,
}

/// Votes received in an election (or pre-vote round): voter -> granted.
pub(crate) type Votes = BTreeMap<NodeId, bool>;

/// What only a leader has: its view of every follower, its pending reads,
/// a transfer under way, and its heartbeat clock.
#[derive(Debug)]
pub(crate) struct LeaderState {
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    pub(crate) reads: ReadQueue,
    pub(crate) transfer: Option<Transfer>,
    /// Whether an entry of this leader's term is committed yet.
    pub(crate) committed_in_term: bool,
    /// Ticks since the last heartbeat broadcast.
    pub(crate) heartbeat_elapsed: u32,
}

impl LeaderState {
    /// The state of a leader just elected, tracking `progress` for every
    /// other member.
    pub(crate) fn new(progress: BTreeMap<NodeId, Progress>) -> LeaderState {
        LeaderState {
            progress,
            reads: ReadQueue::default(),
            transfer: None,
            committed_in_term: false,
            heartbeat_elapsed: 0,
        }
    }
}

impl RoleState {
    pub(crate) fn kind(&self) -> Role {
        match self {
            RoleState::Follower(_) => Role::Follower,
            RoleState::PreCandidate(_) => Role::PreCandidate,
            RoleState::Candidate(_) => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }
}
