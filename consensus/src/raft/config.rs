//! Configuration of one Raft node: timing in ticks, flow-control bounds and
//! the seed of the only randomness the core uses.

use super::types::NodeId;

/// Settings of one node's Raft core. Build it with [`Config::new`] and adjust
/// fields; [`Config::validate`] is called by the core's constructors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's identity.
    pub id: NodeId,
    /// Lower bound (inclusive) of the randomized election timeout, in ticks.
    /// Also the length of the leader lease and of the CheckQuorum window.
    pub election_ticks_min: u32,
    /// Upper bound (exclusive) of the randomized election timeout, in ticks.
    pub election_ticks_max: u32,
    /// A leader sends heartbeats every this many ticks; must be well below
    /// `election_ticks_min`.
    pub heartbeat_ticks: u32,
    /// At most this many entries in one AppendEntries message.
    pub max_entries_per_message: usize,
    /// At most about this many payload bytes in one AppendEntries message
    /// (at least one entry is always sent, however large).
    pub max_bytes_per_message: usize,
    /// At most this many AppendEntries messages in flight to one follower
    /// in the pipelined (Replicate) state.
    pub max_inflight_appends: usize,
    /// InstallSnapshot sends the snapshot in chunks of at most this many
    /// bytes. A chunk is one peer message: it must fit the transport's
    /// frame limit (16 MiB by default) with room for the metadata.
    pub snapshot_chunk_bytes: usize,
    /// At most this many snapshot chunks sent and not yet acknowledged to
    /// one follower: the leader streams ahead instead of waiting a round
    /// trip per chunk. `snapshot_chunk_bytes` times this is what one
    /// follower's transfer may hold in the transport's queues, and what a
    /// lost chunk costs to resend (go-back-N).
    pub max_inflight_snapshot_chunks: usize,
    /// Run a PreVote round before a real election, so that a node that was
    /// partitioned away cannot depose a healthy leader by bumping the term.
    pub pre_vote: bool,
    /// A leader that hears from no majority within `election_ticks_min`
    /// ticks steps down; followers that heard from a leader within that time
    /// ignore vote requests (the leader lease).
    pub check_quorum: bool,
    /// Seed of the core's random number generator (election timeouts). The
    /// node id is mixed in, so every node of a cluster may share one seed.
    pub seed: u64,
    /// Deliberate protocol bugs, switched on only by tests that check the
    /// simulation can detect them (feature `testing`; all off by default).
    #[cfg(any(test, feature = "testing"))]
    pub planted_bugs: PlantedBugs,
}

/// Deliberate violations of the protocol, compiled only in tests and with
/// the `testing` feature (the `sim` crate), so that the simulation can show
/// it catches real safety bugs. Every switch is off by default.
#[cfg(any(test, feature = "testing"))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlantedBugs {
    /// Grant votes without the up-to-date-log check (Raft §5.4.1).
    pub skip_up_to_date_check: bool,
    /// Commit entries of earlier terms by counting replicas (Raft §5.4.2,
    /// figure 8).
    pub commit_previous_term_by_counting: bool,
    /// Grant a vote to any candidate of the current term, even after voting
    /// for another (Raft §5.2).
    pub vote_twice_in_term: bool,
    /// Hear a voter whatever its incarnation, and grant votes while knowing
    /// no configuration: a node id reused after its removal, or a voter
    /// restarted with a replaced disk, counts as the voter it used to be
    /// (SPEC §13; the bug of seed 214934593).
    pub accept_any_incarnation: bool,
    /// Not a bug of the core but of the runtime's answer path, kept here
    /// with the others: answer a proposal when its index is applied,
    /// whatever the term of the entry there (`node::waiters`).
    pub answer_by_index_only: bool,
}

/// Why a [`Config`] cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The election timeout range is empty or too short.
    #[error("election timeout range [{min}, {max}) ticks is invalid: need 1 <= min < max")]
    ElectionRange {
        /// The configured lower bound.
        min: u32,
        /// The configured upper bound.
        max: u32,
    },
    /// Heartbeats would not arrive before followers time out.
    #[error("heartbeat interval {heartbeat} ticks must be at least 1 and below the election minimum {min}")]
    Heartbeat {
        /// The configured heartbeat interval.
        heartbeat: u32,
        /// The configured election minimum.
        min: u32,
    },
    /// A bound that must be positive is zero.
    #[error("{0} must be at least 1")]
    ZeroBound(&'static str),
}

impl Config {
    /// A configuration with the defaults used by the runtime: elections after
    /// 10 to 20 ticks, heartbeats every 2 ticks, PreVote and CheckQuorum on.
    pub fn new(id: NodeId, seed: u64) -> Config {
        Config {
            id,
            election_ticks_min: 10,
            election_ticks_max: 20,
            heartbeat_ticks: 2,
            max_entries_per_message: 256,
            max_bytes_per_message: 1 << 20,
            max_inflight_appends: 16,
            snapshot_chunk_bytes: 1 << 20,
            max_inflight_snapshot_chunks: 8,
            pre_vote: true,
            check_quorum: true,
            seed,
            #[cfg(any(test, feature = "testing"))]
            planted_bugs: PlantedBugs::default(),
        }
    }

    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (min, max) = (self.election_ticks_min, self.election_ticks_max);
        if min < 1 || max <= min {
            return Err(ConfigError::ElectionRange { min, max });
        }
        if self.heartbeat_ticks < 1 || self.heartbeat_ticks >= min {
            return Err(ConfigError::Heartbeat {
                heartbeat: self.heartbeat_ticks,
                min,
            });
        }
        for (name, value) in [
            ("max_entries_per_message", self.max_entries_per_message),
            ("max_bytes_per_message", self.max_bytes_per_message),
            ("max_inflight_appends", self.max_inflight_appends),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes),
            (
                "max_inflight_snapshot_chunks",
                self.max_inflight_snapshot_chunks,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::ZeroBound(name));
            }
        }
        Ok(())
    }
}
