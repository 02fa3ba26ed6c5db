//! The output of the core: one batch of work for the runtime, with the order
//! in which that work must be done.

use super::message::Message;
use super::types::{Entry, HardState, LogIndex, NodeId, Term};
use super::{Snapshot, SnapshotTransfer};

/// Identifies a ReadIndex request; chosen by the caller, echoed back.
pub type RequestId = u64;

/// Everything the core wants done, drained with
/// [`RaftCore::ready`](super::RaftCore::ready).
///
/// # Ordering contract
///
/// The runtime handles each `Ready` in the order below, and handles
/// batches in the order they were drained. It may drain the next batch
/// before the previous one is durable (pipelining), provided writes reach
/// the disk in drain order and each batch's `messages_after_persist` wait
/// for that batch's own writes.
///
/// 1. `snapshot`, if any: restore the state machine from it, store it as the
///    log's new base and **drop every stored log entry** (the log restarts
///    right after `snapshot.meta.last_index`). Do this before step 3. No
///    acknowledgement is needed: the core already treats the snapshot as
///    its durable base, and acknowledges it to the leader only through
///    `messages_after_persist`.
/// 2. `messages` may be sent at once, even while step 3 runs (this is how a
///    leader replicates in parallel with its own fsync).
/// 3. Persist `hard_state` (if `Some`) and `entries` durably (fsync). If the
///    first entry's index is at or below the last stored index, first
///    truncate the stored log from that index, then append. Then call
///    [`RaftCore::persisted`](super::RaftCore::persisted) with the index and
///    term of the last entry written (skip the call if `entries` is empty).
/// 4. Only after step 3 is durable: send `messages_after_persist` (votes,
///    append and snapshot acknowledgements: they promise durable state).
/// 5. Apply `committed_entries` in order (they are committed and were
///    already durable locally when drained), then report progress with
///    [`RaftCore::applied`](super::RaftCore::applied) when convenient.
/// 6. Serve each of `read_states` once the state machine has applied at
///    least its `index`; answer `aborted_reads` with "not leader, retry".
/// 7. `soft_state`, if `Some`, is the new role/leader: log it, and redirect
///    waiting clients to the new leader.
/// 8. `snapshot_progress`, if `Some`: a snapshot from the leader is
///    arriving; log how far it got. Nothing else depends on it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// A snapshot received from the leader, to install (step 1).
    pub snapshot: Option<Snapshot>,
    /// Messages that may be sent immediately (step 2).
    pub messages: Vec<Message>,
    /// The hard state to persist, when it changed (step 3).
    pub hard_state: Option<HardState>,
    /// Log entries to persist (step 3), consecutive.
    pub entries: Vec<Entry>,
    /// Messages to send only once step 3 is durable (step 4).
    pub messages_after_persist: Vec<Message>,
    /// Committed entries to apply, in order (step 5).
    pub committed_entries: Vec<Entry>,
    /// Linearizable reads now safe to serve (step 6).
    pub read_states: Vec<ReadState>,
    /// ReadIndex requests that will never be answered because this node
    /// lost leadership (step 6).
    pub aborted_reads: Vec<RequestId>,
    /// The new role and leader, when they changed (step 7).
    pub soft_state: Option<SoftState>,
    /// How much of a snapshot from the leader has arrived, reported when
    /// one starts arriving and each time another tenth of it did (step 8).
    /// The core has no clock: the runtime adds the rate.
    pub snapshot_progress: Option<SnapshotTransfer>,
}

impl Ready {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == Ready::default()
    }

    /// The `(index, term)` to pass to
    /// [`RaftCore::persisted`](super::RaftCore::persisted) once `entries`
    /// are durable, if there are any.
    pub fn persist_ack(&self) -> Option<(LogIndex, Term)> {
        self.entries.last().map(|entry| (entry.index, entry.term))
    }
}

/// A read that is now linearizable: answer it from a state machine that has
/// applied at least `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The caller's request id.
    pub request_id: RequestId,
    /// The commit index when the read was confirmed.
    pub index: LogIndex,
}

/// The volatile state a runtime shows and logs: who leads, and our role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// This node's role.
    pub role: Role,
    /// The current term.
    pub term: Term,
    /// The leader this node knows for `term`, if any.
    pub leader: Option<NodeId>,
}

/// The role of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Probing with PreVote whether it could win an election.
    PreCandidate,
    /// Campaigning for votes.
    Candidate,
    /// Leads the cluster.
    Leader,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        })
    }
}
