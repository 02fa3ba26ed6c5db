//! The node runtime: drives the pure Raft core with real time, a durable log,
//! a network and a state machine.
//!
//! ```text
//!             Node (cloneable handle)                  peers (transport)
//!   propose/read ──► events ──► driver task ──► messages ──────────────►
//!                                 │  ▲   │
//!               WriteBatch (group │  │   │ committed entries, reads
//!               commit, fsync)    ▼  │   ▼
//!                          log writer   apply worker ──► StateMachine
//!                          thread       thread            (SQLite, ...)
//! ```
//!
//! - The **driver** ([`driver`]) is one tokio task that owns the
//!   [`RaftCore`](crate::raft::RaftCore). It is the only place the core is
//!   touched, so the core needs no locks. Each loop turn drains every queued
//!   event (proposals from many clients, peer messages) before asking the core
//!   for its [`Ready`](crate::raft::Ready): that is what batches many client
//!   writes into one log append, one fsync and one AppendEntries.
//! - The **log writer** ([`crate::storage::LogWriter`]) persists batches on
//!   its own thread with group commit; the driver never waits for a disk.
//! - The **apply worker** ([`apply`]) owns the state machine on its own
//!   thread and resolves proposals once their entries are applied.
//! - A follower that receives a proposal forwards it to the leader through
//!   [`PeerNetwork::call`]; reads use ReadIndex, on a follower by asking the
//!   leader for its read index and waiting to apply locally up to it.

//!
//! A node never creates a cluster by itself: [`initialize`] writes the
//! founding state of each node once (`cluster init`), and [`Node::start`]
//! refuses a Raft directory without state unless the node is a joiner (see
//! [`preflight`], `startup.rs` and SPEC §13).

mod apply;
#[cfg(test)]
mod backpressure_tests;
mod compaction;
mod disk;
mod driver;
mod error;
#[cfg(test)]
mod fatal_tests;
mod follow_up;
mod handle;
mod initialize;
mod network;
#[cfg(test)]
mod restore_failure_tests;
mod snapshot_log;
mod startup;
mod status;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
mod tick_clock;
mod to_leader;
// The simulation keeps the runtime's proposal table for its clients, so the
// `testing` feature makes it reachable from the `sim` crate.
#[cfg(any(test, feature = "testing"))]
pub mod waiters;
#[cfg(not(any(test, feature = "testing")))]
pub(crate) mod waiters;

pub use apply::ApplyResult;
pub use error::{Fatal, LogOperation, NodeError, StateMachineError, StateMachineOperation, Worker};
pub use handle::{BackupSnapshot, Node, ReadConsistency};
pub use initialize::{initialize, initialize_from_snapshot, InitializeError, SeedSnapshot};
pub use network::{NodeReply, NodeRequest, PeerNetwork, RpcFuture};
pub use startup::{preflight, StartError};
pub use status::{MemberStatus, NodeStatus};

use crate::metrics::Metrics;
use crate::raft::NodeId;
use std::path::PathBuf;

/// The default of [`NodeOptions::max_pending_requests`]: well above what
/// the request path can bring at once (1 024 queued transport requests,
/// plus the ones being handled), so that it refuses only a backlog.
pub const DEFAULT_MAX_PENDING_REQUESTS: usize = 8192;

/// The default of [`NodeOptions::snapshot_after_bytes`]: 32 MiB, about
/// 75 000 writes of 256-byte secrets. With [`DEFAULT_KEEP_LOG_BYTES`] it
/// bounds the log a node holds in memory: at a million secrets (a 360 MB
/// state) 64 + 24 MiB kept the leader at about 210 MB of anonymous memory,
/// 32 + 8 MiB at about 123 MB, with no loss of throughput measured
/// (docs/performance.md, "Growth").
pub const DEFAULT_SNAPSHOT_AFTER_BYTES: u64 = 32 << 20;

/// The default of [`NodeOptions::keep_log_bytes`]: 8 MiB, about 18 000
/// writes of 256-byte secrets; a follower away for longer is sent the
/// snapshot (a million secrets: about 2 s on a LAN).
pub const DEFAULT_KEEP_LOG_BYTES: u64 = 8 << 20;
use std::time::Duration;

