//! What clients send to nodes and what nodes answer (SPEC §4, §5, §8).
//!
//! Every type here is `serde` and travels as postcard bytes
//! ([`encode`], [`decode`]). Nodes never see plaintext: a secret arrives as a
//! [`SealedSecret`] built by [`crate::crypto`] on the client, and a share
//! arrives as a [`WrappedKey`] for the recipient.
//!
//! The flow on a node: a frame decodes to a [`ClientRequest`]; the transport
//! knows the caller's certificate identity; [`plan`] turns both into either a
//! [`VaultCommand`] to propose to Raft, a [`VaultQuery`] for
//! `StateMachine::query`, or a request the node runtime handles itself
//! (status, leadership transfer, the 2PC delete). Every answer is a [`Reply`].

mod command;
mod error;

pub use command::{
    decision_command, plan, prune_command, Operation, Plan, VaultCommand, VaultQuery,
    COMMAND_FORMAT,
};
pub(crate) use command::{validate_grantee, validate_grants};
pub use consensus::twopc::{Decision, Vote};
pub use error::VaultError;

use consensus::raft::{LogIndex, NodeId, Term};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::fmt;

/// A secret as the nodes store it: the client's encrypted envelope
/// ([`crate::crypto`] documents the format). Opaque to nodes; `Debug` shows
/// only its length.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedSecret({} bytes)", self.0.len())
    }
}

/// A secret's data key wrapped for one recipient's X25519 public key.
/// Opaque to nodes; `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrappedKey(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedKey({} bytes)", self.0.len())
    }
}

/// What an identity publishes so that others can share with it and so that
/// its own clients can recognise a wrong passphrase (SPEC §4). Built by
/// [`crate::crypto::Keyring::record`]; nodes store it as given and never
/// need to understand it. Nothing in it is secret: the key-check value
/// tells no more about the passphrase than the public key already does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRecord {
    /// The X25519 public key shares are wrapped for.
    pub public_key: [u8; 32],
    /// The random Argon2id salt, drawn on the identity's first use.
    pub salt: [u8; 16],
    /// The Argon2id cost the keys are derived with.
    pub kdf: crate::crypto::KdfParams,
    /// `KDF(root, "key-check")`: matches only for the right passphrase.
    pub key_check: [u8; 32],
}

/// One grant of a secret: the data key wrapped for `grantee`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Who may read the secret, e.g. `client:bob`.
    pub grantee: String,
    /// The secret's data key wrapped for the grantee's public key.
    pub wrapped_key: WrappedKey,
}

/// Identifies one client request for exactly-once execution (SPEC §3); the
/// bus's session stamp, shared by every application.
pub use bus::sessions::ClientSession;

/// One request frame from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRequest {
    /// Present on writes so that a retry is applied at most once; ignored on
    /// reads.
    pub session: Option<ClientSession>,
    /// What the client asks for.
    pub request: Request,
}

