//! The one error type a client can receive from a node, and its exit code.

use serde::{Deserialize, Serialize};

/// Why a vault request did not succeed, as sent from a node to a client.
///
/// Each variant maps to one exit code of SPEC §8 ([`VaultError::exit_code`]).
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

impl VaultError {
    /// The process exit code of SPEC §8 that `vault-cli` uses for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            VaultError::NotFound(_) => 3,
            VaultError::AlreadyExists(_) | VaultError::Conflict(_) => 4,
            VaultError::Aborted(_) => 5,
            VaultError::Unavailable(_) => 6,
            VaultError::PermissionDenied(_) => 7,
            VaultError::Invalid(_) | VaultError::Internal(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_spec() {
        let cases = [
            (VaultError::NotFound(String::new()), 3),
            (VaultError::AlreadyExists(String::new()), 4),
            (VaultError::Conflict(String::new()), 4),
            (VaultError::Aborted(String::new()), 5),
            (VaultError::Unavailable(String::new()), 6),
            (VaultError::PermissionDenied(String::new()), 7),
            (VaultError::Invalid(String::new()), 1),
            (VaultError::Internal(String::new()), 1),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error:?}");
        }
    }
}
