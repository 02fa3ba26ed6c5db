//! Each planted bug changes behaviour (so the simulation's "has teeth" test
//! can rely on it) and is off by default.

use super::*;

fn stale_candidate_request(term: Term) -> Message {
    message(
        3,
        2,
        term,
        MessageBody::RequestVote(RequestVote {
            last_log_index: 1,
            last_log_term: 1,
            pre_vote: false,
            transfer: false,
        }),
    )
}

fn granted_votes(ready: &Ready) -> usize {
    ready
        .messages_after_persist
        .iter()
        .filter(|message| matches!(message.body, MessageBody::RequestVoteResponse(response) if response.granted))
        .count()
}

/// Node 2 holding entry 2 of term 2 beyond node 3's log.
fn voter_ahead(bugs: PlantedBugs) -> RaftCore {
    let mut config = config(2);
    config.planted_bugs = bugs;
    // No leader lease, so that the vote request is considered at all.
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
    voter
}

// Reference: Raft §5.4.1.
#[test]
fn planted_skip_up_to_date_check_grants_stale_candidates() {
    let mut correct = voter_ahead(PlantedBugs::default());
    correct.step(stale_candidate_request(3));
    assert_eq!(granted_votes(&correct.ready()), 0);
    let mut buggy = voter_ahead(PlantedBugs {
        skip_up_to_date_check: true,
        ..PlantedBugs::default()
    });
    buggy.step(stale_candidate_request(3));
    assert_eq!(granted_votes(&buggy.ready()), 1);
}

// Reference: Raft §5.2.
#[test]
fn planted_vote_twice_grants_two_candidates_in_one_term() {
    for (bug, expected) in [(false, 1), (true, 2)] {
        let mut config = config(2);
        config.planted_bugs.vote_twice_in_term = bug;
        let mut voter = fresh(config);
        for candidate in [1, 3] {
            voter.step(message(
                candidate,
                2,
                2,
                MessageBody::RequestVote(RequestVote {
                    last_log_index: 1,
                    last_log_term: 1,
                    pre_vote: false,
                    transfer: false,
                }),
            ));
        }
        assert_eq!(
            granted_votes(&voter.ready()),
            expected,
            "bug switched {bug}"
        );
    }
}

// Reference: Raft §5.4.2, figure 8 — a leader must not commit an entry of
// an earlier term by counting replicas.
#[test]
fn planted_commit_previous_term_by_counting_commits_old_entries() {
    for (bug, expected_commit) in [(false, 0), (true, 2)] {
        let mut config = config(1);
        config.planted_bugs.commit_previous_term_by_counting = bug;
        // Node 1 holds entry 2 of term 2 (from an earlier leadership) and
        // wins term 3; node 2 confirms it holds entry 2 but not the blank.
        let restored = RestoredState {
            hard_state: HardState {
                term: 2,
                vote: None,
                commit: 0,
                incarnation: 0,
            },
            snapshot: None,
            entries: vec![
                Entry {
                    term: 1,
                    index: 1,
                    payload: EntryPayload::Membership(Membership {
                        voters: voters(&[1, 2, 3]),
                        learners: Default::default(),
                        incarnations: Default::default(),
                        addresses: Default::default(),
                    }),
                },
                entry(2, 2, "old"),
            ],
        };
        let mut core = RaftCore::new(config, restored).expect("valid state");
        core.campaign();
        persist(&mut core);
        core.step(vote_granted(2, 1, 3));
        persist(&mut core);
        accept(&mut core, 2, 2);
        assert_eq!(core.commit_index(), expected_commit, "bug switched {bug}");
    }
}
