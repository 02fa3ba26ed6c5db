//! Leader Completeness: if a log entry is committed in a given term, that
//! entry will be present in the logs of the leaders for all higher terms.
//! Reference: Raft paper §5.4 (§5.4.1 election restriction, §5.4.3 proof).
//!
//! A commit is attributed to the term of the first node seen committing it
//! (a leader, since followers learn commits from leaders); for every leader
//! the checker asks whether its log holds, with the same prefix, the highest
//! entry committed in each lower term.

use super::{ClusterView, Invariant};
use crate::abstract_log::Digest;
use consensus::raft::{LogIndex, Term};
use std::collections::BTreeMap;

/// Per commit term, the highest index committed in it and its chain hash.
#[derive(Default)]
pub(crate) struct LeaderCompleteness {
    committed: BTreeMap<Term, (LogIndex, Digest)>,
    highest: LogIndex,
}

impl LeaderCompleteness {
    fn record_commits(&mut self, view: &ClusterView<'_>) {
        for node in &view.nodes {
            if node.commit <= self.highest {
                continue;
            }
            let Some(slot) = node.log.slot(node.commit) else {
                continue;
            };
            self.highest = node.commit;
            let best = self.committed.entry(node.term).or_insert((0, 0));
            if node.commit > best.0 {
                *best = (node.commit, slot.chain);
            }
        }
    }
}

impl Invariant for LeaderCompleteness {
    fn name(&self) -> &'static str {
        "leader completeness"
    }

    fn section(&self) -> &'static str {
        "§5.4"
    }

    fn check(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
        self.record_commits(view);
        for leader in view.nodes.iter().filter(|node| node.is_leader) {
            for (term, (index, chain)) in self.committed.range(..leader.term) {
                if !leader.log.holds(*index, *chain) {
                    return Err(format!(
                        "{}, leader of term {}, lacks the entry at index {index} \
                         committed in term {term}",
                        leader.id, leader.term
                    ));
                }
            }
        }
        Ok(())
    }
}
