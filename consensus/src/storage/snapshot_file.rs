//! Snapshot files: written whole and atomically, verified whole when read.
//!
//! Layout: `MAGIC`, `meta_len: u32 LE`, `data_len: u64 LE`, `crc: u32 LE`,
//! then the postcard-encoded [`SnapshotMeta`] and the data. The CRC32C covers
//! both lengths, the meta and the data. Files are named
//! `snapshot-<index>-<term>.snap` (zero-padded) so the newest sorts last.

use super::segment::sync_dir;
use super::{Snapshot, StorageError};
use crate::raft::types::{LogIndex, SnapshotMeta};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"RAFTSNP1";
const HEADER: usize = MAGIC.len() + 4 + 8 + 4;
const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".snap";
/// Suffix of a snapshot being written; such files are leftovers of a crash.
pub(crate) const TEMP_SUFFIX: &str = ".snap.tmp";

fn file_name(meta: &SnapshotMeta) -> String {
    format!(
        "{PREFIX}{:020}-{:020}{SUFFIX}",
        meta.last_index, meta.last_term
    )
}

fn parse_file_name(name: &str) -> Option<LogIndex> {
    let middle = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let (index, term) = middle.split_once('-')?;
    term.parse::<u64>().ok()?;
    index.parse().ok()
}

/// What a snapshot directory listing found.
pub(crate) struct Listing {
    /// Snapshot files by the index they cover, oldest first.
    pub(crate) snapshots: Vec<(LogIndex, PathBuf)>,
    /// Temporary files a crash left behind.
    pub(crate) leftovers: Vec<PathBuf>,
}

/// Lists the snapshot files in `dir`.
pub(crate) fn list(dir: &Path) -> Result<Listing, StorageError> {
    let context = || format!("listing {}", dir.display());
    let mut snapshots = Vec::new();
    let mut leftovers = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|error| StorageError::io(context(), error))? {
        let entry = entry.map_err(|error| StorageError::io(context(), error))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(index) = parse_file_name(name) {
            snapshots.push((index, entry.path()));
        } else if name.starts_with(PREFIX) && name.ends_with(TEMP_SUFFIX) {
            leftovers.push(entry.path());
        }
    }
    snapshots.sort();
    Ok(Listing {
        snapshots,
        leftovers,
    })
}

/// Writes `snapshot` into `dir` atomically: a temporary file is written and
/// synced, renamed into place, and the directory synced. Returns its path.
pub(crate) fn write(dir: &Path, snapshot: &Snapshot) -> Result<PathBuf, StorageError> {
    let meta = postcard::to_allocvec(&snapshot.meta)?;
    let meta_len =
        u32::try_from(meta.len()).map_err(|_| StorageError::RecordTooLarge(meta.len()))?;
    let lengths: Vec<u8> = meta_len
        .to_le_bytes()
        .into_iter()
        .chain((snapshot.data.len() as u64).to_le_bytes())
        .collect();
    let crc = [&lengths[..], &meta, &snapshot.data]
        .iter()
        .fold(0, |crc, part| crc32c::crc32c_append(crc, part));
    let path = dir.join(file_name(&snapshot.meta));
    let temp = path.with_extension(&TEMP_SUFFIX[1..]);
    let context = || format!("writing snapshot {}", temp.display());
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(super::segment::FILE_MODE)
        .open(&temp)
        .map_err(|error| StorageError::io(context(), error))?;
    let written = file
        .write_all(MAGIC)
        .and_then(|()| file.write_all(&lengths))
        .and_then(|()| file.write_all(&crc.to_le_bytes()))
        .and_then(|()| file.write_all(&meta))
        .and_then(|()| file.write_all(&snapshot.data))
        .and_then(|()| file.sync_all());
    if let Err(error) = written {
        // Best effort: do not leave a partial file eating the disk that is
        // probably full; the error is what matters.
        let _ = std::fs::remove_file(&temp);
        return Err(StorageError::io(context(), error));
    }
    std::fs::rename(&temp, &path).map_err(|error| {
        StorageError::io(format!("renaming snapshot to {}", path.display()), error)
    })?;
    sync_dir(dir)?;
    Ok(path)
}

/// Reads and verifies the snapshot at `path`.
pub(crate) fn read(path: &Path) -> Result<Snapshot, StorageError> {
    let bytes = std::fs::read(path)
        .map_err(|error| StorageError::io(format!("reading {}", path.display()), error))?;
    let corrupt = |reason: &str| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: format!("snapshot {reason}"),
    };
    if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt("header is missing or wrong"));
    }
    let field = |range: std::ops::Range<usize>| {
        let mut array = [0u8; 8];
        array[..range.len()].copy_from_slice(&bytes[range]);
        u64::from_le_bytes(array)
    };
    let meta_len = field(8..12);
    let data_len = field(12..20);
    let stored_crc = field(20..24);
    let expected_len = (HEADER as u64)
        .checked_add(meta_len)
        .and_then(|len| len.checked_add(data_len));
    if expected_len != Some(bytes.len() as u64) {
        return Err(corrupt("length does not match its header"));
    }
    // Both lengths were checked against the real file size just above, so
    // these conversions and slices are in range.
    let meta_end = HEADER + meta_len as usize;
    let crc = [&bytes[8..20], &bytes[HEADER..]]
        .iter()
        .fold(0, |crc, part| crc32c::crc32c_append(crc, part));
    if u64::from(crc) != stored_crc {
        return Err(corrupt("checksum mismatch"));
    }
    let meta: SnapshotMeta = postcard::from_bytes(&bytes[HEADER..meta_end])
        .map_err(|_| corrupt("metadata is undecodable"))?;
    Ok(Snapshot {
        meta,
        // The file's buffer becomes the snapshot's: no copy.
        data: bytes::Bytes::from(bytes).slice(meta_end..),
    })
}
