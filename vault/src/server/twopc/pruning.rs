//! The leader's side of pruning two-phase-commit state: it measures how far
//! every member's log reaches and, a period later, proposes a prune of the
//! decisions below that mark. The rule, and why it is safe, is in
//! `vault/src/store/pruning.rs`; applying the entry happens in the
//! replicated state machine, the same on every replica.

use super::{wall_clock_ms, TwoPc};
use crate::protocol::prune_command;
use consensus::node::{MemberStatus, NodeStatus};
use std::sync::Arc;
use std::time::Duration;

/// The shortest pruning period. The rule assumes that no decision entry is
/// proposed again a period after the first one reached every member: a
/// node retries a proposal for its request timeout (5 s), so the period
/// must be longer. The 2PC simulation finds a transaction decided twice
/// when re-proposals outlast the period.
const LEAST_PERIOD: Duration = Duration::from_secs(30);

impl TwoPc {
    /// Every pruning period (twice the decision timeout, at least
    /// [`LEAST_PERIOD`]), on the leader:
    /// proposes a prune through the mark measured one period before, if a
    /// decision is recorded at or below it, and measures the next mark.
    /// Runs until the task is aborted.
    pub(crate) async fn pruning_loop(self: Arc<Self>) {
        let period = (self.options.decision_timeout * 2).max(LEAST_PERIOD);
        let mut measured = None;
        loop {
            tokio::time::sleep(period).await;
            measured = self.prune_once(measured).await;
        }
    }

    /// One pruning turn; returns the mark for the next one.
    async fn prune_once(&self, measured: Option<u64>) -> Option<u64> {
        let status = self.node.status();
        if !self.node.is_leader() {
            return None;
        }
        if let Some(through) = measured {
            let oldest = self.with_store(|store| store.oldest_decision()).await;
            match oldest {
                Ok(Some(oldest)) if oldest <= through => self.propose_prune(through).await,
                Ok(_) => {}
                Err(error) => tracing::warn!("2PC pruning cannot read the decisions: {error}"),
            }
        }
        every_member_holds(&status)
    }

    async fn propose_prune(&self, through: u64) {
        let me = self.node.id();
        match self
            .node
            .propose(prune_command(through, wall_clock_ms()))
            .await
        {
            Ok(_) => tracing::info!(
                "Node {me} (leader) pruned 2PC decisions recorded through index {through}"
            ),
            Err(error) => tracing::info!("Node {me}: 2PC pruning through {through}: {error}"),
        }
    }
}

/// The highest log index that every member of the configuration in force
/// (voters and learners) holds in its log and that is committed, as this
/// leader sees it; `None` when some member's progress is unknown.
/// Committed entries are never overwritten, so the mark stays true after a
/// change of leader.
pub(super) fn every_member_holds(status: &NodeStatus) -> Option<u64> {
    let lowest = status
        .members
        .iter()
        .map(|member: &MemberStatus| member.match_index)
        .try_fold(u64::MAX, |lowest, matched| matched.map(|m| lowest.min(m)))?;
    if status.members.is_empty() {
        return None;
    }
    Some(lowest.min(status.commit_index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus::raft::NodeId;

    fn member(id: u64, match_index: Option<u64>) -> MemberStatus {
        MemberStatus {
            id: NodeId(id),
            match_index,
            ..MemberStatus::default()
        }
    }

    #[test]
    fn the_mark_is_the_lowest_member_and_never_past_the_commit() {
        let mut status = NodeStatus {
            commit_index: 40,
            members: vec![
                member(1, Some(50)),
                member(2, Some(30)),
                member(3, Some(45)),
            ],
            ..NodeStatus::default()
        };
        assert_eq!(every_member_holds(&status), Some(30));
        status.members[1].match_index = Some(60);
        assert_eq!(every_member_holds(&status), Some(40));
        // A learner whose progress the leader does not know holds it back.
        status.members.push(member(4, None));
        assert_eq!(every_member_holds(&status), None);
        status.members.clear();
        assert_eq!(every_member_holds(&status), None);
    }
}
