//! Whether this node may take new writes, as far as its disk goes.
//!
//! Two signals, either of which refuses new proposals with
//! [`NodeError::DiskFull`](super::NodeError::DiskFull):
//!
//! - **The free-space reserve.** Checked with `statvfs` on the Raft
//!   directory every tick. Below [`NodeOptions::min_free_bytes`](super::NodeOptions::min_free_bytes)
//!   the leader stops appending client writes, so the space left is kept
//!   for what must still be written: entries already proposed, entries from
//!   the leader when this node follows, votes, snapshots and SQLite.
//! - **The log writer is holding a failed write** ([`WriterHealth`]): the
//!   disk already refused; it is retried until it succeeds.
//! - **The state machine's disk is full** (SQLITE_FULL, reported by the
//!   apply worker, which retries the batch until it applies).
//!
//! Each change of state is logged once (not once per refused request), and
//! the reason is in the node's status.

use crate::storage::WriterHealth;
use std::path::PathBuf;

/// Tracks the free-space reserve and logs its changes.
pub(crate) struct DiskGuard {
    dir: PathBuf,
    min_free_bytes: u64,
    /// Set while free space is below the reserve: why writes are refused.
    low: Option<String>,
    /// Whether the last look at the writer saw it failing, so that the
    /// change is logged once.
    writer_failing: bool,
    /// Set while the state machine cannot write (SQLITE_FULL): why.
    state_machine: Option<String>,
    /// When the free space was last looked at.
    checked: Option<std::time::Instant>,
}

/// Under writes the free space is looked at this often at least, whatever
/// the tick (50 ms by default): a burst of writes must not eat a small
/// reserve between two looks.
const CHECK_UNDER_LOAD: std::time::Duration = std::time::Duration::from_millis(5);

impl DiskGuard {
    /// A guard of the file system holding `dir`; a reserve of 0 turns the
    /// free-space check off.
    pub(crate) fn new(dir: PathBuf, min_free_bytes: u64) -> Self {
        DiskGuard {
            dir,
            min_free_bytes,
            low: None,
            writer_failing: false,
            state_machine: None,
            checked: None,
        }
    }

    /// [`DiskGuard::check`] if the last look is older than
    /// `CHECK_UNDER_LOAD`: called before each batch of proposals.
    pub(crate) fn check_if_due(&mut self, node: crate::raft::NodeId, writer: &WriterHealth) {
        if self
            .checked
            .is_none_or(|checked| checked.elapsed() >= CHECK_UNDER_LOAD)
        {
            self.check(node, writer);
        }
    }

    /// Looks at the free space and the writer; logs what changed.
    pub(crate) fn check(&mut self, node: crate::raft::NodeId, writer: &WriterHealth) {
        self.checked = Some(std::time::Instant::now());
        if self.min_free_bytes > 0 {
            match free_bytes(&self.dir) {
                Ok(free) if free < self.min_free_bytes => {
                    if self.low.is_none() {
                        let reason = format!(
                            "only {} free on the file system of {} (the reserve is {}); \
                             free disk space, writes resume by themselves",
                            megabytes(free),
                            self.dir.display(),
                            megabytes(self.min_free_bytes)
                        );
                        tracing::error!("Node {node} refuses new writes: {reason}");
                        self.low = Some(reason);
                    }
                }
                Ok(free) => {
                    if self.low.take().is_some() {
                        tracing::info!(
                            "Node {node} accepts writes again: {} free on the file system of {}",
                            megabytes(free),
                            self.dir.display()
                        );
                    }
                }
                // Not knowing is not a reason to refuse: the writer still
                // catches a disk that really is full.
                Err(error) => tracing::debug!(
                    "cannot read the free space of {}: {error}",
                    self.dir.display()
                ),
            }
        }
        let failing = writer.failing.is_some();
        if failing != self.writer_failing {
            self.writer_failing = failing;
            if !failing && self.low.is_none() {
                tracing::info!("Node {node} accepts writes again: its log is written");
            }
        }
    }

    /// The apply worker reports that the state machine's disk is full
    /// (`Some`) or writes again (`None`); it logs both itself.
    pub(crate) fn state_machine_full(&mut self, reason: Option<String>) {
        self.state_machine = reason;
    }

    /// Why new writes are refused now, if they are.
    pub(crate) fn refusal(&self, writer: &WriterHealth) -> Option<String> {
        writer
            .failing
            .clone()
            .or_else(|| self.state_machine.clone())
            .or_else(|| self.low.clone())
    }
}

/// Bytes an unprivileged process may still write on the file system of
/// `dir`.
fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid C string and `stats` points to writable
    // memory of the right type, which statvfs fills in when it returns 0.
    let outcome = unsafe { libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) };
    if outcome != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `stats`.
    let stats = unsafe { stats.assume_init() };
    #[allow(clippy::useless_conversion)] // the field types differ between platforms
    Ok(u64::from(stats.f_bavail).saturating_mul(u64::from(stats.f_frsize)))
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_and_a_failing_writer_refuses() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let healthy = WriterHealth::default();
        let mut guard = DiskGuard::new(dir.path().to_path_buf(), u64::MAX);
        guard.check(crate::raft::NodeId(1), &healthy);
        let refusal = guard.refusal(&healthy).expect("below the reserve");
        assert!(refusal.contains("free disk space"), "{refusal}");

        let mut guard = DiskGuard::new(dir.path().to_path_buf(), 1);
        guard.check(crate::raft::NodeId(1), &healthy);
        assert_eq!(guard.refusal(&healthy), None);
        let failing = WriterHealth {
            failing: Some("the disk is full: ...".into()),
            failures: 1,
        };
        guard.check(crate::raft::NodeId(1), &failing);
        assert_eq!(guard.refusal(&failing), failing.failing);
    }
}
