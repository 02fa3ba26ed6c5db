//! Errors of the node runtime, as seen by the application and its clients.
//!
//! Two kinds, kept apart as openraft keeps `APIError` apart from `Fatal`:
//!
//! - [`NodeError`]: why one request did not produce a response. Every
//!   variant but one is expected in normal operation (no leader, busy, a
//!   full disk, ...) and the node goes on serving.
//! - [`Fatal`]: why the node stopped for good: its durable log or its state
//!   machine failed, or a worker thread panicked. The node's join handle
//!   ([`Node::start`](super::Node::start)) ends with it, and every request
//!   in progress or made afterwards gets it as [`NodeError::Stopped`].

use crate::raft::{LogIndex, NodeId};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

/// Why a proposal or read through a [`Node`](super::Node) did not produce a
/// response. Every variant except [`Stopped`](Self::Stopped) is expected in
/// normal operation and says what the caller should do; `Stopped` means the
/// node (this one, or the leader that answered a forwarded request) hit a
/// [`Fatal`] error and serves nothing more.
///
/// `Clone` and serde because one error answers many waiters and crosses
/// the wire in [`NodeReply::Failed`](super::NodeReply).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum NodeError {
    /// This node is not the leader; ask `leader` (forwarding does this).
    #[error("not the leader (leader: {})", leader.map(|id| id.to_string()).unwrap_or_else(|| "unknown".into()))]
    NotLeader {
        /// The leader this node knows, if any.
        leader: Option<NodeId>,
    },
    /// No leader or quorum could be reached before the deadline.
    #[error("cluster unavailable: no leader or quorum within the timeout")]
    Unavailable,
    /// The entry proposed was replaced by another leader's entry: it was
    /// never committed. Retrying is safe (client sessions dedup).
    #[error("leadership changed before the command committed; retry")]
    Superseded,
    /// The state machine could not answer this request (a query it refused
    /// or failed to run, a backup it could not serialise). Only this request
    /// failed: the node goes on applying and serving. A failure that stops
    /// the node is [`NodeError::Stopped`] with [`Fatal::StateMachine`].
    #[error("state machine failure: {0}")]
    StateMachine(StateMachineError),
    /// The node stopped for good on a fatal error (its log or its state
    /// machine failed, or a worker thread panicked); it answers nothing
    /// more. Every request waiting when it failed, and every request made
    /// after, gets this. Not retryable here; another node may serve.
    #[error("the node stopped: {0}")]
    Stopped(Fatal),
    /// The request was refused by Raft for a reason given in the text
    /// (membership or transfer rules).
    #[error("refused: {0}")]
    Refused(String),
    /// The node named is not a member of the cluster.
    #[error("{0} is not a member of the cluster")]
    NotMember(NodeId),
    /// The node is shutting down (asked to, not because of a failure).
    #[error("node is shutting down")]
    ShuttingDown,
    /// The node already has as many proposals and reads in progress as it
    /// accepts ([`NodeOptions::max_pending_requests`](super::NodeOptions));
    /// nothing was done. Retry later, or on another node.
    #[error("the node is busy: too many requests in progress; retry later")]
    Busy,
    /// The node cannot write its log (the disk is full or refuses writes)
    /// and refuses new writes until it can; reads are still served. It
    /// carries on by itself once space is back.
    #[error("the node cannot write to its disk, writes are refused: {0}")]
    DiskFull(String),
}

impl NodeError {
    /// Whether trying again (soon, maybe elsewhere) can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            NodeError::NotLeader { .. } | NodeError::Unavailable | NodeError::Superseded
        )
    }
}

