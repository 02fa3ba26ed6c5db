//! The messages Raft nodes exchange. They go on the wire (postcard), so every
//! type here derives `Serialize`/`Deserialize`.

use super::types::{Entry, Incarnation, LogIndex, NodeId, SnapshotMeta, Term};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One message between two nodes: the envelope every RPC travels in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The recipient.
    pub to: NodeId,
    /// The sender's term when it sent the message (a pre-vote request
    /// carries the term the candidate would campaign in).
    pub term: Term,
    /// The sender's incarnation ([`HardState::incarnation`](super::HardState::incarnation)):
    /// which life of the id `from` sent this.
    pub incarnation: Incarnation,
    /// What the message says.
    pub body: MessageBody,
}

/// Indices and terms beyond this are refused on receipt: no real cluster
/// gets near it, and it leaves room for `+ 1` everywhere without overflow.
pub const MAX_INDEX_OR_TERM: u64 = u64::MAX / 2;

impl Message {
    /// Whether the message is internally consistent: terms and indices
    /// below [`MAX_INDEX_OR_TERM`], and an AppendEntries whose entries are
    /// consecutive from `prev_log_index + 1` with terms that never decrease
    /// and never exceed the message's term. The core drops anything else
    /// (a peer is authenticated, but a bug there must not corrupt our log).
    pub fn is_well_formed(&self) -> bool {
        if self.term > MAX_INDEX_OR_TERM {
            return false;
        }
        match &self.body {
            MessageBody::AppendEntries(request) => {
                let mut expected = request.prev_log_index.saturating_add(1);
                let mut previous_term = request.prev_log_term;
                if request.prev_log_index > MAX_INDEX_OR_TERM || previous_term > self.term {
                    return false;
                }
                for entry in &request.entries {
                    if entry.index != expected
                        || entry.term < previous_term
                        || entry.term > self.term
                    {
                        return false;
                    }
                    expected = expected.saturating_add(1);
                    previous_term = entry.term;
                }
                expected <= MAX_INDEX_OR_TERM
            }
            MessageBody::InstallSnapshot(chunk) => {
                let end = chunk.offset.checked_add(chunk.data.len() as u64);
                chunk.meta.last_index <= MAX_INDEX_OR_TERM
                    && chunk.meta.last_term <= self.term
                    && end.is_some_and(|end| end <= chunk.total)
            }
            MessageBody::RequestVote(request) => request.last_log_index <= MAX_INDEX_OR_TERM,
            _ => true,
        }
    }

    /// The name of the RPC, as printed in log lines such as
    /// `Node node1 sends RPC AppendEntries to Node node2`.
    pub fn rpc_name(&self) -> &'static str {
        self.body.rpc_name()
    }
}

/// The RPCs of Raft, requests and responses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// Leader to follower: entries to append after `prev_log_index` (Raft §5.3).
    AppendEntries(AppendEntries),
    /// Follower to leader: the outcome of an AppendEntries.
    AppendEntriesResponse(AppendEntriesResponse),
    /// Candidate to voter: a vote request, or a pre-vote probe (§9.6 of the
    /// dissertation) that changes no state on the voter.
    RequestVote(RequestVote),
    /// Voter to candidate: the answer to a RequestVote.
    RequestVoteResponse(RequestVoteResponse),
    /// Leader to follower: one chunk of a snapshot (Raft §7).
    InstallSnapshot(InstallSnapshot),
    /// Follower to leader: how much of a snapshot has arrived.
    InstallSnapshotResponse(InstallSnapshotResponse),
    /// Leader to follower: "I am still the leader"; also confirms leadership
    /// for ReadIndex rounds.
    Heartbeat(Heartbeat),
    /// Follower to leader: the answer to a Heartbeat.
    HeartbeatResponse(HeartbeatResponse),
    /// Leader to the target of a leadership transfer: start an election now,
    /// bypassing PreVote and the leader lease (dissertation §3.10).
    TimeoutNow,
}

impl MessageBody {
    /// The name of the RPC, as printed in log lines.
    pub fn rpc_name(&self) -> &'static str {
        match self {
            MessageBody::AppendEntries(_) => "AppendEntries",
            MessageBody::AppendEntriesResponse(_) => "AppendEntriesResponse",
            MessageBody::RequestVote(request) if request.pre_vote => "PreVote",
            MessageBody::RequestVote(_) => "RequestVote",
            MessageBody::RequestVoteResponse(response) if response.pre_vote => "PreVoteResponse",
            MessageBody::RequestVoteResponse(_) => "RequestVoteResponse",
            MessageBody::InstallSnapshot(_) => "InstallSnapshot",
            MessageBody::InstallSnapshotResponse(_) => "InstallSnapshotResponse",
            MessageBody::Heartbeat(_) => "Heartbeat",
            MessageBody::HeartbeatResponse(_) => "HeartbeatResponse",
            MessageBody::TimeoutNow => "TimeoutNow",
        }
    }
}

