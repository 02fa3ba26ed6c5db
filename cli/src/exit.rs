//! Exit codes of SPEC §8 and the one-sentence error the user sees.

use std::fmt;

/// Exit code for a usage error (as clap's own).
pub const USAGE: i32 = 2;

/// Exit code for "the 2PC transaction aborted".
pub const ABORTED: i32 = 5;

/// An error that carries its exit code; any other error exits with 1.
#[derive(Debug)]
pub struct Failure {
    /// The process exit code.
    pub code: i32,
    /// One clear sentence for stderr.
    pub message: String,
    /// The command already printed its `--json` document (e.g. the report
    /// of an aborted delete), so no error document follows it: `--json`
    /// prints exactly one document.
    pub json_printed: bool,
}

impl Failure {
    /// A failure exiting with `code`.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            json_printed: false,
        }
    }

    /// A failure whose `--json` document the command has already printed.
    pub fn after_json(code: i32, message: impl Into<String>) -> Self {
        Failure {
            json_printed: true,
            ..Failure::new(code, message)
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
    first_failure(error).map_or(1, |failure| failure.code)
}

/// Whether the command already printed its `--json` document before
/// failing (then the error goes to stderr only).
pub fn json_printed(error: &anyhow::Error) -> bool {
    first_failure(error).is_some_and(|failure| failure.json_printed)
}

fn first_failure(error: &anyhow::Error) -> Option<&Failure> {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Failure>())
}