/// Why a node stopped for good. The driver ends with it (it is what the
/// join handle of [`Node::start`](super::Node::start) returns), and
/// requests get it inside [`NodeError::Stopped`].
///
/// A fatal error is never retried by the node: its durable state or its
/// state machine is in doubt, so going on could acknowledge what is not
/// durable or serve a state that diverged. The operator restarts the node,
/// which recovers from its log. A full disk is not fatal (see
/// [`NodeError::DiskFull`]).
///
/// The errors are carried as text plus what was being done, not as the
/// source error values: a [`StorageError`](crate::storage::StorageError)
/// holds an `io::Error` and a state machine's error is its own type, and
/// neither can cross the wire, which `NodeError` must.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Fatal {
    /// The durable log failed for good: the log writer rejected a batch or
    /// stopped. What it had accepted before is durable; nothing that
    /// depended on the failed batch was sent or acknowledged.
    #[error("storage failure: {operation} failed: {message}")]
    Storage {
        /// What the driver asked of the log.
        operation: LogOperation,
        /// The storage error, as text.
        message: String,
    },
    /// The state machine failed while applying committed entries or
    /// installing a snapshot: it may hold neither the old state nor the
    /// new one, so nothing more is applied to it or read from it.
    #[error("state machine failure: {0}")]
    StateMachine(StateMachineError),
    /// A worker of the node panicked (a bug, in the runtime or in the
    /// state machine); the panic was caught at the worker's boundary so
    /// the node stops instead of running on without it.
    #[error("the {worker} panicked: {message}")]
    Panicked {
        /// Which worker.
        worker: Worker,
        /// The panic's message, when it had one.
        message: String,
    },
}

/// What the driver asked of the durable log when it failed
/// ([`Fatal::Storage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogOperation {
    /// Handing a batch to the log writer thread (which had stopped).
    Submit,
    /// Making a submitted batch durable.
    Write,
}

impl std::fmt::Display for LogOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogOperation::Submit => "handing a batch to the log writer",
            LogOperation::Write => "log write",
        })
    }
}

/// A worker of the node whose panic stops it ([`Fatal::Panicked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Worker {
    /// The driver task, which owns the Raft core.
    Driver,
    /// The apply thread, which owns the state machine.
    Apply,
}

impl std::fmt::Display for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Worker::Driver => "driver task",
            Worker::Apply => "apply thread",
        })
    }
}

/// The state machine returned an error: what the runtime asked of it, and
/// the error's text. Fatal when applying or restoring ([`Fatal::StateMachine`]),
/// not when querying or backing up ([`NodeError::StateMachine`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{operation} failed: {message}")]
pub struct StateMachineError {
    /// What the state machine was asked to do.
    pub operation: StateMachineOperation,
    /// The state machine's error, as text.
    pub message: String,
}

impl StateMachineError {
    /// `error` from the state machine while doing `operation`.
    pub fn new(operation: StateMachineOperation, error: impl std::fmt::Display) -> Self {
        StateMachineError {
            operation,
            message: error.to_string(),
        }
    }
}

/// What the runtime asked of the state machine ([`StateMachineError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateMachineOperation {
    /// Applying committed entries (fatal).
    Apply,
    /// Replacing the state with the snapshot at `index` received from the
    /// leader (fatal).
    Restore {
        /// The snapshot's last index.
        index: LogIndex,
    },
    /// Answering a query (this request only).
    Query,
    /// Pinning or serialising the state for a backup (this request only).
    Backup,
}

impl std::fmt::Display for StateMachineOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateMachineOperation::Apply => f.write_str("applying committed entries"),
            StateMachineOperation::Restore { index } => {
                write!(f, "restoring the snapshot at index {index}")
            }
            StateMachineOperation::Query => f.write_str("a query"),
            StateMachineOperation::Backup => f.write_str("a backup snapshot"),
        }
    }
}

/// The fatal error a node stopped on, once it has: shared by the driver,
/// the apply worker and every [`Node`](super::Node) handle, so that a
/// request that finds the driver or the worker gone can say why
/// ([`NodeError::Stopped`]) rather than [`NodeError::ShuttingDown`]. The
/// first error recorded wins: it is the cause, what follows is fallout.
#[derive(Clone, Default)]
pub(crate) struct FatalCell(Arc<OnceLock<Fatal>>);

impl FatalCell {
    /// Records `fatal` unless an error was recorded before; returns the one
    /// in force.
    pub(crate) fn record(&self, fatal: Fatal) -> Fatal {
        self.0.get_or_init(|| fatal).clone()
    }

    /// The error the node stopped on, if it has.
    pub(crate) fn get(&self) -> Option<&Fatal> {
        self.0.get()
    }

    /// What a request gets when the driver or the worker is gone:
    /// [`NodeError::Stopped`] after a failure, else
    /// [`NodeError::ShuttingDown`].
    pub(crate) fn gone(&self) -> NodeError {
        match self.get() {
            Some(fatal) => NodeError::Stopped(fatal.clone()),
            None => NodeError::ShuttingDown,
        }
    }
}

/// The text of a caught panic's payload (what `panic!` was given).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".into()
    }
}
