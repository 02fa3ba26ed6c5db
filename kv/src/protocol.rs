//! What a key-value client sends, what it gets back, and what is written
//! to the Raft log.
//!
//! Every key is a `u64` that holds a `u64` and starts at 0, like the
//! registers of the linearizability checker: a key never written reads as 0.

use serde::{Deserialize, Serialize};

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvRequest {
    /// Sets `key` to `value`.
    Put {
        /// The write's session, which makes a retry harmless.
        session: ClientSession,
        /// The key.
        key: u64,
        /// The new value.
        value: u64,
    },
    /// Reads `key`: linearizable (through the leader's read index) unless
    /// `stale`, which answers from the serving node's own state.
    Get {
        /// The key.
        key: u64,
        /// Whether a stale read will do.
        stale: bool,
    },
    /// Sets `key` to `new` if it holds `expected`.
    Cas {
        /// The write's session.
        session: ClientSession,
        /// The key.
        key: u64,
        /// The value the key must hold.
        expected: u64,
        /// The value written if it does.
        new: u64,
    },
    /// The serving node's status.
    Status,
}

/// Identifies a write for exactly-once execution: the bus's session stamp
/// (a random client id, and a number that grows with each write of that
/// client). A client has one write in flight at a time, so the state
/// machine keeps the last answer per identity and client and answers a
/// retry from it.
pub use bus::sessions::ClientSession;

/// What a request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResponse {
    /// The put was applied.
    Written,
    /// The key's value.
    Value(u64),
    /// The compare-and-swap swapped (`swapped`), or found `current`.
    Swapped {
        /// Whether the key held the expected value (and now holds the new one).
        swapped: bool,
        /// The value the key held before.
        current: u64,
    },
    /// The serving node's status.
    Status(NodeReport),
}

/// One node's view of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// The node's id, e.g. `node1`.
    pub id: String,
    /// Its role.
    pub role: String,
    /// Its term.
    pub term: u64,
    /// The leader it knows.
    pub leader: Option<String>,
    /// Its commit index.
    pub commit_index: u64,
    /// Its applied index.
    pub applied_index: u64,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum KvError {
    /// No leader or quorum within the timeout, or the node is busy: the
    /// request may succeed later or on another node. A write may or may
    /// not have been applied.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The caller may not use the store (a node certificate).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

/// The answer to a [`KvRequest`].
pub type KvReply = Result<KvResponse, KvError>;

/// A write as proposed to Raft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvCommand {
    /// The identity that asked (`client:alice`), set by the serving node
    /// from the client's certificate: sessions are kept per identity, so
    /// one client can neither collide with nor replay another's answers.
    pub owner: String,
    /// The write's session.
    pub session: ClientSession,
    /// The key.
    pub key: u64,
    /// What to do to it.
    pub operation: Operation,
}

/// A write to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    /// Set the value.
    Put(u64),
    /// Set `new` if the key holds `expected`.
    Cas {
        /// The value the key must hold.
        expected: u64,
        /// The value written if it does.
        new: u64,
    },
}

/// A read of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvQuery {
    /// The value of a key.
    Get(u64),
}

/// The bytes of `value` (postcard).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Every type here is plain data; encoding into a Vec cannot fail.
    postcard::to_stdvec(value).unwrap_or_default()
}

/// Decodes `bytes` as a `T`.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}