/// What a client can ask a node for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Stores a new secret, or a new version of it when `update` is set.
    AddSecret {
        /// The secret's name (SPEC §5 rules).
        name: String,
        /// The encrypted envelope.
        sealed: SealedSecret,
        /// Replace an existing secret (version + 1) instead of failing.
        update: bool,
        /// The version `sealed` is sealed as (its associated data binds
        /// it): 1 for a new secret, the current version + 1 for an update.
        /// Any other is refused as a conflict, so two updates racing from
        /// the same version cannot store one under the wrong number.
        version: u64,
    },
    /// Reads one secret of the caller, or of `owner` if it was shared with
    /// the caller.
    GetSecret {
        /// Whose secret; `None` means the caller's own.
        owner: Option<String>,
        /// The secret's name.
        name: String,
        /// Serve from this node's state without a ReadIndex round.
        stale: bool,
    },
    /// Lists the caller's secrets.
    List {
        /// Serve from this node's state without a ReadIndex round.
        stale: bool,
    },
    /// Reads version `version` of a secret (the current one or one still
    /// kept, SPEC §5), of the caller or of `owner` if shared with the caller.
    GetVersion {
        /// Whose secret; `None` means the caller's own.
        owner: Option<String>,
        /// The secret's name.
        name: String,
        /// The version asked for.
        version: u64,
        /// Serve from this node's state without a ReadIndex round.
        stale: bool,
    },
    /// Lists the versions kept of a secret, oldest first.
    History {
        /// Whose secret; `None` means the caller's own.
        owner: Option<String>,
        /// The secret's name.
        name: String,
        /// Serve from this node's state without a ReadIndex round.
        stale: bool,
    },
    /// Lists the secrets other identities shared with the caller.
    ListShared {
        /// Serve from this node's state without a ReadIndex round.
        stale: bool,
    },
    /// Grants `with` read access to the caller's secret `name`.
    Share {
        /// The caller's secret.
        name: String,
        /// The grantee's identity, e.g. `client:bob`.
        with: String,
        /// The secret's data key wrapped for the grantee's public key.
        wrapped_key: WrappedKey,
    },
    /// Withdraws a grant made by [`Request::Share`] and re-keys the
    /// secret in the same log entry: `sealed` is the next version under a
    /// new data key, and `grants` re-wrap it for every remaining grantee.
    Unshare {
        /// The caller's secret.
        name: String,
        /// The grantee's identity.
        with: String,
        /// The next version, sealed under a fresh data key.
        sealed: SealedSecret,
        /// Its version: the current one + 1, or the request is a conflict.
        version: u64,
        /// The new data key for every other grantee; the set must be
        /// exactly the secret's other grantees, or the request is a
        /// conflict (a grant made meanwhile would be left with the old key).
        grants: Vec<Grant>,
    },
    /// Publishes the caller's identity record so others can share with it.
    PublishKey {
        /// The record built from the caller's passphrase.
        record: IdentityRecord,
        /// Replace a different record already published (a new passphrase;
        /// secrets sealed under the old one no longer open). Without it a
        /// different record is refused as already existing.
        replace: bool,
    },
    /// Reads the identity record another identity (or the caller) published.
    PublicKey {
        /// Whose record, e.g. `client:bob`.
        identity: String,
        /// Serve from this node's state without a ReadIndex round.
        stale: bool,
    },
    /// Lists the identities one of the caller's secrets is shared with.
    Grants {
        /// The caller's secret.
        name: String,
    },
    /// Deletes one of the caller's secrets through two-phase commit (§6).
    Delete {
        /// The caller's secret.
        name: String,
    },
    /// Reports every node's Raft status (admin only).
    Status,
    /// Hands leadership to `to`, or to the most up-to-date follower (admin
    /// only).
    TransferLeader {
        /// The intended new leader.
        to: Option<NodeId>,
    },
    /// Lists the members of the cluster with the leader's view of their
    /// progress (admin only).
    MemberList,
    /// Adds `id`, reachable at `addr`, as a learner; the leader promotes it
    /// to voter once it has caught up (admin only, SPEC §13).
    MemberAdd {
        /// The new member.
        id: NodeId,
        /// Where the members reach it, `host:port`.
        addr: String,
    },
    /// Removes a voter or learner, the leader included (admin only).
    MemberRemove {
        /// The member to remove.
        id: NodeId,
    },
    /// A consistent copy of the whole replicated state at a committed index
    /// (admin only, SPEC §14 `snapshot save`). Answered with several
    /// frames: [`Response::SnapshotStarted`], then the state in
    /// [`Response::SnapshotChunk`]s, then the end of the stream.
    SnapshotSave,
}

impl Request {
    /// Whether only admin identities may send this request (SPEC §4).
    pub fn requires_admin(&self) -> bool {
        matches!(
            self,
            Request::Status
                | Request::TransferLeader { .. }
                | Request::MemberList
                | Request::MemberAdd { .. }
                | Request::MemberRemove { .. }
                | Request::SnapshotSave
        )
    }
}

/// The answer to one request: postcard of this type is also what
/// `StateMachine::apply` and `StateMachine::query` return per command.
pub type Reply = Result<Response, VaultError>;

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The secret was stored at `version` (1 for a new secret).
    Added {
        /// The stored version.
        version: u64,
    },
    /// One secret, still sealed.
    Secret(SecretRecord),
    /// The caller's secrets, sorted by name.
    Secrets(Vec<SecretSummary>),
    /// The secrets shared with the caller, sorted by owner and name.
    SharedSecrets(Vec<SharedSummary>),
    /// The versions kept of one secret, oldest first (the current one last).
    History {
        /// The secret.
        name: String,
        /// Its versions.
        versions: Vec<VersionSummary>,
    },
    /// The grant was recorded (or replaced).
    Shared,
    /// The grant was removed.
    Unshared,
    /// The caller's public key was recorded.
    KeyPublished,
    /// The identity record `identity` published.
    PublicKey {
        /// Whose record.
        identity: String,
        /// The record as published.
        record: IdentityRecord,
    },
    /// Who one of the caller's secrets is shared with.
    Grants {
        /// The secret.
        name: String,
        /// Its grantees, sorted.
        grantees: Vec<String>,
    },
    /// The decision in force for a two-phase-commit transaction: the one
    /// just applied, or the earlier one that won.
    Decided {
        /// The transaction id.
        tx: String,
        /// The decision the log holds first.
        decision: Decision,
        /// Whether this entry deleted the secret: false for an abort, for a
        /// repeated decision, and for a secret no longer at the voted version.
        deleted: bool,
    },
    /// The outcome of a two-phase-commit delete.
    Deleted(DeleteReport),
    /// Every node's status.
    Status(StatusReport),
    /// Leadership moved to `leader`.
    LeaderTransferred {
        /// The new leader.
        leader: NodeId,
    },
    /// The members of the cluster, as the leader sees them.
    Members(Vec<MemberInfo>),
    /// The membership change asked for is committed: `member` is its
    /// state then (a learner, just added).
    MemberAdded(MemberInfo),
    /// `id` is no longer a member.
    MemberRemoved {
        /// The removed member.
        id: NodeId,
    },
    /// Decisions recorded at or below log index `through` were forgotten.
    Pruned {
        /// The pruning horizon now.
        through: u64,
        /// How many decisions this entry removed.
        decisions: u64,
    },
    /// What the state machine remembers of one client session
    /// ([`VaultQuery::Session`]); `None` if it remembers nothing.
    Session(Option<SessionRecord>),
    /// The first frame of the answer to [`Request::SnapshotSave`]: the
    /// state that follows is as of log index `index` (term `term`) and is
    /// `bytes` long.
    SnapshotStarted {
        /// The committed log index the state is as of.
        index: LogIndex,
        /// The term of the entry at `index`.
        term: Term,
        /// Length of the state, the sum of the chunks that follow.
        bytes: u64,
    },
    /// The next piece of the state (at most 1 MiB), in order.
    SnapshotChunk(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// The last request a client session executed and the answer it got: how a
/// retried delete, which the node runs outside the log until its decision,
/// learns that its first attempt already has an outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The sequence number of the last request executed in the session.
    pub seq: u64,
    /// Its answer, as first given.
    pub reply: Box<Reply>,
}

