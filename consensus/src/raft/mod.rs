//! The Raft core: a sans-IO, deterministic state machine.
//!
//! **Promise.** Nothing in this module (or below it) performs I/O, reads a
//! clock, spawns tasks, or draws randomness from anything but the seed in its
//! configuration. Time is a count of ticks; the caller decides how long a tick
//! is. Given the same seed and the same sequence of inputs, the core produces
//! exactly the same outputs, which is what lets the simulation replay any run.
//! CI enforces the promise with a grep over this directory (see `.ci/run`).
//!
//! # Using it
//!
//! The runtime owns a [`RaftCore`], feeds it inputs ([`RaftCore::tick`],
//! [`RaftCore::step`], [`RaftCore::propose`], [`RaftCore::read_index`], ...)
//! and after each input drains [`RaftCore::ready`], doing what the [`Ready`]
//! says in the order its documentation gives, then acknowledges durable
//! writes with [`RaftCore::persisted`].
//!
//! ```
//! use consensus::raft::{Config, NodeId, RaftCore};
//! use std::collections::BTreeSet;
//!
//! // A one-node cluster elects itself and commits a command.
//! let voters: BTreeSet<NodeId> = [NodeId(1)].into_iter().collect();
//! let mut core = RaftCore::bootstrap(Config::new(NodeId(1), 7), voters).unwrap();
//! while core.leader_handle().is_err() {
//!     core.tick();
//! }
//! let indices = core.propose(vec![b"hello".to_vec()]).unwrap();
//! let ready = core.ready();
//! // ... persist ready.hard_state and ready.entries, then:
//! let (index, term) = ready.persist_ack().unwrap();
//! core.persisted(index, term);
//! let committed = core.ready().committed_entries;
//! assert_eq!(committed.last().map(|entry| entry.index), Some(*indices.end()));
//! ```

mod config;
mod core;
mod election;
mod errors;
mod leader;
mod log;
mod membership;
mod message;
mod progress;
mod read_index;
mod ready;
mod replication;
mod role;
mod shared;
mod snapshot;
mod snapshot_receive;
mod snapshot_send;
mod status;
#[cfg(any(test, feature = "testing"))]
mod test_support;
#[cfg(test)]
pub(crate) mod tests;
mod transfer;
pub mod types;

// The simulation's teeth tests plant these bugs (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub use config::PlantedBugs;
pub use config::{Config, ConfigError};
pub use core::{RaftCore, RestoredState};
pub use errors::{
    MembershipError, NotLeader, ProposeError, RestoreError, SnapshotError, TransferError,
};
pub use leader::LeaderHandle;
pub use membership::MembershipChange;
pub use message::{
    AppendEntries, AppendEntriesResponse, ConflictHint, Heartbeat, HeartbeatResponse,
    InstallSnapshot, InstallSnapshotResponse, Message, MessageBody, RequestVote,
    RequestVoteResponse, MAX_INDEX_OR_TERM,
};
pub use progress::ReplicationState;
pub use ready::{ReadState, Ready, RequestId, Role, SoftState};
pub use snapshot::{Snapshot, SnapshotTransfer};
pub use status::{FollowerStatus, ProgressMark, Status};
pub use types::*;
