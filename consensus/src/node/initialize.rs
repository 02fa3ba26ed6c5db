//! [`initialize`]: the founding Raft state of a node of a brand-new cluster,
//! written once before the node first runs (SPEC §13: `cluster init` writes
//! each node's initial state; `node run` never creates a cluster).
//! [`initialize_from_snapshot`]: the same for a cluster restored from a
//! backup (`snapshot restore`), whose nodes start from the backup's state.

use crate::raft::{
    self, HardState, LogIndex, Membership, NodeId, RaftCore, Snapshot, SnapshotMeta, Term,
};
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
    /// A seed snapshot at index 0 or term 0: no log entry has either.
    #[error("a seed snapshot needs a log index and term above 0 (got index {index}, term {term})")]
    EmptySeed {
        /// The index given.
        index: LogIndex,
        /// The term given.
        term: Term,
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
        staged_snapshot: None,
    };
    create_private_dir(raft_dir)?;
    let (mut store, _) = FileStore::open(raft_dir, FileStoreOptions::default())?;
    store.write(&[batch])?;
    Ok(())
}

/// The state a node of a restored cluster starts from: a state machine
/// snapshot (in the application's own format) taken at log index `index`,
/// whose entry had term `term`.
#[derive(Clone, PartialEq, Eq)]
pub struct SeedSnapshot {
    /// The log index the state is as of.
    pub index: LogIndex,
    /// The term of the entry at `index`.
    pub term: Term,
    /// The serialised state, handed to `StateMachine::restore` at start.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for SeedSnapshot {
    /// Never shows the data: it is the application's content.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedSnapshot")
            .field("index", &self.index)
            .field("term", &self.term)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// Writes into `raft_dir` the first state of node `id` of a new cluster
/// whose voters are `voters`, seeded with `seed` instead of an empty log:
/// a stored snapshot at `seed.index` (term `seed.term`) whose membership
/// is every one of `voters` as a founding member (incarnation 0), no log
/// entries after it, and the hard state (term `seed.term`, no vote, commit
/// `seed.index`), durably. [`Node::start`](super::Node::start) then hands
/// the snapshot to the state machine (whose applied index becomes
/// `seed.index`, as in the cluster the snapshot came from) and elections
/// start from term `seed.term`. Call it for every node with the same
/// `voters` and `seed`.
///
/// The state is checked with [`RaftCore::new`] before anything is
/// written. `raft_dir` is created with mode 0700; a directory that already
/// holds Raft state is refused and left untouched.
pub fn initialize_from_snapshot(
    raft_dir: &Path,
    id: NodeId,
    voters: BTreeSet<NodeId>,
    seed: SeedSnapshot,
) -> Result<(), InitializeError> {
    if FileStore::is_present(raft_dir)? {
        return Err(InitializeError::AlreadyInitialized {
            dir: raft_dir.to_path_buf(),
        });
    }
    if !voters.contains(&id) {
        return Err(InitializeError::NotAVoter { id });
    }
    if seed.index == 0 || seed.term == 0 {
        return Err(InitializeError::EmptySeed {
            index: seed.index,
            term: seed.term,
        });
    }
    let snapshot = Snapshot {
        meta: SnapshotMeta {
            last_index: seed.index,
            last_term: seed.term,
            membership: Membership::with_voters(voters),
        },
        data: seed.data.into(),
    };
    let hard_state = HardState {
        term: seed.term,
        vote: None,
        commit: seed.index,
        incarnation: 0,
    };
    // The same check a start makes, before anything is on disk. The seed
    // only drives election timeouts, which this core never reaches.
    RaftCore::new(
        raft::Config::new(id, 0),
        raft::RestoredState {
            hard_state,
            // A clone shares the bytes.
            snapshot: Some(snapshot.clone()),
            entries: Vec::new(),
        },
    )?;
    let batch = WriteBatch {
        hard_state: Some(hard_state),
        entries: Vec::new(),
        snapshot: Some(snapshot),
        staged_snapshot: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn voters() -> BTreeSet<NodeId> {
        (1..=3).map(NodeId).collect()
    }

    fn seed() -> SeedSnapshot {
        SeedSnapshot {
            index: 42,
            term: 7,
            data: b"the application's state".to_vec(),
        }
    }

    /// What a restored node opens is the seed: the snapshot at the
    /// backup's index and term with the new cluster's voters, no entries,
    /// and a core that starts from it.
    #[test]
    fn a_seeded_node_recovers_the_snapshot_with_the_new_membership() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("raft");
        initialize_from_snapshot(&dir, NodeId(2), voters(), seed()).unwrap();
        let (_store, recovered) = FileStore::open(&dir, FileStoreOptions::default()).unwrap();
        let snapshot = recovered.snapshot.clone().expect("a stored snapshot");
        assert_eq!(snapshot.meta.last_index, 42);
        assert_eq!(snapshot.meta.last_term, 7);
        assert_eq!(snapshot.meta.membership, Membership::with_voters(voters()));
        assert_eq!(snapshot.data, seed().data);
        assert!(recovered.entries.is_empty());
        assert_eq!(recovered.hard_state.term, 7);
        assert_eq!(recovered.hard_state.vote, None);
        assert_eq!(recovered.hard_state.incarnation, 0);
        let core = RaftCore::new(raft::Config::new(NodeId(2), 1), recovered).unwrap();
        assert_eq!(core.commit_index(), 42);
        assert_eq!(core.term(), 7);
    }

    #[test]
    fn a_seed_is_refused_where_state_exists_or_the_node_is_not_a_voter() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("raft");
        let outsider = initialize_from_snapshot(&dir, NodeId(4), voters(), seed()).unwrap_err();
        assert!(
            matches!(outsider, InitializeError::NotAVoter { .. }),
            "{outsider}"
        );
        assert!(!dir.exists(), "a refused seed wrote something");
        let empty = SeedSnapshot { index: 0, ..seed() };
        let refused = initialize_from_snapshot(&dir, NodeId(1), voters(), empty).unwrap_err();
        assert!(
            matches!(refused, InitializeError::EmptySeed { .. }),
            "{refused}"
        );
        initialize_from_snapshot(&dir, NodeId(1), voters(), seed()).unwrap();
        let again = initialize_from_snapshot(&dir, NodeId(1), voters(), seed()).unwrap_err();
        assert!(
            matches!(again, InitializeError::AlreadyInitialized { .. }),
            "{again}"
        );
    }
}
