//! Linearizable reads through ReadIndex (dissertation §6.4): the leader
//! records its commit index, confirms with a heartbeat round that a
//! majority still follows it, and only then releases the read.
//!
//! Safety: a round is confirmed only by heartbeat answers of the leader's
//! own term (older or newer terms never reach this code: the term check in
//! `step` drops or deposes first), and a leader that steps down aborts every
//! pending read, so a deposed leader can never release one.

use super::core::RaftCore;
use super::errors::NotLeader;
use super::ready::{ReadState, RequestId};
use super::types::LogIndex;
use std::collections::VecDeque;

/// A leader's pending reads.
#[derive(Debug, Default)]
pub(crate) struct ReadQueue {
    /// Reads received before the leader committed an entry of its term:
    /// until then its commit index may be behind (§6.4 step 1).
    waiting: Vec<RequestId>,
    /// Reads with their index, waiting for a quorum to confirm `round`.
    pending: VecDeque<PendingRead>,
    /// The latest round started.
    round: u64,
}

#[derive(Debug)]
struct PendingRead {
    request_id: RequestId,
    index: LogIndex,
    round: u64,
}

impl ReadQueue {
    pub(crate) fn round(&self) -> u64 {
        self.round
    }

    /// Every read that can no longer be answered by this leader.
    pub(crate) fn abort_all(&mut self) -> Vec<RequestId> {
        let mut aborted: Vec<RequestId> = self.waiting.drain(..).collect();
        aborted.extend(self.pending.drain(..).map(|read| read.request_id));
        aborted
    }
}

impl RaftCore {
    /// Asks for a linearizable read. On the leader the read is answered
    /// later by a [`ReadState`] in [`Ready`](super::Ready) (or listed in
    /// `aborted_reads` if leadership is lost first).
    pub fn read_index(&mut self, request_id: RequestId) -> Result<(), NotLeader> {
        self.leader_handle()?.read_index(request_id);
        Ok(())
    }

    /// Leader: queue a read and start a confirmation round if possible.
    pub(crate) fn leader_read_index(&mut self, request_id: RequestId) {
        let commit = self.commit;
        let Some(leader) = self.leader_state_mut() else {
            return;
        };
        if !leader.committed_in_term {
            leader.reads.waiting.push(request_id);
            return;
        }
        leader.reads.round += 1;
        let round = leader.reads.round;
        leader.reads.pending.push_back(PendingRead {
            request_id,
            index: commit,
            round,
        });
        self.broadcast_heartbeat();
        self.release_reads();
    }

    /// Leader: the first entry of the term committed; start the reads that
    /// waited for it, in one round.
    pub(crate) fn start_waiting_reads(&mut self) {
        let commit = self.commit;
        let Some(leader) = self.leader_state_mut() else {
            return;
        };
        if leader.reads.waiting.is_empty() {
            return;
        }
        leader.reads.round += 1;
        let round = leader.reads.round;
        let waiting: Vec<RequestId> = leader.reads.waiting.drain(..).collect();
        for request_id in waiting {
            leader.reads.pending.push_back(PendingRead {
                request_id,
                index: commit,
                round,
            });
        }
        self.broadcast_heartbeat();
        self.release_reads();
    }

    /// Leader: releases every pending read whose round a majority of
    /// voters confirmed (this node counts if it votes).
    pub(crate) fn release_reads(&mut self) {
        let quorum = self.quorum();
        let self_votes = self.is_voter();
        let Some(leader) = self.leader_state() else {
            return;
        };
        let current = leader.reads.round;
        let mut rounds: Vec<u64> = self
            .membership
            .voters
            .iter()
            .filter(|voter| **voter != self.id)
            .map(|voter| {
                leader
                    .progress
                    .get(voter)
                    .map_or(0, |progress| progress.read_round)
            })
            .collect();
        if self_votes {
            rounds.push(current);
        }
        if rounds.len() < quorum {
            return;
        }
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        let confirmed = rounds[quorum - 1];
        let mut released = Vec::new();
        if let Some(leader) = self.leader_state_mut() {
            while leader
                .reads
                .pending
                .front()
                .is_some_and(|read| read.round <= confirmed)
            {
                if let Some(read) = leader.reads.pending.pop_front() {
                    released.push(ReadState {
                        request_id: read.request_id,
                        index: read.index,
                    });
                }
            }
        }
        self.outbox.read_states.extend(released);
    }
}