/// Entries to append, with the consistency check of Raft §5.3.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendEntries {
    /// Index of the entry just before `entries`.
    pub prev_log_index: LogIndex,
    /// Term of the entry at `prev_log_index`.
    pub prev_log_term: Term,
    /// The entries, consecutive from `prev_log_index + 1`; may be empty.
    pub entries: Vec<Entry>,
    /// The leader's commit index.
    pub leader_commit: LogIndex,
}

/// The answer to an [`AppendEntries`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendEntriesResponse {
    /// The follower's log now matches the leader's up to `match_index`
    /// (durably: this response is sent only after persisting).
    Accepted {
        /// The last index known to match the leader's log.
        match_index: LogIndex,
    },
    /// The consistency check failed at `rejected_prev_index`; the hint lets
    /// the leader skip a whole term of entries at once.
    Rejected {
        /// The `prev_log_index` of the refused request (lets the leader
        /// recognise stale rejections).
        rejected_prev_index: LogIndex,
        /// Where the leader should look next.
        hint: ConflictHint,
    },
}

/// Fast backtracking hint of a rejected AppendEntries (dissertation §5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictHint {
    /// The term of the follower's entry at `rejected_prev_index`, or `None`
    /// when the follower's log is shorter than that.
    pub conflict_term: Option<Term>,
    /// The first index of `conflict_term` in the follower's log, or the
    /// follower's last index + 1 when `conflict_term` is `None`.
    pub first_index: LogIndex,
}

/// A request for a vote (or a pre-vote).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestVote {
    /// Index of the candidate's last log entry.
    pub last_log_index: LogIndex,
    /// Term of the candidate's last log entry.
    pub last_log_term: Term,
    /// A PreVote probe: the voter changes neither its term nor its vote.
    pub pre_vote: bool,
    /// The campaign follows a leadership transfer (TimeoutNow): voters do not
    /// apply the leader lease to it.
    pub transfer: bool,
}

/// The answer to a [`RequestVote`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestVoteResponse {
    /// Whether the vote (or pre-vote) is granted.
    pub granted: bool,
    /// Whether this answers a pre-vote.
    pub pre_vote: bool,
}

/// One chunk of a snapshot being streamed to a follower. A leader keeps
/// several in flight (`Config::max_inflight_snapshot_chunks`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallSnapshot {
    /// The snapshot this chunk belongs to.
    pub meta: SnapshotMeta,
    /// Size of the whole snapshot in bytes: the receiver reserves the
    /// buffer once and reports its progress against it. The chunk ending
    /// there is the last one.
    pub total: u64,
    /// Byte offset of `data` within the snapshot.
    pub offset: u64,
    /// The chunk's bytes. On the leader a slice of the snapshot's shared
    /// buffer (no copy until the wire encoding writes the frame).
    #[serde(with = "shared_bytes")]
    pub data: Bytes,
}

impl InstallSnapshot {
    /// Whether this chunk ends the snapshot.
    pub fn is_last(&self) -> bool {
        self.offset.saturating_add(self.data.len() as u64) == self.total
    }
}

impl std::fmt::Debug for InstallSnapshot {
    // The bytes are application state: show where they go, never what
    // they are.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstallSnapshot")
            .field("meta", &self.meta)
            .field("total", &self.total)
            .field("offset", &self.offset)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// The answer to an [`InstallSnapshot`] chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallSnapshotResponse {
    /// `last_index` of the snapshot being received.
    pub snapshot_index: LogIndex,
    /// The offset the follower expects next: how much of the snapshot it
    /// holds, contiguous from the start.
    pub next_offset: u64,
    /// The chunk answered started beyond `next_offset` and was dropped:
    /// the chunks in between were lost (or overtaken), so the leader goes
    /// back and resends from `next_offset`. Without it, an answer is an
    /// acknowledgement (of a new chunk, or of a duplicate).
    pub gap: bool,
    /// The whole snapshot arrived and was handed out for installation (sent
    /// only after the install is durable).
    pub done: bool,
}

/// Serde for [`Bytes`] as a byte string, the encoding `serde_bytes` gives
/// a `Vec<u8>`: a chunk is written to the frame straight from the shared
/// buffer, and decoded into a buffer of its own.
mod shared_bytes {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        bytes: &Bytes,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Bytes, D::Error> {
        serde_bytes::ByteBuf::deserialize(deserializer).map(|buffer| Bytes::from(buffer.into_vec()))
    }
}

/// A leader's periodic "still here".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The leader's commit index, capped at what the follower is known to
    /// hold so the follower never commits entries it lacks.
    pub commit: LogIndex,
    /// The ReadIndex round this heartbeat confirms (0 when none).
    pub read_round: u64,
}

/// The answer to a [`Heartbeat`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// The round of the heartbeat answered.
    pub read_round: u64,
}
