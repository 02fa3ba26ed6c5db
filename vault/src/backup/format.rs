//! The backup file format, version 1. All integers little endian.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "VLTBACK\0"
//!      8     2  format version (1)
//!     10     2  flags (0; a reader refuses others)
//!     12     8  log index the state is as of
//!     20     8  term of the entry at that index
//!     28     8  number of secrets in the state
//!     36     8  state length N
//!     44     N  state: the vault state machine's snapshot (ciphertext only)
//!   44+N    32  SHA-256 of every byte before it
//! ```
//!
//! The header says how long the file must be, so a short read and trailing
//! bytes are told apart from damage; the digest covers header and state,
//! so any flipped bit is caught; and the state is then checked by the
//! state machine's own decoder (its marker, CRC-32C and body, and that it
//! was taken at the header's index), and its secrets are counted against
//! the header's. Only then is a backup handed out.

use crate::store::{summarize_snapshot, SnapshotError};
use std::fmt;

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"VLTBACK\0";
/// The format version this build writes and reads.
pub const VERSION: u16 = 1;
/// Bytes before the state.
pub const HEADER_LEN: usize = 44;
/// Bytes of the SHA-256 at the end.
pub const DIGEST_LEN: usize = 32;

/// A decoded, verified backup.
#[derive(Clone, PartialEq, Eq)]
pub struct Backup {
    /// The committed log index the state is as of.
    pub index: u64,
    /// The term of the entry at `index`.
    pub term: u64,
    /// How many secrets the state holds.
    pub secrets: u64,
    /// The vault state machine's snapshot bytes.
    pub state: Vec<u8>,
}

impl fmt::Debug for Backup {
    /// Never shows the state: it is the vault's (encrypted) content.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backup")
            .field("index", &self.index)
            .field("term", &self.term)
            .field("secrets", &self.secrets)
            .field("state_len", &self.state.len())
            .finish()
    }
}

impl Backup {
    /// Wraps a state machine snapshot taken at `index` (term `term`),
    /// checking it and counting its secrets first, so that a backup that
    /// could not be restored is never written.
    pub fn from_state(index: u64, term: u64, state: Vec<u8>) -> Result<Backup, BackupError> {
        let summary = summarize_snapshot(&state, index).map_err(BackupError::BadState)?;
        Ok(Backup {
            index,
            term,
            secrets: summary.secrets,
            state,
        })
    }

    /// The size of this backup's file, in bytes.
    pub fn file_len(&self) -> u64 {
        (HEADER_LEN + self.state.len() + DIGEST_LEN) as u64
    }
}

/// Why bytes are not a usable backup. Each message is one sentence.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The file does not start with the backup marker.
    #[error("not a vault backup file (bad magic)")]
    NotABackup,
    /// A format version this build does not know.
    #[error("backup format version {0} is not supported (this build reads version 1)")]
    UnsupportedVersion(u16),
    /// Flags this build does not know.
    #[error("the backup header has unknown flags {0:#06x}")]
    UnknownFlags(u16),
    /// The file is shorter than its header says: cut short in copying or
    /// writing.
    #[error("the backup is truncated: it holds {found} bytes but must hold {expected}")]
    Truncated {
        /// What the header announces (or the header's own length).
        expected: u64,
        /// What the file holds.
        found: u64,
    },
    /// Bytes follow the end the header announces.
    #[error("the backup has {} trailing bytes after its end", found - expected)]
    TrailingBytes {
        /// What the header announces.
        expected: u64,
        /// What the file holds.
        found: u64,
    },
    /// The SHA-256 does not match: the file was damaged.
    #[error("the backup is corrupt: its SHA-256 checksum does not match")]
    Checksum,
    /// The checksum matched but the state inside is not a valid vault
    /// snapshot at the header's index.
    #[error("the backup's state is not a valid vault snapshot: {0}")]
    BadState(#[source] SnapshotError),
    /// The header's secret count disagrees with the state.
    #[error("the backup header counts {header} secrets but its state holds {state}")]
    SecretCount {
        /// The header's count.
        header: u64,
        /// The state's count.
        state: u64,
    },
    /// The file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("cannot read", ...).
        action: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// The file's bytes for `backup`.
pub fn encode(backup: &Backup) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(backup.file_len() as usize);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes());
    for field in [
        backup.index,
        backup.term,
        backup.secrets,
        backup.state.len() as u64,
    ] {
        bytes.extend_from_slice(&field.to_le_bytes());
    }
    bytes.extend_from_slice(&backup.state);
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    bytes.extend_from_slice(digest.as_ref());
    bytes
}

/// Reads the little-endian u64 at `offset` of the header (in bounds: the
/// caller checked the header is complete).
fn field(bytes: &[u8], offset: usize) -> u64 {
    let mut value = [0u8; 8];
    value.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(value)
}

/// Verifies `bytes` completely and decodes the backup. Refuses, in this
/// order: a wrong marker, a header cut short, an unknown version or flags,
/// a file shorter or longer than its header says, a checksum mismatch, a
/// state the state machine would not restore, a wrong secret count.
pub fn decode(bytes: &[u8]) -> Result<Backup, BackupError> {
    let found = bytes.len() as u64;
    let marker = &bytes[..bytes.len().min(MAGIC.len())];
    if marker != &MAGIC[..marker.len()] {
        return Err(BackupError::NotABackup);
    }
    if bytes.len() < HEADER_LEN {
        return Err(BackupError::Truncated {
            expected: (HEADER_LEN + DIGEST_LEN) as u64,
            found,
        });
    }
    let mut version = [0u8; 2];
    version.copy_from_slice(&bytes[8..10]);
    let version = u16::from_le_bytes(version);
    if version != VERSION {
        return Err(BackupError::UnsupportedVersion(version));
    }
    let mut flags = [0u8; 2];
    flags.copy_from_slice(&bytes[10..12]);
    let flags = u16::from_le_bytes(flags);
    if flags != 0 {
        return Err(BackupError::UnknownFlags(flags));
    }
    let (index, term, secrets, state_len) = (
        field(bytes, 12),
        field(bytes, 20),
        field(bytes, 28),
        field(bytes, 36),
    );
    // A damaged length may be huge: saturate rather than overflow, and the
    // file is then simply too short.
    let expected = state_len.saturating_add((HEADER_LEN + DIGEST_LEN) as u64);
    if found < expected {
        return Err(BackupError::Truncated { expected, found });
    }
    if found > expected {
        return Err(BackupError::TrailingBytes { expected, found });
    }
    // `expected == found` fits in usize from here on.
    let state_end = HEADER_LEN + state_len as usize;
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes[..state_end]);
    if digest.as_ref() != &bytes[state_end..] {
        return Err(BackupError::Checksum);
    }
    let state = bytes[HEADER_LEN..state_end].to_vec();
    let backup = Backup::from_state(index, term, state)?;
    if backup.secrets != secrets {
        return Err(BackupError::SecretCount {
            header: secrets,
            state: backup.secrets,
        });
    }
    Ok(backup)
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
