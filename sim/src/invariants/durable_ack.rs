//! Nothing is acknowledged to a client before it is durable on a majority:
//! an entry is committed once a majority has it on stable storage, and only
//! committed commands may be answered.
//! Reference: Raft paper §5.3 (commitment), §5.4.2, §8 (client interaction).
//!
//! The acknowledged entry must be on the simulated disks (the state a crash
//! keeps) of a majority of one of the voter sets that may have committed it.

use super::{ClusterView, Invariant};

/// Stateless: looks only at the acknowledgements of the step.
pub(crate) struct DurableAck;

impl Invariant for DurableAck {
    fn name(&self) -> &'static str {
        "durable before acknowledged"
    }

    fn section(&self) -> &'static str {
        "§5.3, §8"
    }

    fn check(&mut self, view: &ClusterView<'_>) -> Result<(), String> {
        for ack in &view.events.acknowledged {
            let durable_on = |voters: &std::collections::BTreeSet<_>| {
                let holders: std::collections::BTreeSet<_> = view
                    .disks
                    .iter()
                    .filter(|(id, disk)| voters.contains(id) && disk.holds(ack.index, ack.chain))
                    .map(|(id, _)| *id)
                    .collect();
                holders.len() * 2 > voters.len()
            };
            if !ack.voter_sets.iter().any(durable_on) {
                return Err(format!(
                    "{} acknowledged the command at index {} while it was durable \
                     on no majority of {:?}",
                    ack.node, ack.index, ack.voter_sets
                ));
            }
        }
        Ok(())
    }
}
