//! Snapshot files: written whole and atomically, verified whole when read.
//!
//! Layout: `MAGIC`, `meta_len: u32 LE`, `data_len: u64 LE`, `crc: u32 LE`,
//! then the postcard-encoded [`SnapshotMeta`] and the data. The CRC32C covers
//! both lengths, the meta and the data. Files are named
//! `snapshot-<index>-<term>.snap` (zero-padded) so the newest sorts last.

use super::segment::sync_dir;
use super::{Snapshot, StorageError};
use crate::raft::types::{LogIndex, SnapshotMeta};
use crate::state_machine::{SnapshotJob, SnapshotSink};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
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

/// Runs a state machine's snapshot `job` at `index` into a staged file in
/// `dir` and maps it: the snapshot's bytes, never held in memory. Returns
/// them and the file's path.
///
/// The staged file (`snapshot-<index>-staged.snap.tmp`, owner-only) holds
/// the state machine's bytes alone and is not synced: the store writes the
/// snapshot file proper from the mapping and syncs that, and the caller
/// removes the staged file once it has (an existing mapping outlives the
/// name). A crash leaves it behind as a temporary file, which opening the
/// store removes. A failed job or write removes it at once.
pub(crate) fn stage<E: std::fmt::Display>(
    dir: &Path,
    index: LogIndex,
    job: SnapshotJob<E>,
) -> Result<(bytes::Bytes, PathBuf), String> {
    let path = dir.join(format!("{PREFIX}{index:020}-staged{TEMP_SUFFIX}"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(super::segment::FILE_MODE)
        .open(&path)
        .map_err(|error| format!("creating {}: {error}", path.display()))?;
    let staged = (|| {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, &file);
        let mut sink = SnapshotSink::new(&mut out);
        job(&mut sink).map_err(|error| error.to_string())?;
        let written = sink
            .finish()
            .map_err(|error| format!("writing {}: {error}", path.display()))?;
        drop(out);
        if written == 0 {
            // An empty file cannot be mapped; an empty snapshot needs none.
            return Ok(bytes::Bytes::new());
        }
        // SAFETY: the file is complete and nothing writes to it again (this
        // thread made it under a name of its own and only removes it), so
        // the mapped bytes cannot change under the `Bytes` that shares them.
        let mapping = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|error| format!("mapping {}: {error}", path.display()))?;
        Ok(bytes::Bytes::from_owner(mapping))
    })();
    match staged {
        Ok(data) => Ok((data, path)),
        Err(error) => {
            let _ = std::fs::remove_file(&path);
            Err(error)
        }
    }
}

/// Reads and verifies the snapshot at `path` (at open: the file may be
/// damaged). The checksum is computed through a small buffer, so the
/// verification costs no memory; the snapshot's bytes are then the file's,
/// mapped read-only (see [`map`]).
pub(crate) fn read(path: &Path) -> Result<Snapshot, StorageError> {
    let mut file = open(path)?;
    let header = header(path, &mut file)?;
    let mut crc = crc32c::crc32c(&header.lengths);
    let mut buffer = vec![0u8; 1 << 20];
    let reading = |error| StorageError::io(format!("reading {}", path.display()), error);
    loop {
        let read = file.read(&mut buffer).map_err(reading)?;
        if read == 0 {
            break;
        }
        crc = crc32c::crc32c_append(crc, &buffer[..read]);
    }
    if crc != header.crc {
        return Err(corrupt(path, "checksum mismatch"));
    }
    mapped(path, &file, &header)
}

/// The snapshot at `path`, which this store wrote or verified at open,
/// without reading it again: its bytes are the file's, mapped read-only.
///
/// The mapping is why a node does not hold its snapshot in memory: the
/// pages are the kernel's page cache, read in when a chunk is sent to a
/// follower and dropped by the kernel when memory is short, and a later
/// snapshot's taking does not copy this one. Snapshot files are written
/// once under a temporary name and never modified after the rename (a
/// newer snapshot is a new file; the old one is removed, which leaves an
/// existing mapping valid), which is what makes a mapping safe to share.
pub(crate) fn map(path: &Path) -> Result<Snapshot, StorageError> {
    let mut file = open(path)?;
    let header = header(path, &mut file)?;
    mapped(path, &file, &header)
}

/// The fixed header and the metadata after it, checked against the file's
/// real size.
struct Header {
    /// The two length fields, which the checksum covers first.
    lengths: [u8; 12],
    crc: u32,
    meta: SnapshotMeta,
    /// Where the data starts in the file.
    data_start: usize,
}

fn open(path: &Path) -> Result<File, StorageError> {
    File::open(path).map_err(|error| StorageError::io(format!("opening {}", path.display()), error))
}

fn corrupt(path: &Path, reason: &str) -> StorageError {
    StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason: format!("snapshot {reason}"),
    }
}

/// Reads the header and the metadata; leaves `file` positioned after the
/// lengths, so that what follows is exactly what the checksum covers after
/// them (the metadata and the data).
fn header(path: &Path, file: &mut File) -> Result<Header, StorageError> {
    let reading = |error| StorageError::io(format!("reading {}", path.display()), error);
    let size = file.metadata().map_err(reading)?.len();
    let mut fixed = [0u8; HEADER];
    if size < HEADER as u64 {
        return Err(corrupt(path, "header is missing or wrong"));
    }
    file.read_exact(&mut fixed).map_err(reading)?;
    if &fixed[..MAGIC.len()] != MAGIC {
        return Err(corrupt(path, "header is missing or wrong"));
    }
    let field = |range: std::ops::Range<usize>| {
        let mut array = [0u8; 8];
        array[..range.len()].copy_from_slice(&fixed[range]);
        u64::from_le_bytes(array)
    };
    let meta_len = field(8..12);
    let data_len = field(12..20);
    let expected_len = (HEADER as u64)
        .checked_add(meta_len)
        .and_then(|len| len.checked_add(data_len));
    if expected_len != Some(size) {
        return Err(corrupt(path, "length does not match its header"));
    }
    // The meta length was checked against the real file size just above,
    // so it is in range and the file holds that many bytes.
    let mut meta = vec![0u8; meta_len as usize];
    file.read_exact(&mut meta).map_err(reading)?;
    let decoded: SnapshotMeta =
        postcard::from_bytes(&meta).map_err(|_| corrupt(path, "metadata is undecodable"))?;
    let mut lengths = [0u8; 12];
    lengths.copy_from_slice(&fixed[8..20]);
    let crc = u32::from_le_bytes(fixed[20..24].try_into().expect("four bytes"));
    // Rewind to just after the lengths: the checksum covers the metadata
    // again, read by the caller with the data.
    file.seek(SeekFrom::Start(HEADER as u64)).map_err(reading)?;
    Ok(Header {
        lengths,
        crc,
        meta: decoded,
        data_start: HEADER + meta.len(),
    })
}

fn mapped(path: &Path, file: &File, header: &Header) -> Result<Snapshot, StorageError> {
    // SAFETY: the file is never written again after its rename into place
    // (see `map`); nothing in this process or another writes to it, so the
    // mapped bytes cannot change under the `Bytes` that shares them.
    let mapping = unsafe { memmap2::Mmap::map(file) }
        .map_err(|error| StorageError::io(format!("mapping {}", path.display()), error))?;
    Ok(Snapshot {
        meta: header.meta.clone(),
        data: bytes::Bytes::from_owner(mapping).slice(header.data_start..),
    })
}
