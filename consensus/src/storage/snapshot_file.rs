//! Snapshot files: written whole and atomically, verified whole when read.
//!
//! Layout: the state machine's data, the postcard-encoded [`SnapshotMeta`],
//! then a trailer: `meta_len: u32 LE`, `data_len: u64 LE`, `crc: u32 LE`,
//! `MAGIC`. The CRC32C covers the data, the meta and both lengths, in that
//! order. The data comes first so that a snapshot the state machine staged
//! in a file of its own becomes the snapshot file by appending the meta and
//! the trailer and renaming it: a node writes its state once per snapshot,
//! not twice ([`save`]). Files of the first layout (`MAGIC_V1`, the lengths
//! and the CRC, the meta, then the data) are still read. Files are named
//! `snapshot-<index>-<term>.snap` (zero-padded) so the newest sorts last.

use super::segment::sync_dir;
use super::{Snapshot, StagedSnapshot, StorageError};
use crate::raft::types::{LogIndex, SnapshotMeta};
use crate::state_machine::{SnapshotJob, SnapshotSink};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The last bytes of a snapshot file.
const MAGIC: &[u8; 8] = b"RAFTSNP2";
/// The first bytes of a snapshot file of the first layout.
const MAGIC_V1: &[u8; 8] = b"RAFTSNP1";
/// The two lengths and the CRC, which the trailer and the first layout's
/// header share.
const FIELDS: usize = 4 + 8 + 4;
const TRAILER: usize = FIELDS + MAGIC.len();
const HEADER_V1: usize = MAGIC_V1.len() + FIELDS;
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

/// Saves `snapshot` in `dir` atomically and returns its path: from the file
/// it was staged in if there is one (see [`adopt`]), otherwise by writing it
/// whole (see [`write`]).
pub(crate) fn save(
    dir: &Path,
    snapshot: &Snapshot,
    staged: Option<&StagedSnapshot>,
) -> Result<PathBuf, StorageError> {
    if let Some(staged) = staged {
        if let Some(path) = adopt(dir, snapshot, staged)? {
            return Ok(path);
        }
    }
    write(dir, snapshot)
}

/// The metadata and the trailer that follow `data_len` bytes of data whose
/// CRC32C is `data_crc`.
fn tail(meta: &SnapshotMeta, data_len: usize, data_crc: u32) -> Result<Vec<u8>, StorageError> {
    let mut tail = postcard::to_allocvec(meta)?;
    let meta_len =
        u32::try_from(tail.len()).map_err(|_| StorageError::RecordTooLarge(tail.len()))?;
    let mut fields = Vec::with_capacity(FIELDS);
    fields.extend_from_slice(&meta_len.to_le_bytes());
    fields.extend_from_slice(&(data_len as u64).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c_append(data_crc, &tail), &fields);
    fields.extend_from_slice(&crc.to_le_bytes());
    tail.extend_from_slice(&fields);
    tail.extend_from_slice(MAGIC);
    Ok(tail)
}

/// Writes `snapshot` into `dir` atomically: a temporary file is written and
/// synced, renamed into place, and the directory synced. Returns its path.
pub(crate) fn write(dir: &Path, snapshot: &Snapshot) -> Result<PathBuf, StorageError> {
    let tail = tail(
        &snapshot.meta,
        snapshot.data.len(),
        crc32c::crc32c(&snapshot.data),
    )?;
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
        .write_all(&snapshot.data)
        .and_then(|()| file.write_all(&tail))
        .and_then(|()| file.sync_all());
    if let Err(error) = written {
        // Best effort: do not leave a partial file eating the disk that is
        // probably full; the error is what matters.
        let _ = std::fs::remove_file(&temp);
        return Err(StorageError::io(context(), error));
    }
    rename_into_place(dir, &temp, &path)?;
    Ok(path)
}

/// Makes the staged file of `snapshot` its snapshot file: appends the meta
/// and the trailer, syncs, renames it into place and syncs the directory.
/// The data is not written again (the snapshot thread synced it already).
///
/// Returns `None`, having changed nothing, when the staged file is not
/// there any more (a store repair removes temporary files) or is shorter
/// than the snapshot's data: the caller then writes the snapshot whole
/// from its bytes, which a mapping keeps readable after the file's removal.
/// The file is cut back to the data's length before the append, so a retry
/// after a failed append does not append twice. Appending leaves the mapped
/// data as it is.
fn adopt(
    dir: &Path,
    snapshot: &Snapshot,
    staged: &StagedSnapshot,
) -> Result<Option<PathBuf>, StorageError> {
    let context = || format!("completing snapshot {}", staged.path.display());
    let mut file = match OpenOptions::new().write(true).open(&staged.path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StorageError::io(context(), error)),
    };
    let size = file
        .metadata()
        .map_err(|error| StorageError::io(context(), error))?
        .len();
    let data_len = snapshot.data.len() as u64;
    if size < data_len {
        return Ok(None);
    }
    let tail = tail(&snapshot.meta, snapshot.data.len(), staged.crc)?;
    file.set_len(data_len)
        .and_then(|()| file.seek(SeekFrom::Start(data_len)).map(drop))
        .and_then(|()| file.write_all(&tail))
        .and_then(|()| file.sync_all())
        .map_err(|error| StorageError::io(context(), error))?;
    let path = dir.join(file_name(&snapshot.meta));
    rename_into_place(dir, &staged.path, &path)?;
    Ok(Some(path))
}

