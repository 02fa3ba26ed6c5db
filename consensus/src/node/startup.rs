//! How a node starts: from the Raft state in its directory, as a fresh
//! joiner, or not at all (SPEC §13).
//!
//! | `raft_dir` holds            | `join = false`              | `join = true`                     |
//! |-----------------------------|-----------------------------|-----------------------------------|
//! | Raft state                  | [`RaftCore::new`] (restart) | [`RaftCore::new`] (restart)       |
//! | nothing (missing or empty)  | refused: [`StartError::NoState`] | [`RaftCore::join`], fresh incarnation |
//!
//! A runtime never bootstraps a cluster: a node whose data was lost would
//! otherwise come back as a voter that forgot what it voted and
//! acknowledged, and could help elect a leader lacking committed entries.
//! The founding state of each node is written once, by
//! [`initialize`](super::initialize) (`cluster init`).

use super::NodeOptions;
use crate::raft::{self, Incarnation, NodeId, RaftCore};
use crate::storage::{FileStore, RestoredState};
use std::path::PathBuf;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The Raft directory holds no state and the node is not a joiner: it
    /// lost its data or was never initialised. Nothing was written.
    #[error(
        "{} holds no Raft state: node {id} lost its data or was never initialised; \
         remove it from the cluster and add it back as a new member",
        raft_dir.display()
    )]
    NoState {
        /// The node.
        id: NodeId,
        /// Its Raft directory ([`NodeOptions::raft_dir`]).
        raft_dir: PathBuf,
    },
    /// A joiner's Raft directory is empty but its state machine has already
    /// applied entries (a data directory only partly wiped): its state would
    /// not match the log it is about to receive.
    #[error(
        "node {id} joins with an empty Raft log, but its state machine has applied \
         entries through index {applied}; a joining node needs an empty data directory"
    )]
    StaleStateMachine {
        /// The node.
        id: NodeId,
        /// The state machine's applied index.
        applied: raft::LogIndex,
    },
    /// The operating system gave no randomness for a joiner's incarnation.
    #[error("cannot draw a fresh incarnation from the operating system: {0}")]
    Randomness(String),
    /// The Raft log could not be opened or recovered.
    #[error("cannot open the Raft log: {0}")]
    Storage(#[from] crate::storage::StorageError),
    /// The stored Raft state is inconsistent or the configuration invalid.
    #[error("cannot start Raft: {0}")]
    Raft(#[from] raft::RestoreError),
    /// The state machine could not be brought up to the stored snapshot.
    /// Its own error is the [`source`](std::error::Error::source), so an
    /// error chain (the CLI's) prints the cause after this sentence.
    #[error("cannot restore the state machine from the stored snapshot at index {index}")]
    StateMachine {
        /// The stored snapshot's last index.
        index: raft::LogIndex,
        /// The state machine's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A thread could not be started.
    #[error("cannot start the apply thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Checks, without writing anything, that a node with `options` may start:
/// its Raft directory holds state, or it is a joiner (`options.join`).
/// [`Node::start`](super::Node::start) checks this first; an application
/// calls it before it creates files of its own in the data directory, so a
/// refused node leaves that directory exactly as it found it.
pub fn preflight(options: &NodeOptions) -> Result<(), StartError> {
    if options.join || FileStore::is_present(&options.raft_dir)? {
        return Ok(());
    }
    Err(no_state(options))
}

/// The core for what the store recovered, following the table of the
/// module documentation. `applied` is the state machine's applied index.
pub(crate) fn build_core(
    options: &NodeOptions,
    recovered: RestoredState,
    applied: raft::LogIndex,
) -> Result<RaftCore, StartError> {
    let config = options.raft_config();
    if !holds_state(&recovered) {
        if !options.join {
            return Err(no_state(options));
        }
        if applied > 0 {
            return Err(StartError::StaleStateMachine {
                id: options.id,
                applied,
            });
        }
        let incarnation = fresh_incarnation()?;
        tracing::info!(
            "Node {} starts as a new member (incarnation {incarnation:#018x}); it waits for a leader to send it the log",
            options.id
        );
        return Ok(RaftCore::join(config, incarnation)?);
    }
    Ok(RaftCore::new(config, recovered)?)
}

/// Whether the store recovered anything at all (what [`RaftCore::new`]
/// needs). A directory with files but no state (a first segment written
/// before anything else, then a crash) counts as empty.
fn holds_state(recovered: &RestoredState) -> bool {
    recovered.hard_state != raft::HardState::default()
        || !recovered.entries.is_empty()
        || recovered.snapshot.is_some()
}

fn no_state(options: &NodeOptions) -> StartError {
    StartError::NoState {
        id: options.id,
        raft_dir: options.raft_dir.clone(),
    }
}

/// A fresh, non-zero incarnation from the operating system's randomness:
/// 0 belongs to founding members, and 64 random bits make a repeat of an
/// earlier life of this id as unlikely as guessing a key.
fn fresh_incarnation() -> Result<Incarnation, StartError> {
    use rand::RngCore;
    nonzero(|| {
        let mut bytes = [0u8; 8];
        rand::rngs::OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|error| StartError::Randomness(error.to_string()))?;
        Ok(u64::from_le_bytes(bytes))
    })
}

/// The first non-zero value `draw` gives.
fn nonzero(
    mut draw: impl FnMut() -> Result<Incarnation, StartError>,
) -> Result<Incarnation, StartError> {
    loop {
        let value = draw()?;
        if value != 0 {
            return Ok(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incarnation_is_never_zero() {
        let mut script = vec![7, 0, 0].into_iter();
        let value = nonzero(|| Ok(script.next_back().unwrap_or(0))).expect("a value");
        assert_eq!(value, 7, "zeros are drawn again");
        let drawn: std::collections::BTreeSet<_> = (0..64)
            .map(|_| fresh_incarnation().expect("OS randomness"))
            .collect();
        assert!(!drawn.contains(&0));
        assert_eq!(drawn.len(), 64, "fresh incarnations repeat");
    }
}
