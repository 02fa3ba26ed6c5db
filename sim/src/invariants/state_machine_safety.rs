//! State Machine Safety: if a server has applied a log entry at a given
//! index to its state machine, no other server will ever apply a different
//! log entry for the same index.
//! Reference: Raft paper §5.4.3 (and Figure 3).

use super::{ClusterView, Invariant};
use crate::abstract_log::Digest;
use consensus::raft::{LogIndex, NodeId, Term};
use std::collections::BTreeMap;

/// The first entry applied at every index, by whom.
#[derive(Default)]
pub(crate) struct StateMachineSafety {
    applied: BTreeMap<LogIndex, (Term, Digest, NodeId)>,
}

impl Invariant for StateMachineSafety {
    fn name(&self) -> &'static str {
        "state machine safety"
    }

    fn section(&self) -> &'static str {
        "§5.4.3"
    }

    fn check(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
        for applied in &view.events.applied {
            let first = *self.applied.entry(applied.index).or_insert((
                applied.term,
                applied.digest,
                applied.node,
            ));
            if (first.0, first.1) != (applied.term, applied.digest) {
                return Err(format!(
                    "{} applied the entry of term {} at index {}, but {} applied \
                     a different entry (term {}) there",
                    applied.node, applied.term, applied.index, first.2, first.0
                ));
            }
        }
        Ok(())
    }
}
