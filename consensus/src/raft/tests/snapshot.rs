//! InstallSnapshot streaming (Raft §7): the leader's window of chunks in
//! flight, go-back-N after a loss, the heartbeat timeout, the restart on a
//! newer snapshot; the follower's assembly of duplicated, reordered and
//! dropped chunks. Snapshots of 10 bytes in chunks of 2, three in flight.

use super::*;
use bytes::Bytes;

const DATA: &[u8] = b"0123456789";

/// Node 1 leading term 2 with a snapshot through index 3 (`DATA`), and
/// node 3 just found to be behind it: the first window is in the returned
/// messages.
fn streaming_leader() -> (RaftCore, SnapshotMeta, Vec<Message>) {
    let mut core = leader();
    core.shared.config.snapshot_chunk_bytes = 2;
    core.shared.config.max_inflight_snapshot_chunks = 3;
    core.propose(vec![b"a".to_vec()]).expect("leader accepts");
    persist(&mut core);
    accept(&mut core, 2, 3);
    persist(&mut core);
    let meta = core.snapshot_meta(3).expect("entry 3 is held");
    core.snapshot_taken(meta.clone(), DATA.to_vec())
        .expect("snapshot fits");
    core.ready();
    core.step(rejection_from_3());
    let first = core.ready().messages;
    (core, meta, first)
}

/// Node 3's log ends before entry 1: everything it needs is compacted.
fn rejection_from_3() -> Message {
    message(
        3,
        1,
        2,
        MessageBody::AppendEntriesResponse(AppendEntriesResponse::Rejected {
            rejected_prev_index: 1,
            hint: ConflictHint {
                conflict_term: None,
                first_index: 1,
            },
        }),
    )
}

fn chunk_of(meta: &SnapshotMeta, data: &'static [u8], start: usize, end: usize) -> Message {
    message(
        1,
        3,
        2,
        MessageBody::InstallSnapshot(InstallSnapshot {
            meta: meta.clone(),
            total: data.len() as u64,
            offset: start as u64,
            data: Bytes::from_static(&data[start..end]),
        }),
    )
}

fn chunks(meta: &SnapshotMeta, ranges: &[(usize, usize)]) -> Vec<Message> {
    ranges
        .iter()
        .map(|&(start, end)| chunk_of(meta, DATA, start, end))
        .collect()
}

fn answer(next_offset: u64, gap: bool, done: bool) -> InstallSnapshotResponse {
    InstallSnapshotResponse {
        snapshot_index: 3,
        next_offset,
        gap,
        done,
    }
}

fn from_3(response: InstallSnapshotResponse) -> Message {
    message(3, 1, 2, MessageBody::InstallSnapshotResponse(response))
}

fn snapshot_chunks(messages: Vec<Message>) -> Vec<Message> {
    messages
        .into_iter()
        .filter(|message| matches!(message.body, MessageBody::InstallSnapshot(_)))
        .collect()
}

// Reference: Raft §7 — the leader streams the snapshot ahead of the
// answers, up to the window, and each answer moves the window.
#[test]
fn leader_keeps_a_window_of_chunks_in_flight() {
    let (mut core, meta, first) = streaming_leader();
    assert_eq!(first, chunks(&meta, &[(0, 2), (2, 4), (4, 6)]));
    core.step(from_3(answer(2, false, false)));
    assert_eq!(core.ready().messages, chunks(&meta, &[(6, 8)]));
    // Answers are cumulative: one for the chunk at 4 covers the one at 2.
    core.step(from_3(answer(6, false, false)));
    assert_eq!(core.ready().messages, chunks(&meta, &[(8, 10)]));
    assert_eq!(
        core.status().followers[&NodeId(3)].snapshot,
        Some(SnapshotTransfer {
            index: 3,
            bytes: 6,
            total: 10
        })
    );
    // Everything is sent: later answers only move the acknowledged offset.
    core.step(from_3(answer(8, false, false)));
    assert!(core.ready().messages.is_empty());
    core.step(from_3(answer(0, false, true)));
    let status = core.status().followers[&NodeId(3)];
    assert_eq!(status.state, ReplicationState::Replicate);
    assert_eq!(status.snapshot, None);
    assert_eq!(status.match_index, 3);
}

