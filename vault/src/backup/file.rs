//! Backup files on disk: written atomically, read whole and verified.

use super::format::{decode, encode, Backup, BackupError};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io {
        action,
        path,
        source,
    }
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `backup` to `path` so that `path` holds either its old content
/// (or nothing) or the whole new backup, even across a crash or power
/// loss: the bytes go to a new temporary file in the same directory
/// (owner-only, mode 0600), which is fsynced, renamed over `path`, and the
/// directory is fsynced so the rename itself is durable. On failure the
/// temporary file is removed. Returns the number of bytes written.
pub fn write_atomically(path: &Path, backup: &Backup) -> Result<u64, BackupError> {
    let bytes = encode(backup);
    let directory = parent_of(path);
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .ok_or_else(|| BackupError::Io {
            action: "cannot write a backup to",
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
        })?;
    let temporary = directory.join(format!(
        ".{name}.tmp-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let written = write_new(&temporary, &bytes).and_then(|()| {
        std::fs::rename(&temporary, path).map_err(io_error("cannot rename the backup to", path))
    });
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }
    File::open(&directory)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error("cannot sync the directory", &directory))?;
    Ok(bytes.len() as u64)
}

/// Creates `path` (it must not exist), owner-only, and writes and fsyncs
/// `bytes`.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(io_error("cannot create", path))?;
    file.write_all(bytes)
        .map_err(io_error("cannot write", path))?;
    file.sync_all().map_err(io_error("cannot sync", path))
}

/// Reads the backup at `path` and verifies all of it ([`decode`]).
pub fn read_file(path: &Path) -> Result<Backup, BackupError> {
    let bytes = std::fs::read(path).map_err(io_error("cannot read", path))?;
    decode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::VaultStateMachine;
    use consensus::state_machine::StateMachine;

    fn empty_backup() -> Backup {
        let dir = tempfile::tempdir().unwrap();
        let mut machine = VaultStateMachine::open(&dir.path().join("vault.db")).unwrap();
        let state = machine.snapshot().unwrap();
        Backup::from_state(0, 0, state).unwrap()
    }

    #[test]
    fn a_backup_is_written_whole_owner_only_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.snap");
        std::fs::write(&path, b"an older file").unwrap();
        let backup = empty_backup();
        let written = write_atomically(&path, &backup).unwrap();
        assert_eq!(written, backup.file_len());
        assert_eq!(read_file(&path).unwrap(), backup);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["backup.snap".to_string()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a directory: the rename fails after the temporary
        // file was written.
        let target = dir.path().join("taken");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"x").unwrap();
        let error = write_atomically(&target, &empty_backup()).unwrap_err();
        assert!(matches!(error, BackupError::Io { .. }), "{error}");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["taken".to_string()]);
    }
}
