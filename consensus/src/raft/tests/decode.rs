//! Property tests: whatever bytes arrive, decoding either fails cleanly or
//! yields a message the core handles without panicking.

use super::*;
use proptest::prelude::*;

fn samples() -> Vec<Vec<u8>> {
    let messages = [
        message(
            1,
            2,
            3,
            MessageBody::AppendEntries(AppendEntries {
                prev_log_index: 1,
                prev_log_term: 1,
                entries: vec![entry(2, 2, "a"), entry(3, 3, "b")],
                leader_commit: 2,
            }),
        ),
        message(
            1,
            2,
            3,
            MessageBody::InstallSnapshot(InstallSnapshot {
                meta: SnapshotMeta {
                    last_index: 5,
                    last_term: 2,
                    membership: Membership {
                        voters: voters(&[1, 2, 3]),
                        learners: voters(&[4]),
                        incarnations: Default::default(),
                        addresses: Default::default(),
                    },
                },
                total: 5,
                offset: 0,
                data: bytes::Bytes::from_static(b"state"),
            }),
        ),
        message(
            3,
            1,
            2,
            MessageBody::AppendEntriesResponse(AppendEntriesResponse::Rejected {
                rejected_prev_index: 1,
                hint: ConflictHint {
                    conflict_term: Some(1),
                    first_index: 1,
                },
            }),
        ),
    ];
    messages
        .iter()
        .map(|message| postcard::to_allocvec(message).expect("encodes"))
        .collect()
}

fn feed(bytes: &[u8]) {
    if let Ok(message) = postcard::from_bytes::<Message>(bytes) {
        let mut follower = fresh(config(2));
        let mut to_follower = message.clone();
        to_follower.to = NodeId(2);
        follower.step(to_follower);
        persist(&mut follower);
        let mut leader = leader();
        let mut to_leader = message;
        to_leader.to = NodeId(1);
        leader.step(to_leader);
        persist(&mut leader);
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        feed(&bytes);
    }

    #[test]
    fn corrupted_messages_never_panic(
        sample in 0usize..3,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = samples()[sample].clone();
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        feed(&bytes);
    }
}
