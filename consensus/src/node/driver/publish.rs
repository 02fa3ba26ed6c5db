//! What the driver tells others after each turn: the membership in force
//! (to the network) and the node's status (to its handles and metrics,
//! throttled to about once per tick).

use super::Driver;
use crate::node::status::NodeStatus;
use crate::node::PeerNetwork;

impl<N: PeerNetwork> Driver<N> {
    /// Tells the network about a new membership (peers to dial, nodes to
    /// trust) whenever the one in force changes, including the first.
    pub(super) fn announce_membership(&mut self) {
        // Checked after every turn, so without allocating: while a change
        // is pending the committed membership is the one before it and
        // cannot change (one change at a time) unless the latest does.
        let latest = self.core.membership();
        let settled = self.core.membership_index() <= self.core.commit_index();
        if self
            .announced
            .as_ref()
            .is_some_and(|(announced, was_settled)| announced == latest && *was_settled == settled)
        {
            return;
        }
        let committed = self.core.committed_membership();
        self.network.members_changed(latest, &committed);
        self.announced = Some((latest.clone(), settled));
    }

    /// When the throttled status is due to be published, if a change is
    /// waiting.
    pub(super) fn status_due(&self) -> Option<tokio::time::Instant> {
        self.status_published
            .filter(|_| self.status_stale)
            .map(|published| published + self.tick)
    }

    pub(super) fn publish_status(&mut self) {
        let now = tokio::time::Instant::now();
        if self
            .status_published
            .is_some_and(|published| now.duration_since(published) < self.tick)
        {
            // The driver wakes for it (`status_due`) if nothing else comes
            // and the change is more than a follower's answer.
            let mark = self.core.progress_mark();
            self.status_stale = self.status_mark != Some(mark);
            return;
        }
        self.status_published = Some(now);
        self.status_mark = Some(self.core.progress_mark());
        self.status_stale = false;
        let mut status = NodeStatus::from_core(&self.core.status());
        let health = self.writer.health();
        status.writes_refused = self.disk.refusal(&health);
        status.disk_failures = health.failures;
        self.metrics.record_status(&status);
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            if changed {
                *current = status;
            }
            changed
        });
    }
}
