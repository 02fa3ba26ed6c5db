//! Election Safety: at most one leader can be elected in a given term.
//! Reference: Raft paper §5.2 (and Figure 3).

use super::{ClusterView, Invariant};
use consensus::raft::{NodeId, Term};
use std::collections::BTreeMap;

/// Remembers the leader of every term ever seen, across the whole run.
#[derive(Default)]
pub(crate) struct ElectionSafety {
    leaders: BTreeMap<Term, NodeId>,
}

impl Invariant for ElectionSafety {
    fn name(&self) -> &'static str {
        "election safety"
    }

    fn section(&self) -> &'static str {
        "§5.2"
    }

    fn check(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
        for node in view.nodes.iter().filter(|node| node.is_leader) {
            let leader = *self.leaders.entry(node.term).or_insert(node.id);
            if leader != node.id {
                return Err(format!(
                    "both {leader} and {} were leaders of term {}",
                    node.id, node.term
                ));
            }
        }
        Ok(())
    }
}
