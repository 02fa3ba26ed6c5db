//! The data directory of a node: owner-only modes and a lock held for the
//! node's life (SPEC §9 "Files").
//!
//! - Every file `vault-cli` creates is owner-only: [`restrict_new_files`]
//!   sets the process umask to `077` before anything is written, so WAL
//!   segments, snapshots, `vault.db` and the `-wal`/`-shm` files SQLite
//!   creates next to it, and the node directories of `cluster init` and
//!   `cluster add-node`, are 0600 (files) and 0700 (directories) whoever
//!   creates them.
//! - A data directory left with looser modes (made by hand, copied with
//!   `cp -r` under a lax umask) is tightened at start by [`tighten`], with
//!   one warning per path changed.
//! - [`DataDirLock`] takes an exclusive `flock` on `LOCK` in the directory:
//!   a second node on the same data directory would interleave two writers
//!   in one log and one SQLite file, so it is refused with one sentence.

use anyhow::{Context, Result};
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Mode of every directory under a data directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file under a data directory.
pub const FILE_MODE: u32 = 0o600;

/// Makes every file and directory this process creates from now on
/// owner-only (umask `077`). Called first thing by `main`.
pub fn restrict_new_files() {
    // SAFETY: umask only swaps the process's file-mode mask; it cannot fail
    // and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
}

/// An exclusive advisory lock on a data directory, released when dropped
/// (or when the process dies, however it dies).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Locks `dir` (which must exist) through `dir/LOCK`, or refuses with
    /// one sentence if another process holds it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock> {
        let path = dir.join("LOCK");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(FILE_MODE)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        // SAFETY: flock on a descriptor this function owns; no memory is
        // shared with the kernel.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                anyhow::bail!(crate::exit::Failure::new(
                    crate::exit::ExitCode::Failure,
                    format!(
                        "data directory {} is in use by another process (it holds {}); \
                         stop that node first, or give this one its own data directory",
                        dir.display(),
                        path.display()
                    ),
                ));
            }
            return Err(error).with_context(|| format!("cannot lock {}", path.display()));
        }
        Ok(DataDirLock { _file: file })
    }
}

/// Sets every directory under `dir` (itself included) to 0700 and every
/// file to 0600, warning once per path whose mode was looser. Symbolic
/// links are left alone (their mode means nothing; their targets may be
/// outside the data directory).
pub fn tighten(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let wanted = if metadata.is_dir() {
            DIR_MODE
        } else if metadata.is_file() {
            FILE_MODE
        } else {
            continue;
        };
        let mode = metadata.mode() & 0o7777;
        if mode & !wanted != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & wanted))
                .with_context(|| format!("cannot restrict the mode of {}", path.display()))?;
            tracing::warn!(
                "{} was mode {mode:04o}; restricted it to {:04o} (data directories are owner-only)",
                path.display(),
                mode & wanted
            );
            changed.push(path.clone());
        }
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path)
                .with_context(|| format!("cannot list {}", path.display()))?
            {
                pending.push(
                    entry
                        .with_context(|| format!("cannot list {}", path.display()))?
                        .path(),
                );
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let refused = DataDirLock::acquire(dir.path()).unwrap_err();
        assert!(
            format!("{refused:#}").contains("in use by another process"),
            "{refused:#}"
        );
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn loose_modes_are_tightened_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("raft");
        std::fs::create_dir(&sub).unwrap();
        let file = sub.join("vault.db");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let changed = tighten(dir.path()).unwrap();
        assert_eq!(changed.len(), 3, "{changed:?}");
        let mode = |path: &Path| std::fs::metadata(path).unwrap().mode() & 0o777;
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert!(
            tighten(dir.path()).unwrap().is_empty(),
            "nothing left to do"
        );
    }
}
