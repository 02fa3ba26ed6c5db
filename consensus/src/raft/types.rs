//! Vocabulary shared by the core, the log store, the transport and the runtime.
//!
//! These types cross every boundary of the crate (they are persisted and sent
//! on the wire), so they derive `serde` and are encoded with postcard.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A Raft term: a logical clock that increases with every election.
pub type Term = u64;

/// A position in the replicated log; the first entry has index 1, and index 0
/// means "before the first entry".
pub type LogIndex = u64;

/// The identity of a cluster member. Shown and parsed as `node<N>`
/// (`node1`, `node2`, ...), the form used in certificates
/// (`urn:vault:node:node1`), configuration and log lines.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node{}", self.0)
    }
}

/// Why a string is not a [`NodeId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node id {0:?}: expected node<N> or <N> with N a positive integer")]
pub struct ParseNodeIdError(pub String);

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    /// Accepts `node7` or `7`; zero is refused because index-like ids start at 1.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits = text.strip_prefix("node").unwrap_or(text);
        match digits.parse::<u64>() {
            Ok(n) if n > 0 && !digits.starts_with('+') => Ok(NodeId(n)),
            _ => Err(ParseNodeIdError(text.to_string())),
        }
    }
}

/// The durable part of a node's Raft state other than the log: it must be on
/// stable storage before any message that depends on it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// The candidate this node voted for in `term`, if any.
    pub vote: Option<NodeId>,
    /// The highest index known committed. Persisting it is an optimisation
    /// (fewer entries to re-apply), never required for safety.
    pub commit: LogIndex,
    /// Which life of this node id this state belongs to: 0 for a founding
    /// member (started by [`RaftCore::bootstrap`](super::RaftCore::bootstrap)),
    /// a random non-zero number drawn by the runtime for a node that joined
    /// later ([`RaftCore::join`](super::RaftCore::join)). It never changes
    /// for the life of a data directory, and a node that lost its data never
    /// gets its old one back, so its forgotten votes and acknowledgements can
    /// never be counted again (see [`Membership::incarnations`]).
    pub incarnation: Incarnation,
}

/// The life of a node id: see [`HardState::incarnation`]. A reused id (a
/// node removed, wiped and added back) comes back with a new one.
pub type Incarnation = u64;

/// The voting and non-voting members of the cluster at some point of the log.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Membership {
    /// Members that vote and count towards quorums.
    pub voters: std::collections::BTreeSet<NodeId>,
    /// Members that receive the log but neither vote nor count towards quorums
    /// (new nodes catching up before promotion).
    pub learners: std::collections::BTreeSet<NodeId>,
    /// The incarnation of each voter that joined after the cluster began,
    /// recorded when it was promoted (a founding voter is absent: its
    /// incarnation is 0). A message from a voter whose incarnation is not
    /// the one recorded here comes from another life of that id, one that
    /// may have forgotten what it promised, and is dropped: so a node id
    /// reused after `member remove` + `member add`, or a voter whose disk
    /// was replaced, is never counted as the voter it used to be.
    pub incarnations: std::collections::BTreeMap<NodeId, Incarnation>,
    /// Where the runtime reaches each member (`host:port`), for members
    /// whose address was recorded: the founding ones when the cluster was
    /// initialised with addresses, and every node added with
    /// [`MembershipChange::AddLearner`](super::MembershipChange). Opaque to
    /// the core, which never reads it; it travels with the membership so
    /// that every node, including one restarted long after, can dial a
    /// member that joined after its own configuration file was written.
    pub addresses: std::collections::BTreeMap<NodeId, String>,
}

impl Membership {
    /// A membership of `voters` only, every one a founding member.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership {
            voters: voters.into_iter().collect(),
            ..Membership::default()
        }
    }

    /// The incarnation a message from `node` must carry to count as coming
    /// from the voter this membership means, or `None` if `node` is not a
    /// voter here (learners and strangers vote for nothing).
    pub fn voter_incarnation(&self, node: NodeId) -> Option<Incarnation> {
        self.voters
            .contains(&node)
            .then(|| self.incarnations.get(&node).copied().unwrap_or(0))
    }
}

/// What one log entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryPayload {
    /// The no-op a new leader appends so that it can commit entries of earlier
    /// terms (Raft §5.4.2, §8).
    Blank,
    /// An application command, opaque to Raft, handed to the state machine.
    Command(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A new cluster membership.
    Membership(Membership),
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// The entry's position in the log.
    pub index: LogIndex,
    /// What the entry carries.
    pub payload: EntryPayload,
}

/// Describes a snapshot: the state machine after applying every entry up to
/// and including `last_index`, and the membership in force at that point.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Index of the last entry the snapshot covers.
    pub last_index: LogIndex,
    /// Term of the entry at `last_index`.
    pub last_term: Term,
    /// Membership as of `last_index`.
    pub membership: Membership,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_round_trip_through_text() {
        assert_eq!("node3".parse::<NodeId>(), Ok(NodeId(3)));
        assert_eq!("12".parse::<NodeId>(), Ok(NodeId(12)));
        assert_eq!(NodeId(5).to_string(), "node5");
        for bad in ["", "node", "node0", "0", "nodex", "-1", "+3", "node+3"] {
            assert!(bad.parse::<NodeId>().is_err(), "{bad:?} must be refused");
        }
    }
}