/// The leader does not copy the snapshot for each chunk: every chunk's
/// bytes are a view into the one buffer the leader holds (pointer
/// equality), across windows and the resend after a loss.
#[test]
fn chunks_are_slices_of_the_leaders_one_snapshot_buffer() {
    let (mut core, _, first) = streaming_leader();
    let held = core
        .shared
        .log
        .snapshot()
        .map(|snapshot| snapshot.data.clone());
    let held = held.expect("the leader holds its snapshot");
    core.step(from_3(answer(2, false, false)));
    let more = core.ready().messages;
    core.step(from_3(answer(2, true, false)));
    let resent = core.ready().messages;
    let sent = snapshot_chunks([first, more, resent].concat());
    assert!(sent.len() >= 5, "{sent:?}");
    for message in sent {
        let MessageBody::InstallSnapshot(chunk) = message.body else {
            unreachable!("filtered to InstallSnapshot");
        };
        let offset = chunk.offset as usize;
        let expected = held[offset..].as_ptr();
        assert_eq!(
            chunk.data.as_ptr(),
            expected,
            "the chunk at {offset} is a copy, not a slice of the held snapshot"
        );
    }
}

// Reference: Raft §7 — a lost chunk: the follower reports the gap at the
// first chunk behind it, the leader goes back once and resends from there;
// the reports of the same gap by the chunks after it change nothing.
#[test]
fn leader_goes_back_n_after_a_lost_chunk() {
    let (mut core, meta, _) = streaming_leader();
    core.step(from_3(answer(2, false, false)));
    assert_eq!(core.ready().messages, chunks(&meta, &[(6, 8)]));
    // The chunk at 2 was lost; the ones at 4 and 6 arrive and are refused.
    core.step(from_3(answer(2, true, false)));
    assert_eq!(
        core.ready().messages,
        chunks(&meta, &[(2, 4), (4, 6), (6, 8)])
    );
    core.step(from_3(answer(2, true, false)));
    assert!(core.ready().messages.is_empty());
    // The resent chunks arrive in order.
    core.step(from_3(answer(4, false, false)));
    assert_eq!(core.ready().messages, chunks(&meta, &[(8, 10)]));
}

// A follower that lost what it held (it restarted) answers a chunk from the
// middle with "from 0": the leader believes it, below the acknowledgement.
#[test]
fn leader_starts_over_when_the_follower_lost_what_it_held() {
    let (mut core, meta, _) = streaming_leader();
    core.step(from_3(answer(6, false, false)));
    assert_eq!(core.ready().messages, chunks(&meta, &[(6, 8), (8, 10)]));
    core.step(from_3(answer(0, true, false)));
    assert_eq!(
        core.ready().messages,
        chunks(&meta, &[(0, 2), (2, 4), (4, 6)])
    );
    // A late acknowledgement from before the loss changes nothing.
    core.step(from_3(answer(4, false, false)));
    assert_eq!(core.ready().messages, chunks(&meta, &[(6, 8), (8, 10)]));
}