/// One member of the cluster, as `member list` shows it (SPEC §8): the
/// bus's own member report, answered as it is.
pub use bus::Member as MemberInfo;

/// A secret as returned to a reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    /// The identity that owns the secret.
    pub owner: String,
    /// The secret's name.
    pub name: String,
    /// 1 for the first write, + 1 per update.
    pub version: u64,
    /// The encrypted envelope.
    pub sealed: SealedSecret,
    /// Present when the reader is a grantee: the data key wrapped for it.
    pub wrapped_key: Option<WrappedKey>,
}

/// One line of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretSummary {
    /// The secret's name.
    pub name: String,
    /// Its current version.
    pub version: u64,
}

/// One line of `list --shared`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedSummary {
    /// Who owns the secret, e.g. `client:alice`.
    pub owner: String,
    /// The secret's name.
    pub name: String,
    /// Its current version.
    pub version: u64,
}

/// One version of a secret in its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSummary {
    /// The version number.
    pub version: u64,
    /// When it was stored, in milliseconds since the Unix epoch (the
    /// proposing node's clock).
    pub updated_ms: i64,
}

/// What a two-phase-commit delete locks on each participant: `owner`'s
/// secret `name` at `version`. The vault's resource for the generic
/// protocol in [`consensus::twopc`], which never looks inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretVersion {
    /// The secret's owner.
    pub owner: String,
    /// The secret's name.
    pub name: String,
    /// The version every participant must hold.
    pub version: u64,
}

/// What `vault-cli delete` reports (SPEC §6, §8): the transaction id, the
/// decision, each participant's vote (an abort with its reason: its own,
/// or that it did not answer in time or could not be reached), and who
/// acknowledged.
pub type DeleteReport = consensus::twopc::TransactionReport;

/// What `vault-cli status` reports: one line per configured node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// One entry per node, sorted by id.
    pub nodes: Vec<NodeStatus>,
}

/// One node's status as seen by the node that answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node.
    pub id: NodeId,
    /// Its address, `host:port`.
    pub addr: String,
    /// `leader`, `follower`, `candidate`, `learner`, or `unknown` when the
    /// node could not be reached.
    pub role: String,
    /// Its current term.
    pub term: Term,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its commit index.
    pub commit_index: LogIndex,
    /// Its applied index.
    pub applied_index: LogIndex,
    /// Whether it answered.
    pub reachable: bool,
    /// Set while the node refuses writes because of its disk (full, or a
    /// log write failing and retried): why. Reads are still served.
    pub writes_refused: Option<String>,
}

/// Why bytes did not decode into a protocol value.
#[derive(Debug, thiserror::Error)]
#[error("malformed vault message: {0}")]
pub struct DecodeError(#[from] postcard::Error);

/// Encodes a protocol value with postcard.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own types into a Vec cannot fail: postcard only errors
    // on types serde cannot describe (none here) or a full fixed buffer.
    postcard::to_stdvec(value).unwrap_or_default()
}

/// Decodes a protocol value; any byte string is either a value or an error,
/// never a panic, and trailing bytes are refused.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(DecodeError(postcard::Error::DeserializeBadEncoding))
    }
}

#[cfg(test)]
mod tests;
