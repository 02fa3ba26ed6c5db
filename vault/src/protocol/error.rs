//! The one error type a client can receive from a node.

use serde::{Deserialize, Serialize};

/// Why a vault request did not succeed, as sent from a node to a client.
///
/// Each variant is one exit code of SPEC §8 at the CLI (`vault-cli`'s `exit.rs`).
/// Every message is one sentence meant for a person; it may name a secret
/// (names are not secret, they are stored in plain text) but never contains
/// ciphertext, key material, a passphrase or a field value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum VaultError {
    /// The secret (or key, or transaction) does not exist for this caller.
    /// Exit code 3.
    #[error("{0}")]
    NotFound(String),
    /// Adding a secret that already exists without `--update`. Exit code 4.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request conflicts with the current state (a stale retry, a secret
    /// locked by a delete in progress, a version that moved). Exit code 4.
    #[error("{0}")]
    Conflict(String),
    /// The two-phase commit transaction aborted. Exit code 5.
    #[error("{0}")]
    Aborted(String),
    /// No leader or no quorum within the timeout. Exit code 6.
    #[error("{0}")]
    Unavailable(String),
    /// The caller's identity may not do this. Exit code 7.
    #[error("{0}")]
    PermissionDenied(String),
    /// The request itself is malformed: a bad name, an oversized ciphertext, a
    /// bytes that do not decode. Exit code 1: exit code 2 is kept for command
    /// lines that do not parse (clap's own usage errors), and a request can be
    /// refused here without any command line being involved.
    #[error("{0}")]
    Invalid(String),
    /// Anything else went wrong on the node. Exit code 1.
    #[error("{0}")]
    Internal(String),
}
