use super::*;

// Reference: Raft §5.2 — a follower that times out becomes a candidate,
// increments its term, votes for itself and asks every voter, and only
// after its vote is durable.
#[test]
fn election_timeout_starts_an_election_after_persisting_the_vote() {
    let mut core = fresh(config(1));
    for _ in 0..core.shared.config.election_ticks_max {
        core.tick();
    }
    let ready = core.ready();
    assert_eq!(core.role(), Role::Candidate);
    assert_eq!(
        ready.hard_state,
        Some(HardState {
            term: 2,
            vote: Some(NodeId(1)),
            commit: 0,
            incarnation: 0,
        })
    );
    let request = RequestVote {
        last_log_index: 1,
        last_log_term: 1,
        pre_vote: false,
        transfer: false,
    };
    assert!(ready.messages.is_empty());
    assert_eq!(
        ready.messages_after_persist,
        vec![
            message(1, 2, 2, MessageBody::RequestVote(request)),
            message(1, 3, 2, MessageBody::RequestVote(request)),
        ]
    );
}

// Reference: dissertation §9.6 — PreVote asks with term + 1 but changes
// neither the term nor the vote, so its messages need no persistence.
#[test]
fn pre_vote_changes_no_durable_state() {
    let mut config = config(1);
    config.pre_vote = true;
    let mut core = fresh(config);
    core.campaign();
    let ready = core.ready();
    assert_eq!(core.role(), Role::PreCandidate);
    assert_eq!(core.term(), 1);
    assert_eq!(ready.hard_state, None);
    let request = RequestVote {
        last_log_index: 1,
        last_log_term: 1,
        pre_vote: true,
        transfer: false,
    };
    assert_eq!(
        ready.messages,
        vec![
            message(1, 2, 2, MessageBody::RequestVote(request)),
            message(1, 3, 2, MessageBody::RequestVote(request)),
        ]
    );
}

fn vote_request(from: u64, term: Term, last_index: LogIndex, last_term: Term) -> Message {
    message(
        from,
        2,
        term,
        MessageBody::RequestVote(RequestVote {
            last_log_index: last_index,
            last_log_term: last_term,
            pre_vote: false,
            transfer: false,
        }),
    )
}

fn vote_answer(to: u64, term: Term, granted: bool) -> Message {
    message(
        2,
        to,
        term,
        MessageBody::RequestVoteResponse(RequestVoteResponse {
            granted,
            pre_vote: false,
        }),
    )
}

// Reference: Raft §5.4.1 — a voter refuses a candidate whose log is less
// up to date than its own (lower last term, or same term and shorter).
#[test]
fn vote_refused_to_a_candidate_with_a_stale_log() {
    let mut config = config(2);
    config.check_quorum = false;
    let mut voter = fresh(config);
    voter.step(message(
        1,
        2,
        2,
        MessageBody::AppendEntries(AppendEntries {
            prev_log_index: 1,
            prev_log_term: 1,
            entries: vec![entry(2, 2, "x")],
            leader_commit: 0,
        }),
    ));
    persist(&mut voter);
    voter.step(vote_request(3, 3, 1, 1));
    let ready = voter.ready();
    assert_eq!(ready.messages_after_persist, vec![vote_answer(3, 3, false)]);
    assert_eq!(voter.term(), 3);
    assert_eq!(
        ready.hard_state.and_then(|hard_state| hard_state.vote),
        None
    );
}

// Reference: Raft §5.2 — at most one vote per term, durable before the
// answer leaves.
#[test]
fn one_vote_per_term() {
    let mut voter = fresh(config(2));
    voter.step(vote_request(1, 2, 1, 1));
    let ready = voter.ready();
    assert_eq!(ready.messages, vec![]);
    assert_eq!(ready.messages_after_persist, vec![vote_answer(1, 2, true)]);
    assert_eq!(
        ready.hard_state.and_then(|hard_state| hard_state.vote),
        Some(NodeId(1))
    );
    voter.step(vote_request(3, 2, 1, 1));
    assert_eq!(
        voter.ready().messages_after_persist,
        vec![vote_answer(3, 2, false)]
    );
}

// Reference: dissertation §4.2.3 / §9.6 — while a leader is known fresh a
// vote request with a higher term is ignored entirely (term unchanged),
// unless it comes from a leadership transfer.
#[test]
fn leader_lease_ignores_disruptive_candidates_but_not_transfers() {
    let mut voter = fresh(config(2));
    voter.step(message(
        1,
        2,
        2,
        MessageBody::Heartbeat(Heartbeat {
            commit: 0,
            read_round: 0,
        }),
    ));
    voter.ready();
    voter.step(vote_request(3, 3, 5, 2));
    assert!(voter.ready().is_empty());
    assert_eq!(voter.term(), 2);
    let mut transfer = vote_request(3, 3, 5, 2);
    if let MessageBody::RequestVote(request) = &mut transfer.body {
        request.transfer = true;
    }
    voter.step(transfer);
    assert_eq!(
        voter.ready().messages_after_persist,
        vec![vote_answer(3, 3, true)]
    );
}

