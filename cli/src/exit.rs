//! Exit codes of SPEC §8 and the one-sentence error the user sees.

use std::fmt;

/// The process exit codes of SPEC §8. The vault library reports what went
/// wrong ([`VaultError`]); which number a shell sees is the CLI's business.
///
/// [`VaultError`]: vault::protocol::VaultError
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// 1: anything not covered below.
    Failure = 1,
    /// 2: a usage error (as clap's own).
    Usage = 2,
    /// 3: not found.
    NotFound = 3,
    /// 4: already exists, or a conflict.
    Conflict = 4,
    /// 5: the 2PC transaction aborted.
    Aborted = 5,
    /// 6: the cluster is unavailable (no leader or quorum, busy, disk full).
    Unavailable = 6,
    /// 7: permission denied.
    PermissionDenied = 7,
}

impl ExitCode {
    /// The number the process exits with.
    pub fn code(self) -> i32 {
        self as i32
    }
}

impl From<&vault::protocol::VaultError> for ExitCode {
    fn from(error: &vault::protocol::VaultError) -> Self {
        use vault::protocol::VaultError;
        match error {
            VaultError::NotFound(_) => ExitCode::NotFound,
            VaultError::AlreadyExists(_) | VaultError::Conflict(_) => ExitCode::Conflict,
            VaultError::Aborted(_) => ExitCode::Aborted,
            VaultError::Unavailable(_) => ExitCode::Unavailable,
            VaultError::PermissionDenied(_) => ExitCode::PermissionDenied,
            VaultError::Invalid(_) | VaultError::Internal(_) => ExitCode::Failure,
        }
    }
}

/// An error that carries its exit code; any other error exits with 1.
#[derive(Debug)]
pub struct Failure {
    /// The process exit code.
    pub code: ExitCode,
    /// One clear sentence for stderr.
    pub message: String,
    /// The command already printed its `--json` document (e.g. the report
    /// of an aborted delete), so no error document follows it: `--json`
    /// prints exactly one document.
    pub json_printed: bool,
}

impl Failure {
    /// A failure exiting with `code`.
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            json_printed: false,
        }
    }

    /// A failure whose `--json` document the command has already printed.
    pub fn after_json(code: ExitCode, message: impl Into<String>) -> Self {
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
        Failure::new(ExitCode::from(&error), error.to_string())
    }
}

/// The exit code for an error chain: the first [`Failure`] in it decides.
pub fn code_for(error: &anyhow::Error) -> i32 {
    first_failure(error).map_or(ExitCode::Failure.code(), |failure| failure.code.code())
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

#[cfg(test)]
mod tests {
    use super::*;
    use vault::protocol::VaultError;

    #[test]
    fn vault_errors_exit_with_the_codes_of_the_spec() {
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
            let failure = anyhow::Error::new(Failure::from(error));
            assert_eq!(code_for(&failure), code, "{failure}");
        }
        assert_eq!(code_for(&anyhow::anyhow!("plain")), 1);
    }
}
