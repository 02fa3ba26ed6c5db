//! Exit codes of SPEC §8 and the one-sentence error the user sees.

use std::fmt;

/// Exit code for "the 2PC transaction aborted".
pub const ABORTED: i32 = 5;

/// An error that carries its exit code; any other error exits with 1.
#[derive(Debug)]
pub struct Failure {
    /// The process exit code.
    pub code: i32,
    /// One clear sentence for stderr.
    pub message: String,
}

impl Failure {
    /// A failure exiting with `code`.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<vault::protocol::VaultError> for Failure {
    fn from(error: vault::protocol::VaultError) -> Self {
        Failure::new(error.exit_code(), error.to_string())
    }
}

/// The exit code for an error chain: the first [`Failure`] in it decides.
pub fn code_for(error: &anyhow::Error) -> i32 {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Failure>())
        .map_or(1, |failure| failure.code)
}
