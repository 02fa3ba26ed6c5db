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
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// First bytes of every segment: identifies the file and its format version.
pub(crate) const MAGIC: &[u8; 8] = b"RAFTWAL1";

const SUFFIX: &str = ".wal";

/// Mode of every file the store creates: the log holds the vault's
/// (encrypted) content and its metadata, for the node's owner only.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Mode of the store's directory when the store creates it.
pub(crate) const DIR_MODE: u32 = 0o700;

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
        .mode(FILE_MODE)
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
    /// The offset of a well-formed record found after the damage, if any:
    /// then the damage is not a torn tail but lost acknowledged data.
    pub(crate) valid_after: Option<u64>,
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
            valid_after: next_valid_record(bytes, 0),
        });
    }
    let mut offset = MAGIC.len();
    loop {
        match record::decode(&bytes[offset..]) {
            Decoded::End => {
                return Ok(Scan {
                    valid_len: offset as u64,
                    damage: None,
                    valid_after: None,
                })
            }
            Decoded::Bad(reason) => {
                return Ok(Scan {
                    valid_len: offset as u64,
                    damage: Some((offset as u64, reason)),
                    valid_after: next_valid_record(bytes, offset),
                })
            }
            Decoded::Record { record, len } => {
                on_record(record).map_err(|reason| (offset as u64, reason))?;
                offset += len;
            }
        }
    }
}

/// The first offset after `damaged` where a whole, checksummed record starts.
///
/// A torn write leaves a partial record and nothing valid after it (the
/// writer appends in order and never acknowledged those bytes). A valid
/// record *after* the damage means bytes in the middle of the log changed
/// (bit rot, a stray write): cutting there would drop acknowledged records.
/// Every offset is tried because a damaged length hides where the next
/// record starts; a false match needs a 32-bit checksum and a decodable
/// payload to agree by chance.
fn next_valid_record(bytes: &[u8], damaged: usize) -> Option<u64> {
    (damaged + 1..bytes.len().saturating_sub(record::FRAME_HEADER))
        .find(|&offset| matches!(record::decode(&bytes[offset..]), Decoded::Record { .. }))
        .map(|offset| offset as u64)
}

/// Suffix of a segment being rewritten by a repair; a leftover of a crash.
pub(crate) const REWRITE_SUFFIX: &str = ".wal.tmp";

/// Cuts segment `path` back to `len` bytes and syncs it. Only for a file
/// whose syncs never failed: its page cache is then the truth.
pub(crate) fn truncate(path: &Path, len: u64) -> Result<(), StorageError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_len(len).and_then(|()| file.sync_all()))
        .map_err(|error| StorageError::io(format!("truncating {}", path.display()), error))
}

/// Replaces segment `sequence` with a new file holding only its first `len`
/// bytes: written, synced, renamed over the old one, directory synced. The
/// old file, whose sync failed, is never synced again. The bytes are read
/// from the old file: they are its durable prefix, which an earlier
/// successful sync wrote, so the page cache and the disk agree on them.
pub(crate) fn rewrite_prefix(dir: &Path, sequence: u64, len: u64) -> Result<(), StorageError> {
    let path = dir.join(file_name(sequence));
    let temporary = dir.join(format!("{sequence:020}{REWRITE_SUFFIX}"));
    let context = || format!("rewriting {} into {}", path.display(), temporary.display());
    let mut bytes = std::fs::read(&path).map_err(|error| StorageError::io(context(), error))?;
    bytes.truncate(usize::try_from(len).unwrap_or(usize::MAX));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&temporary)
        .map_err(|error| StorageError::io(context(), error))?;
    let written = file.write_all(&bytes).and_then(|()| file.sync_all());
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(StorageError::io(context(), error));
    }
    std::fs::rename(&temporary, &path).map_err(|error| StorageError::io(context(), error))?;
    sync_dir(dir)
}

/// Segment rewrites a crash interrupted (see [`rewrite_prefix`]): the
/// segment they were copied from is still in place, so they are removed.
pub(crate) fn rewrite_leftovers(dir: &Path) -> Result<Vec<PathBuf>, StorageError> {
    let mut leftovers = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|error| StorageError::io(format!("listing {}", dir.display()), error))?;
    for entry in entries {
        let entry =
            entry.map_err(|error| StorageError::io(format!("listing {}", dir.display()), error))?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.ends_with(REWRITE_SUFFIX))
        {
            leftovers.push(entry.path());
        }
    }
    Ok(leftovers)
}