fn rename_into_place(dir: &Path, from: &Path, to: &Path) -> Result<(), StorageError> {
    std::fs::rename(from, to).map_err(|error| {
        StorageError::io(format!("renaming snapshot to {}", to.display()), error)
    })?;
    sync_dir(dir)
}

/// Runs a state machine's snapshot `job` at `index` into a staged file in
/// `dir`, syncs and maps it: the snapshot's bytes, never held in memory.
/// Returns them and the staged file with their CRC32C.
///
/// The staged file (`snapshot-<index>-staged.snap.tmp`, owner-only)
/// holds the state machine's bytes alone; the store makes it the snapshot
/// file by appending to it ([`save`]). Syncing it here, on the snapshot
/// thread, keeps that long `fsync` off the log writer, which has only the
/// trailer left to sync. Whoever drops the snapshot removes the file (an
/// existing mapping outlives the name); a crash leaves it behind as a
/// temporary file, which opening the store removes. A failed job or write
/// removes it at once.
pub(crate) fn stage<E: std::fmt::Display>(
    dir: &Path,
    index: LogIndex,
    job: SnapshotJob<E>,
) -> Result<(bytes::Bytes, StagedSnapshot), String> {
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
        file.sync_data()
            .map_err(|error| format!("syncing {}: {error}", path.display()))?;
        if written == 0 {
            // An empty file cannot be mapped; an empty snapshot needs none.
            return Ok(bytes::Bytes::new());
        }
        // SAFETY: the file is complete and nothing changes these bytes
        // again: this thread made it under a name of its own, and the store
        // only appends after them (and renames the file), which leaves the
        // mapped range as it is.
        let mapping = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|error| format!("mapping {}: {error}", path.display()))?;
        Ok(bytes::Bytes::from_owner(mapping))
    })();
    match staged {
        Ok(data) => {
            // The checksum of the bytes as mapped, which are what a reader of
            // the file will see (read back from the page cache: ~40 ms for a
            // 350 MB snapshot, here rather than on the log writer).
            let crc = crc32c::crc32c(&data);
            Ok((data, StagedSnapshot { path, crc }))
        }
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
    let layout = layout(path, &mut file)?;
    let (covered, rest) = match layout.version {
        // data, meta, then the lengths.
        Version::Trailer => (0..layout.fields_at, vec![layout.lengths.as_slice()]),
        // the lengths, then meta and data.
        Version::Header => (HEADER_V1 as u64..layout.size, Vec::new()),
    };
    let mut crc = match layout.version {
        Version::Trailer => 0,
        Version::Header => crc32c::crc32c(&layout.lengths),
    };
    let reading = |error| StorageError::io(format!("reading {}", path.display()), error);
    file.seek(SeekFrom::Start(covered.start)).map_err(reading)?;
    let mut left = covered.end - covered.start;
    let mut buffer = vec![0u8; 1 << 20];
    while left > 0 {
        let want = buffer
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        file.read_exact(&mut buffer[..want]).map_err(reading)?;
        crc = crc32c::crc32c_append(crc, &buffer[..want]);
        left -= want as u64;
    }
    for part in rest {
        crc = crc32c::crc32c_append(crc, part);
    }
    if crc != layout.crc {
        return Err(corrupt(path, "checksum mismatch"));
    }
    mapped(path, &file, &layout)
}

/// The snapshot at `path`, which this store wrote or verified at open,
/// without reading it again: its bytes are the file's, mapped read-only.
///
/// The mapping is why a node does not hold its snapshot in memory: the
/// pages are the kernel's page cache, read in when a chunk is sent to a
/// follower and dropped by the kernel when memory is short, and a later
/// snapshot's taking does not copy this one. Snapshot files are never
/// modified once renamed into place (a newer snapshot is a new file; the
/// old one is removed, which leaves an existing mapping valid), and the
/// data of a staged file is not modified either (only appended to before
/// its rename), which is what makes a mapping safe to share.
pub(crate) fn map(path: &Path) -> Result<Snapshot, StorageError> {
    let mut file = open(path)?;
    let layout = layout(path, &mut file)?;
    mapped(path, &file, &layout)
}