// When every answer stops (the chunks in flight were lost) but the follower
// answers heartbeats, the leader resends the window from the acknowledged
// offset after an election timeout's worth of heartbeats, once.
#[test]
fn stalled_stream_is_resent_after_an_election_timeout_of_heartbeats() {
    let (mut core, meta, _) = streaming_leader();
    core.shared.config.check_quorum = false;
    core.step(from_3(answer(2, false, false)));
    core.ready();
    let heartbeat_answer = message(
        3,
        1,
        2,
        MessageBody::HeartbeatResponse(HeartbeatResponse { read_round: 0 }),
    );
    // election_ticks_min 10 / heartbeat_ticks 2: five heartbeats.
    for _ in 0..4 * core.shared.config.heartbeat_ticks {
        core.tick();
    }
    core.step(heartbeat_answer.clone());
    assert_eq!(snapshot_chunks(core.ready().messages), Vec::new());
    for _ in 0..core.shared.config.heartbeat_ticks {
        core.tick();
    }
    core.step(heartbeat_answer.clone());
    assert_eq!(
        snapshot_chunks(core.ready().messages),
        chunks(&meta, &[(2, 4), (4, 6), (6, 8)])
    );
    // Late answers to the heartbeats sent meanwhile do not resend again.
    core.step(heartbeat_answer.clone());
    core.step(heartbeat_answer);
    assert_eq!(snapshot_chunks(core.ready().messages), Vec::new());
}

// Late rejections of appends sent before the snapshot started (a follower
// back from a long absence answers a backlog of them) leave the stream
// alone instead of restarting it once each.
#[test]
fn late_rejections_do_not_restart_the_stream() {
    let (mut core, meta, _) = streaming_leader();
    core.step(from_3(answer(4, false, false)));
    assert_eq!(core.ready().messages, chunks(&meta, &[(6, 8), (8, 10)]));
    core.step(rejection_from_3());
    core.step(rejection_from_3());
    assert!(core.ready().messages.is_empty());
    assert_eq!(
        core.status().followers[&NodeId(3)].snapshot,
        Some(SnapshotTransfer {
            index: 3,
            bytes: 4,
            total: 10
        })
    );
}

// Reference: Raft §7 — the leader compacted again while streaming: the next
// answer about the old snapshot restarts the stream with the new one.
#[test]
fn stream_restarts_with_a_newer_snapshot() {
    const NEWER: &[u8] = b"abcdefgh";
    let (mut core, _, _) = streaming_leader();
    core.propose(vec![b"b".to_vec()]).expect("leader accepts");
    persist(&mut core);
    accept(&mut core, 2, 4);
    persist(&mut core);
    let newer = core.snapshot_meta(4).expect("entry 4 is held");
    core.snapshot_taken(newer.clone(), NEWER.to_vec())
        .expect("snapshot fits");
    core.ready();
    core.step(from_3(answer(2, false, false)));
    let expected: Vec<Message> = [(0, 2), (2, 4), (4, 6)]
        .iter()
        .map(|&(start, end)| chunk_of(&newer, NEWER, start, end))
        .collect();
    assert_eq!(core.ready().messages, expected);
    let status = core.status().followers[&NodeId(3)];
    assert_eq!(
        status.snapshot,
        Some(SnapshotTransfer {
            index: 4,
            bytes: 0,
            total: 8
        })
    );
    // The follower's answers about the old snapshot no longer count.
    core.step(from_3(answer(6, false, false)));
    assert!(core.ready().messages.is_empty());
}

/// Node 2, a follower of term 1 that will hear from leader 1 in term 2.
fn receiver() -> RaftCore {
    fresh(config(2))
}

fn to_2(from: u64, term: Term, meta: &SnapshotMeta, start: usize, end: usize) -> Message {
    let mut chunk = chunk_of(meta, DATA, start, end);
    chunk.from = NodeId(from);
    chunk.to = NodeId(2);
    chunk.term = term;
    chunk
}

fn receiver_meta() -> SnapshotMeta {
    SnapshotMeta {
        last_index: 5,
        last_term: 2,
        membership: Membership::with_voters([1, 2, 3].map(NodeId)),
    }
}

/// The answers a follower sent (after persisting), as (next, gap, done).
fn answers(ready: &Ready) -> Vec<(u64, bool, bool)> {
    ready
        .messages_after_persist
        .iter()
        .filter_map(|message| match &message.body {
            MessageBody::InstallSnapshotResponse(response) => {
                Some((response.next_offset, response.gap, response.done))
            }
            _ => None,
        })
        .collect()
}

