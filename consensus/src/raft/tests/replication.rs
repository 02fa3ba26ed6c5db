use super::*;

fn append(prev_index: LogIndex, prev_term: Term, entries: Vec<Entry>, commit: LogIndex) -> Message {
    message(
        1,
        2,
        3,
        MessageBody::AppendEntries(AppendEntries {
            prev_log_index: prev_index,
            prev_log_term: prev_term,
            entries,
            leader_commit: commit,
        }),
    )
}

fn response(body: AppendEntriesResponse) -> Message {
    message(2, 1, 3, MessageBody::AppendEntriesResponse(body))
}

// Reference: Raft §5.3 and dissertation §5.3 (fast backtracking) — a
// follower refuses an AppendEntries whose previous entry has another term
// and tells the leader that term and the first index it holds of it.
#[test]
fn rejection_carries_the_conflicting_term_and_its_first_index() {
    let mut follower = fresh(config(2));
    follower.step(append(
        1,
        1,
        vec![entry(2, 2, "a"), entry(3, 2, "b"), entry(4, 2, "c")],
        0,
    ));
    persist(&mut follower);
    follower.step(append(4, 3, vec![entry(5, 3, "d")], 0));
    let ready = follower.ready();
    let hint = ConflictHint {
        conflict_term: Some(2),
        first_index: 2,
    };
    assert_eq!(
        ready.messages_after_persist,
        vec![response(AppendEntriesResponse::Rejected {
            rejected_prev_index: 4,
            hint
        })]
    );
    // A log that is too short answers with its end.
    follower.step(append(9, 3, vec![], 0));
    let hint = ConflictHint {
        conflict_term: None,
        first_index: 5,
    };
    assert_eq!(
        follower.ready().messages_after_persist,
        vec![response(AppendEntriesResponse::Rejected {
            rejected_prev_index: 9,
            hint
        })]
    );
}

// Reference: Raft §5.3 — conflicting entries are truncated and replaced;
// the runtime is told by a batch starting at or below its last index.
#[test]
fn conflicting_suffix_is_replaced() {
    let mut follower = fresh(config(2));
    follower.step(append(1, 1, vec![entry(2, 2, "a"), entry(3, 2, "b")], 0));
    persist(&mut follower);
    follower.step(append(1, 1, vec![entry(2, 3, "x")], 2));
    let ready = persist(&mut follower);
    assert_eq!(ready.entries, vec![entry(2, 3, "x")]);
    assert_eq!(
        ready.messages_after_persist,
        vec![response(AppendEntriesResponse::Accepted { match_index: 2 })]
    );
    // Committed entries are handed out only once durable: entry 2 was
    // not yet when the batch was drained.
    let committed: Vec<LogIndex> = ready
        .committed_entries
        .iter()
        .map(|entry| entry.index)
        .collect();
    assert_eq!(committed, vec![1]);
    assert_eq!(
        follower
            .ready()
            .committed_entries
            .last()
            .map(|entry| entry.index),
        Some(2)
    );
}

// Reference: Raft §5.4.2 — nothing is acknowledged before it is durable on
// a majority: the leader counts itself only after `persisted`.
#[test]
fn leader_counts_its_own_entry_only_once_durable() {
    let mut core = leader();
    core.propose(vec![b"v".to_vec()]).expect("leader accepts");
    let ready = core.ready();
    assert_eq!(ready.entries, vec![entry(3, 2, "v")]);
    accept(&mut core, 2, 1);
    accept(&mut core, 3, 3);
    assert_eq!(core.commit_index(), 2, "only one durable copy of entry 3");
    core.persisted(3, 2);
    assert_eq!(core.commit_index(), 3);
}

// Reference: dissertation §10.2.1 (batching and pipelining) — entries are
// batched up to the per-message bound, and at most `max_inflight_appends`
// messages are outstanding per follower.
#[test]
fn batches_are_bounded_and_pipelining_stops_at_the_inflight_limit() {
    let mut core = leader();
    core.shared.config.max_entries_per_message = 2;
    core.shared.config.max_inflight_appends = 2;
    let commands: Vec<Vec<u8>> = (0..7).map(|n| vec![b'a' + n]).collect();
    core.propose(commands).expect("leader accepts");
    let ready = persist(&mut core);
    let to_node2: Vec<(LogIndex, usize)> = ready
        .messages
        .iter()
        .filter(|message| message.to == NodeId(2))
        .filter_map(|message| match &message.body {
            MessageBody::AppendEntries(request) => {
                Some((request.prev_log_index, request.entries.len()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(to_node2, vec![(2, 2), (4, 2)]);
    accept(&mut core, 2, 4);
    let next: Vec<(LogIndex, usize)> = core
        .ready()
        .messages
        .iter()
        .filter(|message| message.to == NodeId(2))
        .filter_map(|message| match &message.body {
            MessageBody::AppendEntries(request) => {
                Some((request.prev_log_index, request.entries.len()))
            }
            _ => None,
        })
        .collect();
    // One slot freed: one more batch; entry 9 waits for the next answer.
    assert_eq!(next, vec![(6, 2)]);
}

// Reference: dissertation §4.2.2, §4.1 — one change at a time, and only
// after the leader committed an entry of its term.
#[test]
fn membership_changes_one_at_a_time() {
    let mut core = leader();
    let index = core
        .change_membership(MembershipChange::AddLearner {
            node: NodeId(4),
            address: String::new(),
        })
        .expect("first change accepted");
    assert_eq!(index, 3);
    assert_eq!(core.membership().learners, voters(&[4]));
    assert_eq!(
        core.change_membership(MembershipChange::RemoveNode(NodeId(3))),
        Err(MembershipError::ChangeInProgress(3))
    );
    persist(&mut core);
    accept(&mut core, 2, 3);
    assert_eq!(
        core.change_membership(MembershipChange::PromoteLearner(NodeId(4))),
        Err(MembershipError::LearnerBehind {
            node: NodeId(4),
            match_index: 0,
            commit: 3
        })
    );
}

#[test]
fn messages_round_trip_through_postcard_and_name_their_rpc() {
    let original = append(1, 1, vec![entry(2, 2, "a")], 1);
    let bytes = postcard::to_allocvec(&original).expect("encodes");
    let decoded: Message = postcard::from_bytes(&bytes).expect("decodes");
    assert_eq!(decoded, original);
    assert_eq!(decoded.rpc_name(), "AppendEntries");
    assert!(postcard::from_bytes::<Message>(&bytes[..bytes.len() - 1]).is_err());
}

// Never panic on, or be corrupted by, data from the network: an
// AppendEntries with a gap, or entries of a term above the message's, is
// dropped without a trace in the log.
#[test]
fn malformed_append_entries_are_dropped() {
    let mut follower = fresh(config(2));
    let gap = append(1, 1, vec![entry(3, 3, "gap")], 0);
    let future_term = append(1, 1, vec![entry(2, 9, "future")], 0);
    let overflow = append(u64::MAX, 1, vec![entry(0, 3, "wrap")], 0);
    for message in [gap, future_term, overflow] {
        assert!(!message.is_well_formed());
        follower.step(message);
        assert!(follower.ready().entries.is_empty());
    }
    assert_eq!(follower.status().last_log_index, 1);
}
