//! Exit codes of SPEC §8 and the one-sentence error the user sees.

use std::fmt;

/// What went wrong, as far as the exit code is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Bad command-line usage (clap uses 2 itself).
    Usage,
    /// The secret (or node) does not exist.
    NotFound,
    /// Already exists, or conflicts with a concurrent change.
    Conflict,
    /// The two-phase commit aborted.
    Aborted,
    /// No leader or quorum within the timeout.
    Unavailable,
    /// The identity may not do this.
    PermissionDenied,
    /// Anything else.
    Other,
}

impl ExitKind {
    /// The process exit code for this kind.
    pub fn code(self) -> i32 {
        match self {
            ExitKind::Usage => 2,
            ExitKind::NotFound => 3,
            ExitKind::Conflict => 4,
            ExitKind::Aborted => 5,
            ExitKind::Unavailable => 6,
            ExitKind::PermissionDenied => 7,
            ExitKind::Other => 1,
        }
    }
}

/// An error that carries its exit code; anything else exits with 1.
#[derive(Debug)]
pub struct Failure {
    /// Which exit code.
    pub kind: ExitKind,
    /// One clear sentence for stderr.
    pub message: String,
}

impl Failure {
    /// A failure of `kind` with `message`.
    pub fn new(kind: ExitKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
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

/// The exit code for an error chain: the first [`Failure`] in it decides.
pub fn code_for(error: &anyhow::Error) -> i32 {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Failure>())
        .map_or(1, |failure| failure.kind.code())
}
