//! Log replication (Raft §5.3): pipelined, batched AppendEntries with fast
//! backtracking, heartbeats, and the commit rule that counts replicas of
//! current-term entries only (§5.4.2).

use super::core::RaftCore;
use super::message::{
    AppendEntries, AppendEntriesResponse, Heartbeat, HeartbeatResponse, MessageBody,
};
use super::progress::ReplicationState;
use super::types::{Incarnation, LogIndex, NodeId};

impl RaftCore {
    /// Leader: dispatch of every message but vote requests.
    /// Leader: dispatch of responses. `incarnation` is the sender's, which
    /// the progress of a learner records (its promotion binds it).
    pub(crate) fn step_leader(
        &mut self,
        from: NodeId,
        incarnation: Incarnation,
        body: MessageBody,
    ) {
        match body {
            MessageBody::AppendEntriesResponse(response) => {
                self.handle_append_response(from, incarnation, response)
            }
            MessageBody::HeartbeatResponse(response) => {
                self.handle_heartbeat_response(from, response)
            }
            MessageBody::InstallSnapshotResponse(response) => {
                self.handle_snapshot_response(from, incarnation, response)
            }
            _ => {}
        }
    }

    /// Follower: dispatch of every message but vote requests.
    pub(crate) fn step_follower(&mut self, from: NodeId, body: MessageBody) {
        match body {
            MessageBody::AppendEntries(request) => {
                self.heard_from_leader(from);
                self.handle_append(from, request);
            }
            MessageBody::Heartbeat(heartbeat) => {
                self.heard_from_leader(from);
                self.handle_heartbeat(from, heartbeat);
            }
            MessageBody::InstallSnapshot(chunk) => {
                self.heard_from_leader(from);
                self.handle_snapshot_chunk(from, chunk);
            }
            MessageBody::TimeoutNow => self.handle_timeout_now(from),
            _ => {}
        }
    }

    fn heard_from_leader(&mut self, from: NodeId) {
        if self.leader != Some(from) {
            tracing::info!(node = %self.id, term = self.term, leader = %from, "following new leader");
        }
        self.leader = Some(from);
        self.election_elapsed = 0;
    }

    /// Follower: the consistency check and append of Raft §5.3.
    fn handle_append(&mut self, from: NodeId, request: AppendEntries) {
        if request.prev_log_index < self.commit {
            // Everything up to our commit index matches already; answer
            // with it so the leader moves on (etcd does the same).
            let body = MessageBody::AppendEntriesResponse(AppendEntriesResponse::Accepted {
                match_index: self.commit,
            });
            self.send(from, body);
            return;
        }
        let has_membership = request
            .entries
            .iter()
            .any(|entry| matches!(entry.payload, super::types::EntryPayload::Membership(_)));
        let response = match self.log.try_append(
            request.prev_log_index,
            request.prev_log_term,
            request.entries,
        ) {
            Ok((match_index, truncated)) => {
                if truncated || has_membership {
                    self.refresh_membership();
                }
                let commit = request.leader_commit.min(match_index);
                if commit > self.commit {
                    self.commit = commit;
                }
                AppendEntriesResponse::Accepted { match_index }
            }
            Err(hint) => AppendEntriesResponse::Rejected {
                rejected_prev_index: request.prev_log_index,
                hint,
            },
        };
        self.send(from, MessageBody::AppendEntriesResponse(response));
    }

    fn handle_heartbeat(&mut self, from: NodeId, heartbeat: Heartbeat) {
        let last_index = self.log.last_index();
        if heartbeat.commit > last_index {
            // The leader believes we hold entries we do not (we lost our
            // disk): say where our log ends so that it resends them.
            let body = MessageBody::AppendEntriesResponse(AppendEntriesResponse::Rejected {
                rejected_prev_index: heartbeat.commit,
                hint: super::message::ConflictHint {
                    conflict_term: None,
                    first_index: last_index + 1,
                },
            });
            self.send(from, body);
        }
        let commit = heartbeat.commit.min(last_index);
        if commit > self.commit {
            self.commit = commit;
        }
        let body = MessageBody::HeartbeatResponse(HeartbeatResponse {
            read_round: heartbeat.read_round,
        });
        self.send(from, body);
    }