/// Which of the two layouts a file has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    /// Data, meta, trailer (written now).
    Trailer,
    /// Header, meta, data (the first layout).
    Header,
}

/// Where a snapshot file's parts are, checked against its real size.
struct Layout {
    version: Version,
    size: u64,
    /// The two length fields, which the checksum covers.
    lengths: [u8; 12],
    crc: u32,
    meta: SnapshotMeta,
    /// The data's range in the file.
    data: std::ops::Range<usize>,
    /// Where the trailer's fields start (trailer layout only).
    fields_at: u64,
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

/// The two lengths and the CRC of `fields` (`meta_len u32`, `data_len u64`,
/// `crc u32`, little-endian).
fn fields(fields: &[u8; FIELDS]) -> (u64, u64, [u8; 12], u32) {
    let mut lengths = [0u8; 12];
    lengths.copy_from_slice(&fields[..12]);
    let meta_len = u64::from(u32::from_le_bytes(
        fields[..4].try_into().expect("four bytes"),
    ));
    let data_len = u64::from_le_bytes(fields[4..12].try_into().expect("eight bytes"));
    let crc = u32::from_le_bytes(fields[12..16].try_into().expect("four bytes"));
    (meta_len, data_len, lengths, crc)
}

/// Finds the layout of the file and reads its metadata. A file is of the
/// trailer layout if it ends with `MAGIC` and its lengths add up to its
/// size, else of the first layout if it starts with `MAGIC_V1` and its
/// lengths add up; anything else is corrupt.
fn layout(path: &Path, file: &mut File) -> Result<Layout, StorageError> {
    let reading = |error| StorageError::io(format!("reading {}", path.display()), error);
    let size = file.metadata().map_err(reading)?.len();
    let mut read_at = |offset: u64, buffer: &mut [u8]| {
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(buffer))
            .map_err(reading)
    };
    let mut found = None;
    if size >= TRAILER as u64 {
        let mut trailer = [0u8; TRAILER];
        read_at(size - TRAILER as u64, &mut trailer)?;
        let (meta_len, data_len, lengths, crc) =
            fields(trailer[..FIELDS].try_into().expect("the fields"));
        let adds_up = data_len
            .checked_add(meta_len)
            .and_then(|len| len.checked_add(TRAILER as u64))
            == Some(size);
        if &trailer[FIELDS..] == MAGIC && adds_up {
            found = Some((Version::Trailer, meta_len, data_len, lengths, crc, data_len));
        }
    }
    if found.is_none() && size >= HEADER_V1 as u64 {
        let mut header = [0u8; HEADER_V1];
        read_at(0, &mut header)?;
        let (meta_len, data_len, lengths, crc) =
            fields(header[MAGIC_V1.len()..].try_into().expect("the fields"));
        let adds_up = (HEADER_V1 as u64)
            .checked_add(meta_len)
            .and_then(|len| len.checked_add(data_len))
            == Some(size);
        if &header[..MAGIC_V1.len()] == MAGIC_V1 && adds_up {
            found = Some((
                Version::Header,
                meta_len,
                data_len,
                lengths,
                crc,
                HEADER_V1 as u64,
            ));
        }
    }
    let Some((version, meta_len, data_len, lengths, crc, meta_at)) = found else {
        return Err(corrupt(path, "has no valid header or trailer"));
    };
    // Both lengths were checked against the real file size just above, so
    // they are in range and the file holds that many bytes.
    let mut meta = vec![0u8; meta_len as usize];
    read_at(meta_at, &mut meta)?;
    let decoded: SnapshotMeta =
        postcard::from_bytes(&meta).map_err(|_| corrupt(path, "metadata is undecodable"))?;
    let data_start = match version {
        Version::Trailer => 0,
        Version::Header => HEADER_V1 + meta.len(),
    };
    Ok(Layout {
        version,
        size,
        lengths,
        crc,
        meta: decoded,
        data: data_start..data_start + data_len as usize,
        fields_at: data_len + meta_len,
    })
}

fn mapped(path: &Path, file: &File, layout: &Layout) -> Result<Snapshot, StorageError> {
    if layout.data.is_empty() {
        // An empty range cannot be mapped (nor does it need to be).
        return Ok(Snapshot {
            meta: layout.meta.clone(),
            data: bytes::Bytes::new(),
        });
    }
    // SAFETY: the file is never written again after its rename into place
    // (see `map`); nothing in this process or another writes to it, so the
    // mapped bytes cannot change under the `Bytes` that shares them.
    let mapping = unsafe { memmap2::Mmap::map(file) }
        .map_err(|error| StorageError::io(format!("mapping {}", path.display()), error))?;
    Ok(Snapshot {
        meta: layout.meta.clone(),
        data: bytes::Bytes::from_owner(mapping).slice(layout.data.clone()),
    })
}
