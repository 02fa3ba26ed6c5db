//! Leader election: the term check every message goes through, randomized
//! timeouts, PreVote, the vote rule, CheckQuorum and the leader lease
//! (Raft §5.2, §5.4.1; dissertation §9.6).

use super::core::{FollowerState, LeaderState, RaftCore, RoleState, Votes};
use super::message::{
    AppendEntriesResponse, ConflictHint, Message, MessageBody, RequestVote, RequestVoteResponse,
};
use super::progress::Progress;
use super::read_index::ReadQueue;
use super::types::{Entry, EntryPayload, NodeId, Term};
use std::collections::BTreeMap;

/// Which kind of campaign to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Campaign {
    /// A PreVote round first (normal timeouts when PreVote is on).
    PreVote,
    /// A real election.
    Election,
    /// A real election ordered by the leader (TimeoutNow): voters skip the
    /// leader lease.
    Transfer,
}

impl RaftCore {
    /// Compares the message's term with ours, once for every message
    /// (etcd's `Step`). Returns whether the message should be dispatched.
    pub(crate) fn check_term(&mut self, message: &Message) -> bool {
        use std::cmp::Ordering;
        let vote_request = match &message.body {
            MessageBody::RequestVote(request) => Some(*request),
            _ => None,
        };
        match message.term.cmp(&self.term) {
            Ordering::Greater => {
                if let Some(request) = vote_request {
                    if !request.transfer && self.in_leader_lease() {
                        // Leader lease: a leader was heard from recently,
                        // so this candidate is disruptive; ignore it
                        // without even adopting its term.
                        tracing::debug!(node = %self.id, from = %message.from, "vote request ignored: leader lease");
                        return false;
                    }
                    if request.pre_vote {
                        return true;
                    }
                }
                if let MessageBody::RequestVoteResponse(response) = &message.body {
                    if response.pre_vote && response.granted {
                        // Granted pre-votes carry the term we would
                        // campaign in; they do not move our term.
                        return true;
                    }
                }
                let leader = match &message.body {
                    MessageBody::AppendEntries(_)
                    | MessageBody::Heartbeat(_)
                    | MessageBody::InstallSnapshot(_) => Some(message.from),
                    _ => None,
                };
                self.become_follower(message.term, leader);
                true
            }
            Ordering::Less => {
                self.answer_stale(message);
                false
            }
            Ordering::Equal => true,
        }
    }

    /// A message from an older term: tell a stale leader or pre-candidate
    /// about our term so it steps down (without this, a leader partitioned
    /// away could never learn it was deposed when CheckQuorum keeps
    /// followers from adopting higher terms).
    fn answer_stale(&mut self, message: &Message) {
        match &message.body {
            MessageBody::AppendEntries(_)
            | MessageBody::Heartbeat(_)
            | MessageBody::InstallSnapshot(_) => {
                let body = MessageBody::AppendEntriesResponse(AppendEntriesResponse::Rejected {
                    rejected_prev_index: 0,
                    hint: ConflictHint {
                        conflict_term: None,
                        first_index: 0,
                    },
                });
                self.send_with_term(message.from, self.term, body, true);
            }
            MessageBody::RequestVote(request) if request.pre_vote => {
                let body = MessageBody::RequestVoteResponse(RequestVoteResponse {
                    granted: false,
                    pre_vote: true,
                });
                self.send_with_term(message.from, self.term, body, true);
            }
            _ => {}
        }
    }

    /// Whether a leader (possibly this node) was heard from less than an
    /// election timeout ago.
    pub(crate) fn in_leader_lease(&self) -> bool {
        self.config.check_quorum
            && self.leader.is_some()
            && self.election_elapsed < self.config.election_ticks_min
    }

    /// Starts an election now, as if the election timeout had expired
    /// (with a PreVote round first when PreVote is on). Learners, nodes
    /// that know no configuration and nodes that know their removal
    /// committed do nothing; a removed node whose removal is not yet known
    /// committed campaigns without counting its own vote (dissertation
    /// §4.2.2).
    pub fn campaign(&mut self) {
        if matches!(self.role, RoleState::Leader(_)) {
            return;
        }
        let kind = if self.config.pre_vote {
            Campaign::PreVote
        } else {
            Campaign::Election
        };
        self.campaign_as(kind);
    }