    /// Leader: a follower answered an AppendEntries.
    fn handle_append_response(
        &mut self,
        from: NodeId,
        incarnation: Incarnation,
        response: AppendEntriesResponse,
    ) {
        let last_index = self.log.last_index();
        let leader_term_lookup = match response {
            AppendEntriesResponse::Rejected { hint, .. } => hint
                .conflict_term
                .and_then(|term| self.log.last_index_of_term(term)),
            AppendEntriesResponse::Accepted { .. } => None,
        };
        let Some(progress) = self
            .leader_state_mut()
            .and_then(|leader| leader.progress.get_mut(&from))
        else {
            return;
        };
        progress.heard_from();
        match response {
            AppendEntriesResponse::Accepted { match_index } => {
                if match_index > last_index {
                    return;
                }
                let news = progress.update_match(match_index, incarnation);
                let was_probing = progress.state == ReplicationState::Probe;
                match progress.state {
                    ReplicationState::Probe => progress.become_replicate(),
                    ReplicationState::Snapshot { snapshot_index, .. }
                        if match_index >= snapshot_index =>
                    {
                        progress.become_replicate()
                    }
                    _ => {}
                }
                let commit_before = self.commit;
                if news {
                    self.maybe_commit();
                    self.maybe_send_timeout_now(from);
                }
                // A commit advance was already broadcast to everyone.
                if was_probing && self.commit == commit_before {
                    // The follower was waiting on us: tell it the commit
                    // index even if there is nothing new to send.
                    self.send_append(from, true);
                }
                self.send_appends_to(from);
            }
            AppendEntriesResponse::Rejected {
                rejected_prev_index,
                hint,
            } => {
                if progress.back_off(rejected_prev_index, hint, leader_term_lookup) {
                    self.send_append(from, true);
                }
            }
        }
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, response: HeartbeatResponse) {
        let last_index = self.log.last_index();
        let max_inflight = self.config.max_inflight_appends;
        let Some(progress) = self
            .leader_state_mut()
            .and_then(|leader| leader.progress.get_mut(&from))
        else {
            return;
        };
        progress.heard_from();
        progress.probe_sent = false;
        progress.read_round = progress.read_round.max(response.read_round);
        if progress.state == ReplicationState::Replicate && progress.inflight.len() >= max_inflight
        {
            // The follower is alive but our window is full: appends were
            // probably lost. Free one slot so replication cannot wedge; a
            // gap shows up as a rejection and moves us back to Probe.
            progress.inflight.pop_front();
        }
        let state = progress.state;
        let behind = progress.match_index < last_index;
        match state {
            ReplicationState::Snapshot { .. } => self.snapshot_heartbeat_answered(from),
            _ if behind => {
                self.send_append(from, true);
            }
            _ => {}
        }
        self.release_reads();
    }

    /// Leader: sends new entries to every follower that is not paused.
    /// With `allow_empty`, followers with nothing new still get an empty
    /// AppendEntries (to carry a new commit index).
    pub(crate) fn broadcast_append(&mut self, allow_empty: bool) {
        let peers: Vec<NodeId> = match self.leader_state() {
            Some(leader) => leader.progress.keys().copied().collect(),
            None => return,
        };
        for peer in peers {
            if !self.send_append(peer, allow_empty) {
                continue;
            }
            self.send_appends_to(peer);
        }
    }

    /// Leader: sends as many batches to `to` as flow control allows.
    pub(crate) fn send_appends_to(&mut self, to: NodeId) {
        // Each round sends at least one entry and advances `next_index`,
        // and the in-flight bound stops it: the loop terminates.
        while self.send_append(to, false) {}
    }

