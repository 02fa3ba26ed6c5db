//! A node id's lives are told apart (SPEC §13): a node that lost its state
//! never counts as the voter it was. These are the deterministic
//! regressions of simulation seed 214934593, where a removed node id came
//! back empty as a learner and a node holding an older configuration (in
//! which that id was still a voter) counted its vote and became a leader
//! lacking a committed entry. See docs/raft-safety.md.
//! Reference: dissertation §4.2.2 (disruptive and removed servers) and
//! etcd's rule that a member that lost its data is re-added under a new
//! member id.

use super::*;

fn with_incarnation(message: Message, incarnation: Incarnation) -> Message {
    Message {
        incarnation,
        ..message
    }
}

/// node3 of a founding 5-voter cluster, candidate of term 2 with its own
/// vote (its configuration is the founding one: node2 is a voter there,
/// in its first life, incarnation 0).
fn stale_candidate() -> RaftCore {
    let mut core =
        RaftCore::bootstrap(config(3), voters(&[1, 2, 3, 4, 5])).expect("valid bootstrap");
    persist(&mut core);
    core.campaign();
    persist(&mut core);
    assert_eq!(core.role(), Role::Candidate);
    core
}

#[test]
fn a_vote_from_another_life_of_a_voter_is_not_counted() {
    let mut candidate = stale_candidate();
    candidate.step(vote_granted(5, 3, 2));
    // node2 was removed, wiped and added back: a new life, incarnation 77.
    candidate.step(with_incarnation(vote_granted(2, 3, 2), 77));
    assert_eq!(
        candidate.role(),
        Role::Candidate,
        "a vote from a forgotten life of node2 made a leader"
    );
    // The life the configuration means does count.
    candidate.step(vote_granted(2, 3, 2));
    assert_eq!(candidate.role(), Role::Leader);
}

#[test]
fn a_joiner_that_knows_no_configuration_grants_no_vote() {
    let mut joiner = RaftCore::join(config(2), 77).expect("a joiner");
    let request = RequestVote {
        last_log_index: 10,
        last_log_term: 9,
        pre_vote: false,
        transfer: false,
    };
    joiner.step(message(3, 2, 11, MessageBody::RequestVote(request)));
    let ready = persist(&mut joiner);
    let answers: Vec<_> = ready
        .messages
        .iter()
        .chain(&ready.messages_after_persist)
        .map(|message| (message.to, message.incarnation, message.body.clone()))
        .collect();
    assert_eq!(
        answers,
        vec![(
            NodeId(3),
            77,
            MessageBody::RequestVoteResponse(RequestVoteResponse {
                granted: false,
                pre_vote: false,
            })
        )]
    );
    assert_eq!(ready.hard_state.map(|state| state.incarnation), Some(77));
}

#[test]
fn an_empty_state_is_refused_and_a_joiner_needs_a_fresh_incarnation() {
    let refused = RaftCore::new(config(2), RestoredState::default());
    assert!(matches!(refused, Err(RestoreError::NoState)));
    assert!(matches!(
        RaftCore::join(config(2), 0),
        Err(RestoreError::ZeroIncarnation)
    ));
}

#[test]
fn promotion_binds_the_life_that_caught_up_and_drops_the_others() {
    let mut leader = leader();
    leader
        .change_membership(MembershipChange::AddLearner {
            node: NodeId(4),
            address: String::new(),
        })
        .expect("add learner");
    persist(&mut leader);
    accept(&mut leader, 2, 3);
    persist(&mut leader);
    let last = leader.shared.log.last_index();
    // The learner (incarnation 9) has caught up.
    let caught_up = message(
        4,
        1,
        leader.term(),
        MessageBody::AppendEntriesResponse(AppendEntriesResponse::Accepted { match_index: last }),
    );
    leader.step(with_incarnation(caught_up, 9));
    persist(&mut leader);
    leader
        .change_membership(MembershipChange::PromoteLearner(NodeId(4)))
        .expect("promote");
    persist(&mut leader);
    assert_eq!(leader.membership().incarnations.get(&NodeId(4)), Some(&9));
    assert_eq!(leader.membership().voter_incarnation(NodeId(4)), Some(9));
    // An answer from another life of node4 moves nothing.
    let before = leader.status().followers[&NodeId(4)].match_index;
    let other_life = message(
        4,
        1,
        leader.term(),
        MessageBody::AppendEntriesResponse(AppendEntriesResponse::Accepted {
            match_index: last + 1,
        }),
    );
    leader.step(other_life);
    assert_eq!(leader.status().followers[&NodeId(4)].match_index, before);
    // Removing node4 forgets its incarnation, so a later life starts anew.
    // (The promotion commits with node4's own life in the quorum.)
    accept(&mut leader, 2, last + 1);
    let promoted = message(
        4,
        1,
        leader.term(),
        MessageBody::AppendEntriesResponse(AppendEntriesResponse::Accepted {
            match_index: last + 1,
        }),
    );
    leader.step(with_incarnation(promoted, 9));
    persist(&mut leader);
    assert_eq!(leader.commit_index(), last + 1);
    leader
        .change_membership(MembershipChange::RemoveNode(NodeId(4)))
        .expect("remove");
    assert!(leader.membership().incarnations.is_empty());
}
