//! A node's commit index never decreases (within one incarnation: after a
//! restart it starts again from what was persisted).
//! Reference: Raft paper §5.3 and Figure 2 ("commitIndex ... increases
//! monotonically").

use super::{ClusterView, Invariant};
use consensus::raft::{LogIndex, NodeId};
use std::collections::BTreeMap;

/// The last commit index seen per node and incarnation.
#[derive(Default)]
pub(crate) struct CommitMonotonic {
    last: BTreeMap<NodeId, (u64, LogIndex)>,
}

impl Invariant for CommitMonotonic {
    fn name(&self) -> &'static str {
        "commit index monotonic"
    }

    fn section(&self) -> &'static str {
        "§5.3, Figure 2"
    }

    fn check(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
        for node in &view.nodes {
            let seen = self.last.insert(node.id, (node.incarnation, node.commit));
            if let Some((incarnation, commit)) = seen {
                if incarnation == node.incarnation && commit > node.commit {
                    return Err(format!(
                        "{}'s commit index went back from {commit} to {}",
                        node.id, node.commit
                    ));
                }
            }
        }
        Ok(())
    }
}
