//! What a leader knows about each follower's log, and how fast it may send
//! (etcd's `tracker.Progress`).
//!
//! - `Probe`: the match point is unknown; one AppendEntries at a time, then
//!   wait for its answer (or the next heartbeat answer).
//! - `Replicate`: the follower is in sync; entries are pipelined, at most
//!   `max_inflight_appends` messages unanswered.
//! - `Snapshot`: the follower needs entries the leader compacted away; the
//!   snapshot is streamed chunk by chunk, up to
//!   `max_inflight_snapshot_chunks` in flight (`snapshot_send.rs`).

use super::message::ConflictHint;
use super::snapshot_send::SnapshotStream;
use super::types::{Incarnation, LogIndex};
use std::collections::VecDeque;

/// How the leader currently replicates to one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicationState {
    /// Finding the match point, one message at a time.
    Probe,
    /// Streaming entries, pipelined.
    Replicate,
    /// Streaming the snapshot ending at `snapshot_index`; the follower has
    /// acknowledged `offset` bytes.
    Snapshot {
        /// The snapshot being sent.
        snapshot_index: LogIndex,
        /// Bytes acknowledged so far.
        offset: u64,
    },
}

/// The leader's view of one follower.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    pub(crate) match_index: LogIndex,
    pub(crate) next_index: LogIndex,
    pub(crate) state: ReplicationState,
    /// In Probe: a probe is unanswered, so do not send another.
    pub(crate) probe_sent: bool,
    /// In Replicate: the last index of each unanswered AppendEntries.
    pub(crate) inflight: VecDeque<LogIndex>,
    /// Heard from since the last CheckQuorum round (starts true: a new
    /// follower gets one round of grace before CheckQuorum counts it out).
    pub(crate) recent_active: bool,
    /// Heard from since the last CheckQuorum round, without the grace.
    heard_this_round: bool,
    /// Heard from in the current or the last CheckQuorum round: what
    /// `member list` reports as reachable.
    pub(crate) reachable: bool,
    /// The highest ReadIndex round this follower confirmed.
    pub(crate) read_round: u64,
    /// The incarnation of the answer that last advanced `match_index`: the
    /// life of the node that holds the entries through it. Promoting a
    /// learner records this one, so a late answer from a former life of a
    /// reused id (which can only match entries before its removal, below
    /// the commit index a promotion needs) is never the one promoted.
    pub(crate) incarnation: Incarnation,
    /// In Snapshot: what was sent beyond the acknowledged offset.
    pub(crate) snapshot_stream: SnapshotStream,
}

