use super::*;
use proptest::prelude::*;

fn add(name: &str, bytes: usize) -> ClientRequest {
    ClientRequest {
        session: Some(ClientSession {
            client_id: 7,
            seq: 1,
        }),
        request: Request::AddSecret {
            name: name.into(),
            sealed: SealedSecret(vec![1; bytes]),
            update: false,
            version: 1,
        },
    }
}

#[test]
fn add_secret_becomes_a_command_owned_by_the_caller() {
    let plan = plan("client:alice", add("github", 10), 1234);
    let Ok(Plan::Propose(bytes)) = plan else {
        panic!("expected a proposal, got {plan:?}");
    };
    let command: VaultCommand = decode(&bytes).expect("our own encoding decodes");
    let VaultCommand::V1 {
        session,
        owner,
        proposed_at_ms,
        op,
    } = command;
    assert_eq!(owner, "client:alice");
    assert_eq!(proposed_at_ms, 1234);
    assert_eq!(
        session,
        Some(ClientSession {
            client_id: 7,
            seq: 1
        })
    );
    assert!(matches!(op, Operation::Put { ref name, update: false, .. } if name == "github"));
}

#[test]
fn invalid_input_is_refused_before_proposing() {
    let too_big = crate::validate::MAX_CIPHERTEXT_BYTES + 1;
    for request in [
        add("", 1),
        add("a\u{1}", 1),
        add("ok", too_big),
        add("ok", 0),
    ] {
        let result = plan("client:alice", request, 0);
        assert!(matches!(result, Err(VaultError::Invalid(_))), "{result:?}");
    }
    let self_share = ClientRequest {
        session: None,
        request: Request::Share {
            name: "x".into(),
            with: "client:alice".into(),
            wrapped_key: WrappedKey(vec![1]),
        },
    };
    assert!(matches!(
        plan("client:alice", self_share, 0),
        Err(VaultError::Invalid(_))
    ));
}

#[test]
fn admin_commands_refuse_client_identities() {
    for request in [Request::Status, Request::TransferLeader { to: None }] {
        let client_request = ClientRequest {
            session: None,
            request: request.clone(),
        };
        assert!(matches!(
            plan("client:alice", client_request.clone(), 0),
            Err(VaultError::PermissionDenied(_))
        ));
        assert_eq!(
            plan("admin:ops", client_request, 0),
            Ok(Plan::Runtime(request))
        );
    }
}

#[test]
fn reads_become_queries_for_the_caller() {
    let request = ClientRequest {
        session: None,
        request: Request::GetSecret {
            owner: Some("client:bob".into()),
            name: "wifi".into(),
            stale: true,
        },
    };
    let Ok(Plan::Read { query, stale }) = plan("client:alice", request, 0) else {
        panic!("expected a read");
    };
    assert!(stale);
    let query: VaultQuery = decode(&query).expect("our own encoding decodes");
    assert_eq!(
        query,
        VaultQuery::Secret {
            caller: "client:alice".into(),
            owner: Some("client:bob".into()),
            name: "wifi".into()
        }
    );
}

#[test]
fn debug_of_ciphertext_shows_only_its_length() {
    let text = format!("{:?}", add("n", 3));
    assert!(text.contains("SealedSecret(3 bytes)"), "{text}");
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = encode(&Request::Status);
    bytes.push(0);
    assert!(decode::<Request>(&bytes).is_err());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<ClientRequest>(&bytes);
        let _ = decode::<Reply>(&bytes);
        let _ = decode::<VaultCommand>(&bytes);
        let _ = decode::<VaultQuery>(&bytes);
    }

    #[test]
    fn requests_round_trip(name in "[a-z]{1,20}", sealed in proptest::collection::vec(any::<u8>(), 1..64),
                           update in any::<bool>(), client_id in any::<u64>(), seq in any::<u64>()) {
        let request = ClientRequest {
            session: Some(ClientSession { client_id, seq }),
            request: Request::AddSecret { name, sealed: SealedSecret(sealed), update, version: seq },
        };
        prop_assert_eq!(decode::<ClientRequest>(&encode(&request)).ok(), Some(request));
    }

    #[test]
    fn truncated_commands_are_errors(cut in 0usize..40) {
        let command = VaultCommand::V1 {
            session: Some(ClientSession { client_id: 1, seq: 2 }),
            owner: "client:alice".into(),
            proposed_at_ms: 99,
            op: Operation::Put { name: "name".into(), sealed: SealedSecret(vec![5; 8]), update: true, version: 2 },
        };
        let bytes = encode(&command);
        let cut = cut.min(bytes.len() - 1);
        prop_assert!(decode::<VaultCommand>(&bytes[..cut]).is_err());
    }
}

#[test]
fn sessions_number_requests_from_one() {
    let mut session = ClientSession::start();
    let first = session.next_request();
    let second = session.next_request();
    assert_eq!((first.seq, second.seq), (1, 2));
    assert_eq!(first.client_id, second.client_id);
}

#[test]
fn decision_commands_decode_as_decide() {
    let bytes = decision_command(
        None,
        "client:alice",
        "tx-1",
        "mail",
        3,
        Decision::Commit,
        &[NodeId(1), NodeId(2)],
        9,
    );
    let command: VaultCommand = decode(&bytes).expect("our own encoding decodes");
    let VaultCommand::V1 { owner, op, .. } = command;
    assert_eq!(owner, "client:alice");
    assert_eq!(
        op,
        Operation::Decide {
            tx: "tx-1".into(),
            name: "mail".into(),
            version: 3,
            decision: Decision::Commit,
            participants: vec![NodeId(1), NodeId(2)],
        }
    );
}