    /// Leader: sends one AppendEntries to `to` if flow control allows.
    /// Returns whether entries were sent in the pipelined state (so the
    /// caller may try to send more).
    pub(crate) fn send_append(&mut self, to: NodeId, allow_empty: bool) -> bool {
        let max_inflight = self.config.max_inflight_appends;
        let commit = self.commit;
        let Some(progress) = self
            .leader_state()
            .and_then(|leader| leader.progress.get(&to))
        else {
            return false;
        };
        if progress.is_paused(max_inflight) {
            return false;
        }
        let next = progress.next_index;
        let state = progress.state;
        let prev_log_index = next - 1;
        let Some(prev_log_term) = self.log.term_at(prev_log_index) else {
            // The entries the follower needs are compacted away.
            self.start_snapshot(to);
            return false;
        };
        let entries = self.log.batch(
            next,
            self.config.max_entries_per_message,
            self.config.max_bytes_per_message,
        );
        if entries.is_empty() && !allow_empty && state == ReplicationState::Replicate {
            return false;
        }
        let last = entries.last().map_or(prev_log_index, |entry| entry.index);
        let sent_entries = !entries.is_empty();
        let body = MessageBody::AppendEntries(AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit: commit,
        });
        self.send(to, body);
        if let Some(progress) = self
            .leader_state_mut()
            .and_then(|leader| leader.progress.get_mut(&to))
        {
            progress.sent(last);
        }
        sent_entries && state == ReplicationState::Replicate
    }

    /// Leader: heartbeats to every member, carrying the latest ReadIndex
    /// round.
    pub(crate) fn broadcast_heartbeat(&mut self) {
        let commit = self.commit;
        let Some(leader) = self.leader_state_mut() else {
            return;
        };
        for progress in leader.progress.values_mut() {
            progress.snapshot_heartbeat_sent();
        }
        let read_round = leader.reads.round();
        let targets: Vec<(NodeId, LogIndex)> = leader
            .progress
            .iter()
            .map(|(id, progress)| (*id, progress.match_index.min(commit)))
            .collect();
        for (to, commit) in targets {
            self.send(to, MessageBody::Heartbeat(Heartbeat { commit, read_round }));
        }
    }

    /// Leader: advances the commit index to the highest index stored on a
    /// majority of voters, if that entry is of the current term (§5.4.2).
    /// The leader's own log counts only as far as it is durable.
    pub(crate) fn maybe_commit(&mut self) {
        let Some(leader) = self.leader_state() else {
            return;
        };
        let mut matches: Vec<LogIndex> = self
            .membership
            .voters
            .iter()
            .map(|voter| {
                if *voter == self.id {
                    // A forgotten life's log is not the voter's.
                    if self.is_voter() {
                        self.log.stable_index()
                    } else {
                        0
                    }
                } else {
                    leader
                        .progress
                        .get(voter)
                        .map_or(0, |progress| progress.match_index)
                }
            })
            .collect();
        if matches.is_empty() {
            return;
        }
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matches[self.quorum() - 1];
        if candidate <= self.commit {
            return;
        }
        let current_term = self.log.term_at(candidate) == Some(self.term);
        if !current_term && !self.planted_commit_by_counting() {
            return;
        }
        self.commit = candidate;
        tracing::debug!(node = %self.id, commit = candidate, "commit index advanced");
        self.after_commit_advanced();
    }

    fn after_commit_advanced(&mut self) {
        let newly_in_term = match self.leader_state_mut() {
            Some(leader) if !leader.committed_in_term => {
                leader.committed_in_term = true;
                true
            }
            _ => false,
        };
        if newly_in_term {
            self.start_waiting_reads();
        }
        if self.step_down_if_removed() {
            return;
        }
        self.broadcast_append(true);
    }

    #[cfg(any(test, feature = "testing"))]
    fn planted_commit_by_counting(&self) -> bool {
        self.config.planted_bugs.commit_previous_term_by_counting
    }

    #[cfg(not(any(test, feature = "testing")))]
    fn planted_commit_by_counting(&self) -> bool {
        false
    }
}