// Reference: Raft §5.2, §8 — a candidate with a majority becomes leader and
// appends a blank entry of its term, sent at once (in parallel with its
// own fsync).
#[test]
fn majority_makes_a_leader_that_appends_a_blank_entry() {
    let mut core = fresh(config(1));
    core.campaign();
    persist(&mut core);
    core.step(vote_granted(2, 1, 2));
    let ready = core.ready();
    assert_eq!(core.role(), Role::Leader);
    let blank = Entry {
        term: 2,
        index: 2,
        payload: EntryPayload::Blank,
    };
    assert_eq!(ready.entries, vec![blank.clone()]);
    let append = |to| {
        message(
            1,
            to,
            2,
            MessageBody::AppendEntries(AppendEntries {
                prev_log_index: 1,
                prev_log_term: 1,
                entries: vec![blank.clone()],
                leader_commit: 0,
            }),
        )
    };
    assert_eq!(ready.messages, vec![append(2), append(3)]);
    assert_eq!(
        ready.soft_state,
        Some(SoftState {
            role: Role::Leader,
            term: 2,
            leader: Some(NodeId(1))
        })
    );
}

// Reference: dissertation §6.2 — CheckQuorum: a leader that heard from no
// majority during an election timeout steps down.
#[test]
fn check_quorum_deposes_an_isolated_leader() {
    let mut core = leader();
    for _ in 0..2 * core.shared.config.election_ticks_min {
        core.tick();
    }
    assert_eq!(core.role(), Role::Follower);
    assert_eq!(core.leader(), None);
}

// Reference: dissertation §6.4 — a read on a deposed leader is never
// released, only aborted.
#[test]
fn read_index_on_a_deposed_leader_is_aborted() {
    let mut core = leader();
    core.read_index(7).expect("leader accepts reads");
    core.ready();
    core.step(message(
        2,
        1,
        3,
        MessageBody::Heartbeat(Heartbeat {
            commit: 2,
            read_round: 0,
        }),
    ));
    let ready = core.ready();
    assert_eq!(ready.read_states, vec![]);
    assert_eq!(ready.aborted_reads, vec![7]);
    assert_eq!(
        core.read_index(8),
        Err(NotLeader {
            leader: Some(NodeId(2))
        })
    );
}

#[test]
fn restore_refuses_a_log_with_holes() {
    let restored = RestoredState {
        hard_state: HardState {
            term: 2,
            vote: None,
            commit: 0,
            incarnation: 0,
        },
        snapshot: None,
        entries: vec![entry(1, 1, "a"), entry(3, 1, "b")],
    };
    let error = RaftCore::new(config(1), restored).expect_err("gap must be refused");
    assert_eq!(
        error,
        RestoreError::Gap {
            expected: 2,
            found: 3
        }
    );
}

#[test]
fn config_validation_refuses_unusable_timings() {
    let mut config = config(1);
    config.heartbeat_ticks = config.election_ticks_min;
    assert!(matches!(
        config.validate(),
        Err(ConfigError::Heartbeat { .. })
    ));
    config.heartbeat_ticks = 1;
    config.election_ticks_max = config.election_ticks_min;
    assert!(matches!(
        config.validate(),
        Err(ConfigError::ElectionRange { .. })
    ));
}

// Reference: dissertation §4.2.1 — learners (and nodes that know no
// configuration yet) never start elections.
#[test]
fn learners_and_unconfigured_nodes_never_campaign() {
    let mut joining = RaftCore::join(config(4), 4).expect("a joiner");
    for _ in 0..3 * joining.shared.config.election_ticks_max {
        joining.tick();
    }
    assert_eq!(joining.role(), Role::Follower);
    assert!(joining.ready().messages_after_persist.is_empty());
    let mut learner = RaftCore::join(config(4), 4).expect("a joiner");
    learner.step(message(
        1,
        4,
        2,
        MessageBody::AppendEntries(AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![Entry {
                term: 1,
                index: 1,
                payload: EntryPayload::Membership(Membership {
                    voters: voters(&[1, 2, 3]),
                    learners: voters(&[4]),
                    incarnations: Default::default(),
                    addresses: Default::default(),
                }),
            }],
            leader_commit: 1,
        }),
    ));
    persist(&mut learner);
    learner.campaign();
    assert_eq!(learner.role(), Role::Follower);
}

// Reference: dissertation §4.2.2 — a removed node campaigns only while it
// does not know its removal committed, and never counts its own vote.
#[test]
fn removed_node_campaigns_only_until_its_removal_is_known_committed() {
    let mut core = leader();
    core.change_membership(MembershipChange::RemoveNode(NodeId(1)))
        .expect("leader removes itself");
    persist(&mut core);
    // Not committed yet: still leading, without counting itself.
    accept(&mut core, 3, 3);
    assert_eq!(core.commit_index(), 2);
    assert_eq!(core.role(), Role::Leader);
    accept(&mut core, 2, 3);
    assert_eq!(core.commit_index(), 3);
    assert_eq!(core.role(), Role::Follower);
    core.campaign();
    assert_eq!(core.role(), Role::Follower, "removal known committed");
}