/// How to run one node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// This node's id.
    pub id: NodeId,
    /// Directory for the Raft log and snapshots (the state machine keeps its
    /// own files wherever the application puts them).
    pub raft_dir: PathBuf,
    /// Whether this node is a new member joining a running cluster. Used
    /// only when `raft_dir` holds no Raft state: a joiner then starts empty
    /// with a fresh incarnation and waits for a leader to send it the log;
    /// any other node refuses to start ([`StartError::NoState`]), because
    /// it lost its data or was never [`initialize`]d.
    pub join: bool,
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// Lower bound of the randomized election timeout.
    pub election_min: Duration,
    /// Upper bound (exclusive) of the randomized election timeout.
    pub election_max: Duration,
    /// Snapshot after this many applied entries, once the commands applied
    /// since the last snapshot also weigh as much as it did or
    /// [`snapshot_after_bytes`](Self::snapshot_after_bytes), whichever is
    /// less (see the apply worker).
    pub snapshot_every: u64,
    /// The most command bytes applied between two snapshots: what bounds
    /// the log the core holds in memory once the state outgrows it
    /// ([`DEFAULT_SNAPSHOT_AFTER_BYTES`] by default).
    pub snapshot_after_bytes: u64,
    /// Command bytes the core keeps in memory behind a snapshot before it
    /// compacts to it, so that a follower away for less catches up from
    /// entries rather than a whole snapshot ([`DEFAULT_KEEP_LOG_BYTES`]
    /// by default; 0 compacts at once). The log on disk is compacted when
    /// the snapshot is stored either way.
    pub keep_log_bytes: u64,
    /// How long a proposal or read may wait for a leader before failing
    /// with [`NodeError::Unavailable`].
    pub request_timeout: Duration,
    /// Most proposals and linearizable reads this node accepts at once;
    /// beyond it they are refused at once with [`NodeError::Busy`] instead
    /// of queueing ([`DEFAULT_MAX_PENDING_REQUESTS`] by default).
    pub max_pending_requests: usize,
    /// Seed of the core's randomness (election timeouts).
    pub seed: u64,
    /// Free space to keep on the file system of `raft_dir`: below it the
    /// node refuses new writes ([`NodeError::DiskFull`]) and keeps the
    /// space for entries already proposed, the leader's entries, votes and
    /// snapshots. 0 turns the check off (a write that fails on a full disk
    /// is still held and retried, never lost or acknowledged).
    pub min_free_bytes: u64,
    /// Where the runtime records what it does (Raft gauges, proposal,
    /// apply and fsync latencies); the application scrapes it. A fresh
    /// [`Metrics::default`] when nobody scrapes.
    pub metrics: Metrics,
}

impl NodeOptions {
    /// The length of one core tick: heartbeats and election timeouts are
    /// whole numbers of ticks. A tick wakes the node whether or not there
    /// is work (it is most of an idle node's CPU), so it is as long as it
    /// can be: one heartbeat, unless that leaves fewer than ten distinct
    /// election timeouts between the lowest and the highest (then a tenth
    /// of that range), so that randomized timeouts still keep candidates
    /// apart. The defaults (a 100 ms heartbeat, 500–1000 ms timeouts)
    /// give a 50 ms tick; 150–300 ms timeouts give 15 ms.
    pub fn tick(&self) -> Duration {
        let spread = self.election_max.saturating_sub(self.election_min) / 10;
        self.heartbeat.min(spread).max(Duration::from_millis(1))
    }

    /// The core's configuration for these options.
    pub fn raft_config(&self) -> crate::raft::Config {
        let tick = self.tick().as_micros().max(1);
        let ticks =
            |duration: Duration| (duration.as_micros() / tick).clamp(1, u32::MAX as u128) as u32;
        let mut config = crate::raft::Config::new(self.id, self.seed);
        config.heartbeat_ticks = ticks(self.heartbeat);
        config.election_ticks_min = ticks(self.election_min).max(config.heartbeat_ticks + 1);
        config.election_ticks_max = ticks(self.election_max).max(config.election_ticks_min + 1);
        config
    }
}
