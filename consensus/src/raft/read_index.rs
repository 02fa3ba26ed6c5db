//! Linearizable reads through ReadIndex (dissertation §6.4): the leader
//! records its commit index, confirms with a heartbeat round that a
//! majority still follows it, and only then releases the read.
//!
//! Safety: a round is confirmed only by heartbeat answers of the leader's
//! own term (older or newer terms never reach this code: the term check in
//! `step` drops or deposes first), and a leader that steps down aborts every
//! pending read, so a deposed leader can never release one.

use super::leader::LeaderHandle;
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

    /// Starts a new round for `requests`, each to be answered at `index`
    /// (the commit index now) once a quorum confirms the round.
    fn start_round(&mut self, requests: Vec<RequestId>, index: LogIndex) {
        self.round += 1;
        let round = self.round;
        self.pending
            .extend(requests.into_iter().map(|request_id| PendingRead {
                request_id,
                index,
                round,
            }));
    }

    /// Takes the pending reads whose round is `confirmed` or older, in
    /// order.
    fn release(&mut self, confirmed: u64) -> Vec<ReadState> {
        let mut released = Vec::new();
        while self
            .pending
            .front()
            .is_some_and(|read| read.round <= confirmed)
        {
            if let Some(read) = self.pending.pop_front() {
                released.push(ReadState {
                    request_id: read.request_id,
                    index: read.index,
                });
            }
        }
        released
    }

    /// Every read that can no longer be answered by this leader.
    pub(crate) fn abort_all(&mut self) -> Vec<RequestId> {
        let mut aborted: Vec<RequestId> = self.waiting.drain(..).collect();
        aborted.extend(self.pending.drain(..).map(|read| read.request_id));
        aborted
    }
}

impl LeaderHandle<'_> {
    /// Queues a read and starts a confirmation round if possible.
    pub(crate) fn queue_read(&mut self, request_id: RequestId) {
        if !self.leader.committed_in_term {
            self.leader.reads.waiting.push(request_id);
            return;
        }
        self.leader
            .reads
            .start_round(vec![request_id], self.shared.commit);
        self.broadcast_heartbeat();
        self.release_reads();
    }

    /// The first entry of the term committed; start the reads that waited
    /// for it, in one round.
    pub(crate) fn start_waiting_reads(&mut self) {
        if self.leader.reads.waiting.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut self.leader.reads.waiting);
        self.leader.reads.start_round(waiting, self.shared.commit);
        self.broadcast_heartbeat();
        self.release_reads();
    }

    /// Releases every pending read whose round a majority of voters
    /// confirmed (this node counts if it votes).
    pub(crate) fn release_reads(&mut self) {
        let quorum = self.shared.quorum();
        let current = self.leader.reads.round;
        let mut rounds: Vec<u64> = self
            .shared
            .membership
            .voters
            .iter()
            .filter(|voter| **voter != self.shared.id)
            .map(|voter| {
                self.leader
                    .progress
                    .get(voter)
                    .map_or(0, |progress| progress.read_round)
            })
            .collect();
        if self.shared.is_voter() {
            rounds.push(current);
        }
        if rounds.len() < quorum {
            return;
        }
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        let confirmed = rounds[quorum - 1];
        let released = self.leader.reads.release(confirmed);
        self.shared.outbox.read_states.extend(released);
    }
}