    /// Follower and candidate tick: start a campaign when the randomized
    /// election timeout expires (see [`Self::may_campaign`] for who may).
    pub(crate) fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.election_elapsed < self.election_timeout {
            return;
        }
        self.reset_election_timeout();
        self.campaign();
    }

    /// Whether this node may start elections: voters may; so may a node
    /// removed by a change it does not yet know committed, because it may
    /// still be needed to commit that change (say it holds the change and
    /// the survivors do not); it then does not count its own vote
    /// (dissertation §4.2.2). Once the removal is known committed, the node
    /// is out for good. Learners and nodes that know no configuration never
    /// campaign.
    pub(crate) fn may_campaign(&self) -> bool {
        let membership = &self.membership;
        // A forgotten life of a voter is treated as removed: it may have to
        // finish a change it holds, never counting its own vote.
        let removed_pending = !membership.voters.is_empty()
            && !membership.learners.contains(&self.id)
            && self.membership_index > self.commit;
        self.is_voter() || removed_pending
    }

    /// Starts a campaign (Raft §5.2): a PreVote round leaves term and vote
    /// untouched; an election increments the term and votes for itself.
    pub(crate) fn campaign_as(&mut self, kind: Campaign) {
        if !self.may_campaign() {
            return;
        }
        let mut votes = Votes::new();
        if self.is_voter() {
            votes.insert(self.id, true);
        }
        let pre_vote = kind == Campaign::PreVote;
        if pre_vote {
            tracing::info!(node = %self.id, term = self.term, "election timeout: starting pre-vote");
            self.role = RoleState::PreCandidate(votes);
            self.leader = None;
        } else {
            let Some(term) = self.term.checked_add(1) else {
                tracing::error!(node = %self.id, "term space exhausted: cannot campaign");
                return;
            };
            self.term = term;
            self.vote = Some(self.id);
            self.leader = None;
            tracing::info!(node = %self.id, term = self.term, "starting election");
            self.role = RoleState::Candidate(votes);
        }
        self.reset_election_timeout();
        let request = RequestVote {
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            pre_vote,
            transfer: kind == Campaign::Transfer,
        };
        let voters: Vec<NodeId> = self
            .membership
            .voters
            .iter()
            .copied()
            .filter(|v| *v != self.id)
            .collect();
        for voter in voters {
            self.send(voter, MessageBody::RequestVote(request));
        }
        self.tally_votes();
    }

    /// Decides a vote request (Raft §5.2, §5.4.1). The term check already
    /// ran, so `term >= self.term` (a pre-vote may carry a higher term).
    pub(crate) fn handle_vote_request(&mut self, from: NodeId, term: Term, request: RequestVote) {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (request.pre_vote && term > self.term)
            || self.planted_vote_twice(term, request);
        let candidate_log = (request.last_log_term, request.last_log_index);
        let up_to_date = candidate_log >= (self.log.last_term(), self.log.last_index())
            || self.planted_skip_up_to_date();
        // A node that knows no configuration (a joiner that has received
        // nothing yet) has no log to vouch for: it grants nothing. Its
        // answers would be dropped anyway by any candidate that counts it
        // as a voter (`is_from_known_life`), but refusing is the plain rule.
        let knows_configuration =
            !self.membership.voters.is_empty() || self.planted_accept_any_incarnation();
        // Nor does a forgotten life of a voter (its answer would be
        // dropped by anyone who counts that voter; refusing says so).
        let granted = can_vote && up_to_date && knows_configuration && !self.is_forgotten_voter();
        let reply_term = if granted { term } else { self.term };
        tracing::debug!(node = %self.id, candidate = %from, term, granted, pre_vote = request.pre_vote, "vote request");
        if granted && !request.pre_vote {
            self.vote = Some(from);
            self.election_elapsed = 0;
        }
        let body = MessageBody::RequestVoteResponse(RequestVoteResponse {
            granted,
            pre_vote: request.pre_vote,
        });
        // A granted real vote changes the hard state: it must be durable
        // before the candidate hears of it. Pre-vote answers change nothing.
        self.send_with_term(from, reply_term, body, request.pre_vote);
    }

    /// Candidate and pre-candidate: count votes, and step down on any sign
    /// of a leader in our term.
    pub(crate) fn step_candidate(&mut self, from: NodeId, term: Term, body: MessageBody) {
        match body {
            MessageBody::RequestVoteResponse(response) => {
                let counts = match &self.role {
                    RoleState::PreCandidate(_) => response.pre_vote,
                    RoleState::Candidate(_) => !response.pre_vote && term == self.term,
                    _ => false,
                };
                if counts && self.membership.voters.contains(&from) {
                    if let RoleState::PreCandidate(votes) | RoleState::Candidate(votes) =
                        &mut self.role
                    {
                        votes.entry(from).or_insert(response.granted);
                    }
                    self.tally_votes();
                }
            }
            body @ (MessageBody::AppendEntries(_)
            | MessageBody::Heartbeat(_)
            | MessageBody::InstallSnapshot(_)) => {
                self.become_follower(self.term, Some(from));
                self.step_follower(from, body);
            }
            _ => {}
        }
    }

    fn tally_votes(&mut self) {
        let (granted, rejected, pre_vote) = match &self.role {
            RoleState::PreCandidate(votes) => (count(votes, true), count(votes, false), true),
            RoleState::Candidate(votes) => (count(votes, true), count(votes, false), false),
            _ => return,
        };
        let quorum = self.quorum();
        if granted >= quorum {
            if pre_vote {
                self.campaign_as(Campaign::Election);
            } else {
                self.become_leader();
            }
        } else if rejected >= quorum {
            tracing::info!(node = %self.id, term = self.term, "election lost");
            self.become_follower(self.term, None);
        }
    }

    /// Becomes a follower of `leader` in `term` (a higher term clears the
    /// vote). A leader stepping down aborts its pending reads.
    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if let RoleState::Leader(state) = &mut self.role {
            let aborted = state.reads.abort_all();
            self.outbox.aborted_reads.extend(aborted);
            tracing::info!(node = %self.id, term = self.term, new_term = term, "leader stepping down");
        }
        if term > self.term {
            self.term = term;
            self.vote = None;
        }
        if leader.is_some() && self.leader != leader {
            tracing::info!(node = %self.id, term, leader = ?leader.map(|id| id.to_string()), "following new leader");
        }
        self.leader = leader;
        if !matches!(self.role, RoleState::Follower(_)) {
            self.role = RoleState::Follower(FollowerState::default());
        }
        self.reset_election_timeout();
    }

    /// Wins the election: set up progress for every other member, append a
    /// blank entry of the new term (so that earlier entries can commit,
    /// §5.4.2) and start replicating.
    pub(crate) fn become_leader(&mut self) {
        tracing::info!(node = %self.id, term = self.term, "won election, becoming leader");
        let next = self.log.last_index() + 1;
        let progress: BTreeMap<NodeId, Progress> = self
            .members()
            .into_iter()
            .filter(|member| *member != self.id)
            .map(|member| (member, Progress::new(next)))
            .collect();
        self.role = RoleState::Leader(LeaderState {
            progress,
            reads: ReadQueue::default(),
            transfer: None,
            committed_in_term: false,
        });
        self.leader = Some(self.id);
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.append_as_leader(vec![EntryPayload::Blank]);
    }

    /// Leader tick: heartbeats, CheckQuorum, transfer timeout.
    pub(crate) fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.config.election_ticks_min {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_active() {
                tracing::info!(node = %self.id, term = self.term, "lost contact with a quorum: stepping down");
                self.become_follower(self.term, None);
                return;
            }
        }
        self.tick_transfer();
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    /// CheckQuorum: whether a majority of voters (this node included if it
    /// votes) was heard from since the last check; resets the marks.
    fn quorum_active(&mut self) -> bool {
        let quorum = self.quorum();
        let self_votes = self.is_voter();
        let voters = self.membership.voters.clone();
        let Some(leader) = self.leader_state_mut() else {
            return false;
        };
        let mut active = usize::from(self_votes);
        for (id, progress) in leader.progress.iter_mut() {
            if progress.end_check_round() && voters.contains(id) {
                active += 1;
            }
        }
        active >= quorum
    }

    /// Every member: voters and learners.
    pub(crate) fn members(&self) -> Vec<NodeId> {
        self.membership
            .voters
            .iter()
            .chain(self.membership.learners.iter())
            .copied()
            .collect()
    }

    /// Appends new entries of the current term to the leader's log and
    /// replicates them.
    pub(crate) fn append_as_leader(&mut self, payloads: Vec<EntryPayload>) -> (u64, u64) {
        let first = self.log.last_index() + 1;
        let term = self.term;
        let entries: Vec<Entry> = payloads
            .into_iter()
            .enumerate()
            .map(|(offset, payload)| Entry {
                term,
                index: first + offset as u64,
                payload,
            })
            .collect();
        let has_membership = entries
            .iter()
            .any(|entry| matches!(entry.payload, EntryPayload::Membership(_)));
        self.log.append(entries);
        if has_membership {
            self.refresh_membership();
        }
        self.broadcast_append(false);
        (first, self.log.last_index())
    }

    #[cfg(any(test, feature = "testing"))]
    fn planted_vote_twice(&self, term: Term, request: RequestVote) -> bool {
        self.config.planted_bugs.vote_twice_in_term && !request.pre_vote && term == self.term
    }

    #[cfg(not(any(test, feature = "testing")))]
    fn planted_vote_twice(&self, _term: Term, _request: RequestVote) -> bool {
        false
    }

    #[cfg(any(test, feature = "testing"))]
    fn planted_skip_up_to_date(&self) -> bool {
        self.config.planted_bugs.skip_up_to_date_check
    }

    #[cfg(not(any(test, feature = "testing")))]
    fn planted_skip_up_to_date(&self) -> bool {
        false
    }
}

fn count(votes: &Votes, granted: bool) -> usize {
    votes.values().filter(|vote| **vote == granted).count()
}
