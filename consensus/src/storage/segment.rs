//! Segment files of the write-ahead log: naming, creation and scanning.
//!
//! A segment is `MAGIC` followed by framed records (see [`super::record`]).
//! Segments are named by a sequence number, `00000000000000000001.wal`, so a
//! directory listing sorted by name is the log's order.

use super::record::{self, Decoded, Record, RecordRef};
use super::StorageError;
use crate::raft::types::HardState;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// First bytes of every segment: identifies the file and its format version.
pub(crate) const MAGIC: &[u8; 8] = b"RAFTWAL1";

const SUFFIX: &str = ".wal";

/// The file name of segment `sequence`.
pub(crate) fn file_name(sequence: u64) -> String {
    format!("{sequence:020}{SUFFIX}")
}

/// The sequence number in a segment's file name, if it is one.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir`, in log order.
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut segments = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|error| StorageError::io(format!("listing {}", dir.display()), error))?;
    for entry in entries {
        let entry =
            entry.map_err(|error| StorageError::io(format!("listing {}", dir.display()), error))?;
        if let Some(sequence) = entry.file_name().to_str().and_then(parse_file_name) {
            segments.push((sequence, entry.path()));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Makes the directory's entries (created, renamed, removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|error| StorageError::io(format!("syncing directory {}", dir.display()), error))
}

/// Creates segment `sequence` in `dir`, starting with `hard_state` so that
/// older segments can be deleted without losing it, and makes it durable
/// (file and directory entry). Returns the open file and its length.
pub(crate) fn create(
    dir: &Path,
    sequence: u64,
    hard_state: &HardState,
) -> Result<(File, u64), StorageError> {
    let path = dir.join(file_name(sequence));
    let context = || format!("creating segment {}", path.display());
    let mut bytes = MAGIC.to_vec();
    record::encode(&RecordRef::HardState(hard_state), &mut bytes)?;
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|error| StorageError::io(context(), error))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|error| StorageError::io(context(), error))?;
    sync_dir(dir)?;
    Ok((file, bytes.len() as u64))
}

/// What scanning one segment's bytes found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Length of the valid prefix: magic plus whole, checksummed records.
    pub(crate) valid_len: u64,
    /// Where and why the valid prefix ends before the end of the file.
    pub(crate) damage: Option<(u64, &'static str)>,
}

/// Decodes every record of a segment's `bytes` in order, handing each to
/// `on_record`, and stops at the first invalid one. `on_record` may refuse a
/// record that is well formed but impossible (a hole in the log); that is
/// returned as the error.
pub(crate) fn scan(
    bytes: &[u8],
    mut on_record: impl FnMut(Record) -> Result<(), String>,
) -> Result<Scan, (u64, String)> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Ok(Scan {
            valid_len: 0,
            damage: (!bytes.is_empty()).then_some((0, "bad segment header")),
        });
    }
    let mut offset = MAGIC.len();
    loop {
        match record::decode(&bytes[offset..]) {
            Decoded::End => {
                return Ok(Scan {
                    valid_len: offset as u64,
                    damage: None,
                })
            }
            Decoded::Bad(reason) => {
                return Ok(Scan {
                    valid_len: offset as u64,
                    damage: Some((offset as u64, reason)),
                })
            }
            Decoded::Record { record, len } => {
                on_record(record).map_err(|reason| (offset as u64, reason))?;
                offset += len;
            }
        }
    }
}
