//! Read-only views of the core's internals for tests (the whole-cluster
//! simulation in the `sim` crate checks log matching and leader
//! completeness with them). Compiled only in tests and with the `testing`
//! feature.

use super::core::RaftCore;
use super::types::{Entry, LogIndex, NodeId, Term};

impl RaftCore {
    /// The entries held in memory (after the snapshot base), in order.
    pub fn log_entries(&self) -> Vec<Entry> {
        self.log
            .slice(self.log.base_index() + 1, self.log.last_index())
    }

    /// The snapshot base: index and term of the last compacted entry.
    pub fn log_base(&self) -> (LogIndex, Term) {
        let base = self.log.base_index();
        (base, self.log.term_at(base).unwrap_or(0))
    }

    /// The term of the entry at `index`, if held.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.log.term_at(index)
    }

    /// Who this node voted for in its current term.
    pub fn voted_for(&self) -> Option<NodeId> {
        self.vote
    }

    /// The last index known durable.
    pub fn stable_index(&self) -> LogIndex {
        self.log.stable_index()
    }
}

#[cfg(test)]
mod tests {
    use crate::raft::tests::{config, fresh, leader};

    #[test]
    fn views_match_the_log() {
        let core = leader();
        let indices: Vec<u64> = core.log_entries().iter().map(|entry| entry.index).collect();
        assert_eq!(indices, vec![1, 2]);
        assert_eq!(core.log_base(), (0, 0));
        assert_eq!(core.term_at(2), Some(2));
        assert_eq!(core.voted_for(), Some(crate::raft::NodeId(1)));
        assert_eq!(core.stable_index(), 2);
        assert_eq!(fresh(config(3)).log_entries().len(), 1);
    }
}