impl Progress {
    pub(crate) fn new(next_index: LogIndex) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: ReplicationState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            recent_active: true,
            heard_this_round: false,
            reachable: false,
            read_round: 0,
            incarnation: 0,
            snapshot_stream: SnapshotStream::default(),
        }
    }

    /// Records an answer from the follower (any kind).
    pub(crate) fn heard_from(&mut self) {
        self.recent_active = true;
        self.heard_this_round = true;
        self.reachable = true;
    }

    /// Starts a new CheckQuorum round: returns whether the follower was
    /// active in the one that ends.
    pub(crate) fn end_check_round(&mut self) -> bool {
        let active = self.recent_active;
        self.reachable = self.heard_this_round;
        self.heard_this_round = false;
        self.recent_active = false;
        active
    }

    /// Whether the leader must wait before sending more entries.
    pub(crate) fn is_paused(&self, max_inflight: usize) -> bool {
        match self.state {
            ReplicationState::Probe => self.probe_sent,
            ReplicationState::Replicate => self.inflight.len() >= max_inflight,
            ReplicationState::Snapshot { .. } => true,
        }
    }

    pub(crate) fn become_probe(&mut self) {
        self.state = ReplicationState::Probe;
        self.probe_sent = false;
        self.inflight.clear();
        self.next_index = self.next_index.max(self.match_index + 1);
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.probe_sent = false;
        self.inflight.clear();
        self.next_index = self.match_index + 1;
    }

    /// Records that an AppendEntries ending at `last` was sent.
    pub(crate) fn sent(&mut self, last: LogIndex) {
        match self.state {
            ReplicationState::Replicate => {
                if last >= self.next_index {
                    self.next_index = last + 1;
                    self.inflight.push_back(last);
                }
            }
            ReplicationState::Probe => self.probe_sent = true,
            ReplicationState::Snapshot { .. } => {}
        }
    }

    /// The follower (in `incarnation`) matches through `index`; returns
    /// whether this is news.
    pub(crate) fn update_match(&mut self, index: LogIndex, incarnation: Incarnation) -> bool {
        let news = index > self.match_index;
        if news {
            self.match_index = index;
            self.incarnation = incarnation;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index + 1);
        while self.inflight.front().is_some_and(|&last| last <= index) {
            self.inflight.pop_front();
        }
        news
    }

    /// A rejection of the AppendEntries with `rejected_prev_index`: moves
    /// `next_index` back using the hint (`leader_last_of_term` is the
    /// leader's last index of the hinted term, if it has that term). Returns
    /// false for a stale rejection, which changes nothing.
    pub(crate) fn back_off(
        &mut self,
        rejected_prev_index: LogIndex,
        hint: ConflictHint,
        leader_last_of_term: Option<LogIndex>,
    ) -> bool {
        if matches!(self.state, ReplicationState::Snapshot { .. }) {
            // It answers an AppendEntries sent before the snapshot started
            // (late answers to probes queued while the follower was down
            // can come by the hundred): the snapshot brings the follower
            // past it. Going back to Probe would restart the snapshot once
            // per rejection.
            return false;
        }
        if hint.conflict_term.is_none()
            && hint.first_index <= self.match_index
            && rejected_prev_index >= self.match_index
        {
            // The follower's log ends before what it acknowledged: it lost
            // its disk (outside Raft's model, but it must not wedge
            // replication). Start again from where its log ends; a lower
            // match index only delays commits, never makes one unsafe.
            self.match_index = hint.first_index.saturating_sub(1);
            self.next_index = hint.first_index.max(1);
            self.become_probe();
            return true;
        }
        if rejected_prev_index < self.match_index {
            return false;
        }
        if self.state == ReplicationState::Probe
            && rejected_prev_index.checked_add(1) != Some(self.next_index)
        {
            return false;
        }
        let target = match (hint.conflict_term, leader_last_of_term) {
            (Some(_), Some(last_of_term)) => last_of_term.saturating_add(1),
            _ => hint.first_index,
        };
        // Must move strictly back from the rejected point, never below the
        // match point.
        let next_index = target.min(rejected_prev_index).max(self.match_index + 1);
        let moved = next_index != self.next_index || self.state != ReplicationState::Probe;
        self.next_index = next_index;
        self.become_probe();
        // A follower refusing what it acknowledged cannot happen in Raft;
        // if it does (a planted bug, a broken disk), retry at heartbeat pace
        // instead of ping-ponging the same AppendEntries forever.
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference: Raft dissertation §5.3 (fast backtracking by term).
    #[test]
    fn back_off_jumps_over_a_whole_conflicting_term() {
        let mut progress = Progress::new(11);
        let hint = ConflictHint {
            conflict_term: Some(3),
            first_index: 5,
        };
        assert!(progress.back_off(10, hint, None));
        assert_eq!(progress.next_index, 5);
        let hint = ConflictHint {
            conflict_term: Some(2),
            first_index: 2,
        };
        assert!(progress.back_off(4, hint, Some(3)));
        assert_eq!(progress.next_index, 4);
    }

    #[test]
    fn stale_rejections_change_nothing() {
        let mut progress = Progress::new(11);
        progress.update_match(6, 0);
        progress.become_replicate();
        let hint = ConflictHint {
            conflict_term: None,
            first_index: 3,
        };
        assert!(!progress.back_off(5, hint, None));
        assert_eq!(progress.next_index, 7);
    }

    #[test]
    fn pipelining_stops_at_the_inflight_bound() {
        let mut progress = Progress::new(1);
        progress.become_replicate();
        progress.sent(3);
        progress.sent(5);
        assert!(progress.is_paused(2));
        progress.update_match(3, 0);
        assert!(!progress.is_paused(2));
        assert_eq!(progress.next_index, 6);
    }
}
