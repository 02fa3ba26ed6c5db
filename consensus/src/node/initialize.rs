//! [`initialize`]: the founding Raft state of a node of a brand-new cluster,
//! written once before the node first runs (SPEC §13: `cluster init` writes
//! each node's initial state; `node run` never creates a cluster).

use crate::raft::{self, NodeId, RaftCore};
use crate::storage::{FileStore, FileStoreOptions, LogStore, StorageError, WriteBatch};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Why [`initialize`] wrote nothing, or failed while writing.
#[derive(Debug, thiserror::Error)]
pub enum InitializeError {
    /// The directory already holds Raft state; it is left untouched.
    #[error("{} already holds Raft state; refusing to initialise it again", dir.display())]
    AlreadyInitialized {
        /// The Raft directory.
        dir: PathBuf,
    },
    /// The node is not one of the founding voters it was given.
    #[error("node {id} is not one of the initial voters")]
    NotAVoter {
        /// The node.
        id: NodeId,
    },
    /// The directory could not be created.
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        /// The Raft directory.
        dir: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The core refused to bootstrap (no voters).
    #[error("cannot bootstrap Raft: {0}")]
    Raft(#[from] raft::RestoreError),
    /// The state could not be written durably; the directory may hold part
    /// of it and should be removed before trying again.
    #[error("cannot write the initial Raft state: {0}")]
    Storage(#[from] StorageError),
}

/// Writes into `raft_dir` the founding state of node `id` of a new cluster
/// whose voters are `voters`: log entry 1 (term 1, the membership of all
/// `voters`, every one a founding member of incarnation 0) and the hard
/// state (term 1), durably (`fdatasync`), through the same [`FileStore`]
/// and in the same form as [`Node::start`](super::Node::start) would have
/// persisted the first [`Ready`](raft::Ready) of [`RaftCore::bootstrap`].
/// Call it for every node with the same `voters`; `Node::start` then
/// restores it.
///
/// `raft_dir` (and missing parents) is created with mode 0700 on Unix. A
/// directory that already holds Raft state is refused and left untouched.
pub fn initialize(
    raft_dir: &Path,
    id: NodeId,
    voters: BTreeSet<NodeId>,
) -> Result<(), InitializeError> {
    if FileStore::is_present(raft_dir)? {
        return Err(InitializeError::AlreadyInitialized {
            dir: raft_dir.to_path_buf(),
        });
    }
    if !voters.contains(&id) {
        return Err(InitializeError::NotAVoter { id });
    }
    // The seed only drives election timeouts, which this core never reaches.
    let mut core = RaftCore::bootstrap(raft::Config::new(id, 0), voters)?;
    let ready = core.ready();
    let batch = WriteBatch {
        hard_state: ready.hard_state,
        entries: ready.entries,
        snapshot: None,
    };
    create_private_dir(raft_dir)?;
    let (mut store, _) = FileStore::open(raft_dir, FileStoreOptions::default())?;
    store.write(&[batch])?;
    Ok(())
}

/// Creates `dir` and its missing parents, readable by the owner only.
fn create_private_dir(dir: &Path) -> Result<(), InitializeError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|source| InitializeError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })
}
