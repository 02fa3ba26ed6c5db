//! The whole sharing story through the real parts: two keyrings, plan(),
//! the SQLite state machine, and decryption on the grantee's side.

use consensus::state_machine::{CommittedCommand, StateMachine};
use vault::crypto::{KdfParams, Keyring, Passphrase, SecretFields};
use vault::protocol::{
    decode, plan, ClientRequest, ClientSession, Plan, Reply, Request, Response, SecretRecord,
    VaultError,
};
use vault::store::VaultStateMachine;

const FAST: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

struct Node {
    _dir: tempfile::TempDir,
    machine: VaultStateMachine,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().expect("temporary directory");
        let machine = VaultStateMachine::open(&dir.path().join("vault.db")).expect("open");
        Node { _dir: dir, machine }
    }

    /// Serves one request from `identity` as a node would: plan, then
    /// propose-and-apply or query.
    fn serve(&mut self, identity: &str, request: Request, session: &mut ClientSession) -> Reply {
        let request = ClientRequest {
            session: Some(session.next_request()),
            request,
        };
        match plan(identity, request, 42)? {
            Plan::Propose(command) => {
                let index = self.machine.applied_index() + 1;
                let committed = [CommittedCommand {
                    index,
                    term: 1,
                    command: &command,
                }];
                let responses = self.machine.apply(&committed).expect("apply");
                decode(&responses[0]).expect("reply decodes")
            }
            Plan::Read { query, .. } => {
                decode(&self.machine.query(&query).expect("query")).expect("reply decodes")
            }
            Plan::Runtime(other) => panic!("not served by the state machine: {other:?}"),
        }
    }
}

fn secret(reply: Reply) -> SecretRecord {
    match reply {
        Ok(Response::Secret(record)) => record,
        other => panic!("expected a secret, got {other:?}"),
    }
}

fn grants(node: &mut Node, name: &str, session: &mut ClientSession) -> Vec<String> {
    let request = Request::Grants { name: name.into() };
    match node.serve("client:alice", request, session) {
        Ok(Response::Grants { grantees, .. }) => grantees,
        other => panic!("expected grants, got {other:?}"),
    }
}

#[test]
fn alice_shares_with_bob_and_carol_cannot_read() {
    let mut node = Node::new();
    let alice = Keyring::create("client:alice", &Passphrase::new("a".into()), FAST).expect("keys");
    let bob = Keyring::create("client:bob", &Passphrase::new("b".into()), FAST).expect("keys");
    let (mut alice_session, mut bob_session) = (ClientSession::start(), ClientSession::start());
    let mut fields = SecretFields::default();
    fields.password = Some("s3cret".into());

    for (who, keyring, session) in [
        ("client:alice", &alice, &mut alice_session),
        ("client:bob", &bob, &mut bob_session),
    ] {
        let publish = Request::PublishKey {
            record: keyring.record(),
            replace: false,
        };
        node.serve(who, publish, session).expect("published");
    }
    let add = Request::AddSecret {
        name: "wifi".into(),
        sealed: alice.seal("wifi", 1, &fields).expect("seal"),
        update: false,
        version: 1,
    };
    node.serve("client:alice", add, &mut alice_session)
        .expect("added");

    // Alice looks up bob's key, unwraps her data key and wraps it for him.
    let lookup = |identity: &str| Request::PublicKey {
        identity: identity.into(),
        stale: false,
    };
    let Ok(Response::PublicKey {
        record: bob_record, ..
    }) = node.serve("client:alice", lookup("client:bob"), &mut alice_session)
    else {
        panic!("bob's key is published");
    };
    let own = || Request::GetSecret {
        owner: None,
        name: "wifi".into(),
        stale: false,
    };
    let record = secret(node.serve("client:alice", own(), &mut alice_session));
    let wrapped = alice
        .share(&record, "client:bob", bob_record.public_key)
        .expect("share");
    let share = Request::Share {
        name: "wifi".into(),
        with: "client:bob".into(),
        wrapped_key: wrapped,
    };
    node.serve("client:alice", share, &mut alice_session)
        .expect("shared");
    assert_eq!(
        grants(&mut node, "wifi", &mut alice_session),
        vec!["client:bob".to_string()]
    );

    let read = || Request::GetSecret {
        owner: Some("client:alice".into()),
        name: "wifi".into(),
        stale: false,
    };
    let Ok(Response::PublicKey {
        record: alice_record,
        ..
    }) = node.serve("client:bob", lookup("client:alice"), &mut bob_session)
    else {
        panic!("alice's key is published");
    };
    let shared = secret(node.serve("client:bob", read(), &mut bob_session));
    assert_eq!(
        bob.open(&shared, Some(alice_record.public_key))
            .expect("bob decrypts")
            .password
            .as_deref(),
        Some("s3cret")
    );

    let mut carol_session = ClientSession::start();
    let refused = node.serve("client:carol", read(), &mut carol_session);
    assert!(
        matches!(refused, Err(VaultError::PermissionDenied(_))),
        "{refused:?}"
    );

    // Unshare re-keys: version 2 under a new data key, no grants left.
    let current = secret(node.serve("client:alice", own(), &mut alice_session));
    let unshare = Request::Unshare {
        name: "wifi".into(),
        with: "client:bob".into(),
        sealed: alice.rekey(&current).expect("rekey"),
        version: current.version + 1,
        grants: Vec::new(),
    };
    node.serve("client:alice", unshare, &mut alice_session)
        .expect("unshared");
    let refused = node.serve("client:bob", read(), &mut bob_session);
    assert!(
        matches!(refused, Err(VaultError::PermissionDenied(_))),
        "{refused:?}"
    );
    // Even served his old wrapped key by a node that kept it, bob cannot
    // open the new version.
    let rekeyed = secret(node.serve("client:alice", own(), &mut alice_session));
    assert_eq!(rekeyed.version, 2);
    let replayed = SecretRecord {
        wrapped_key: shared.wrapped_key.clone(),
        ..rekeyed
    };
    assert!(bob.open(&replayed, Some(alice_record.public_key)).is_err());
}