// Reference: Raft §7 — chunks duplicated, reordered and dropped on the way:
// the follower keeps only the chunk that continues what it holds, says
// where it stands after every chunk, and installs exactly the leader's
// bytes after the last one.
#[test]
fn follower_assembles_duplicated_reordered_and_dropped_chunks() {
    let meta = receiver_meta();
    let mut core = receiver();
    let mut outcomes = Vec::new();
    let mut reports = Vec::new();
    for (start, end) in [
        (0, 2),
        (0, 2),
        (4, 6),
        (2, 4),
        (2, 4),
        (6, 8),
        (4, 6),
        (6, 8),
    ] {
        core.step(to_2(1, 2, &meta, start, end));
        let ready = persist(&mut core);
        assert_eq!(ready.snapshot, None);
        outcomes.extend(answers(&ready));
        reports.extend(ready.snapshot_progress.map(|report| report.bytes));
    }
    assert_eq!(
        outcomes,
        vec![
            (2, false, false),
            (2, false, false),
            (2, true, false),
            (4, false, false),
            (4, false, false),
            (4, true, false),
            (6, false, false),
            (8, false, false),
        ]
    );
    // Reported when it started, then at each new tenth.
    assert_eq!(reports, vec![2, 4, 6, 8]);
    core.step(to_2(1, 2, &meta, 8, 10));
    let ready = persist(&mut core);
    let installed = ready.snapshot.clone().expect("the whole snapshot arrived");
    assert_eq!(installed.meta, meta);
    assert_eq!(&installed.data[..], DATA);
    assert_eq!(answers(&ready), vec![(0, false, true)]);
    assert_eq!(
        ready.snapshot_progress,
        Some(SnapshotTransfer {
            index: 5,
            bytes: 10,
            total: 10
        })
    );
    // A late duplicate after the install: it is all committed here.
    core.step(to_2(1, 2, &meta, 4, 6));
    assert_eq!(answers(&persist(&mut core)), vec![(0, false, true)]);
}

// Bytes of another leader's snapshot are never mixed in, even with the same
// metadata (each node serialises its own state machine): a new leader's
// chunk from the middle is answered with "from 0", its first chunk starts
// the assembly over.
#[test]
fn follower_starts_over_for_a_new_leader() {
    let meta = receiver_meta();
    let mut core = receiver();
    core.step(to_2(1, 2, &meta, 0, 2));
    core.step(to_2(1, 2, &meta, 2, 4));
    assert_eq!(
        answers(&persist(&mut core)),
        vec![(2, false, false), (4, false, false)]
    );
    core.step(to_2(3, 3, &meta, 4, 6));
    assert_eq!(answers(&persist(&mut core)), vec![(0, true, false)]);
    core.step(to_2(3, 3, &meta, 0, 2));
    assert_eq!(answers(&persist(&mut core)), vec![(2, false, false)]);
}

// Never trust the network with the arithmetic: a chunk that would end
// beyond the size it announces is dropped unanswered.
#[test]
fn chunk_beyond_its_announced_size_is_dropped() {
    let meta = receiver_meta();
    let mut core = receiver();
    let mut chunk = to_2(1, 2, &meta, 8, 10);
    if let MessageBody::InstallSnapshot(install) = &mut chunk.body {
        install.total = 9;
    }
    assert!(!chunk.is_well_formed());
    core.step(chunk);
    assert_eq!(answers(&persist(&mut core)), Vec::new());
    let mut overflow = to_2(1, 2, &meta, 0, 2);
    if let MessageBody::InstallSnapshot(install) = &mut overflow.body {
        install.offset = u64::MAX;
        install.total = u64::MAX;
    }
    assert!(!overflow.is_well_formed());
}
