//! Log Matching: if two logs contain an entry with the same index and term,
//! the logs are identical in all entries up through that index.
//! Reference: Raft paper §5.3 (and Figure 3).
//!
//! Every slot carries a chain hash of its whole prefix, so the property is
//! "one (index, term) pair, one chain hash, ever": the checker records the
//! chain of every pair it has seen on any node and compares new writes with
//! it. It also checks that terms never decrease along a log.

use super::{ClusterView, Invariant};
use crate::abstract_log::Digest;
use consensus::raft::{LogIndex, Term};
use std::collections::BTreeMap;

/// The chain hash of every (index, term) written on any node in the run.
#[derive(Default)]
pub(crate) struct LogMatching {
    chains: BTreeMap<(LogIndex, Term), Digest>,
}

impl LogMatching {
    /// The chain hash recorded for (index, term), if any node held it.
    pub(crate) fn chain_of(&self, index: LogIndex, term: Term) -> Option<Digest> {
        self.chains.get(&(index, term)).copied()
    }
}

impl Invariant for LogMatching {
    fn name(&self) -> &'static str {
        "log matching"
    }

    fn section(&self) -> &'static str {
        "§5.3"
    }

    fn check(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
        for node in &view.nodes {
            let Some(from) = node.log_written_from else {
                continue;
            };
            let mut previous_term = node.log.slot(from.saturating_sub(1)).map(|slot| slot.term);
            for index in from..=node.log.last_index() {
                let Some(slot) = node.log.slot(index) else {
                    continue;
                };
                if previous_term.is_some_and(|term| term > slot.term) {
                    return Err(format!(
                        "{}'s log goes back in term at index {index}",
                        node.id
                    ));
                }
                previous_term = Some(slot.term);
                let recorded = *self.chains.entry((index, slot.term)).or_insert(slot.chain);
                if recorded != slot.chain {
                    return Err(format!(
                        "{} holds an entry at index {index} term {} whose prefix differs \
                         from another log's entry at the same index and term",
                        node.id, slot.term
                    ));
                }
            }
        }
        Ok(())
    }
}
