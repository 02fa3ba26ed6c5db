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

#[test]
fn alice_shares_with_bob_and_carol_cannot_read() {
    let mut node = Node::new();
    let alice = Keyring::derive("client:alice", &Passphrase::new("a".into()), FAST).expect("keys");
    let bob = Keyring::derive("client:bob", &Passphrase::new("b".into()), FAST).expect("keys");
    let (mut alice_session, mut bob_session) = (ClientSession::start(), ClientSession::start());
    let mut fields = SecretFields::default();
    fields.password = Some("s3cret".into());

    let publish = Request::PublishKey {
        public_key: bob.public_key(),
    };
    node.serve("client:bob", publish, &mut bob_session)
        .expect("published");
    let add = Request::AddSecret {
        name: "wifi".into(),
        sealed: alice.seal("wifi", &fields).expect("seal"),
        update: false,
    };
    node.serve("client:alice", add, &mut alice_session)
        .expect("added");

    // Alice looks up bob's key, unwraps her data key and wraps it for him.
    let lookup = Request::PublicKey {
        identity: "client:bob".into(),
    };
    let Ok(Response::PublicKey { public_key, .. }) =
        node.serve("client:alice", lookup, &mut alice_session)
    else {
        panic!("bob's key is published");
    };
    let own = Request::GetSecret {
        owner: None,
        name: "wifi".into(),
        stale: false,
    };
    let record = secret(node.serve("client:alice", own, &mut alice_session));
    let wrapped = alice
        .share("wifi", &record.sealed, "client:bob", public_key)
        .expect("share");
    let share = Request::Share {
        name: "wifi".into(),
        with: "client:bob".into(),
        wrapped_key: wrapped,
    };
    node.serve("client:alice", share, &mut alice_session)
        .expect("shared");

    let read = || Request::GetSecret {
        owner: Some("client:alice".into()),
        name: "wifi".into(),
        stale: false,
    };
    let record = secret(node.serve("client:bob", read(), &mut bob_session));
    assert_eq!(
        bob.open(&record).expect("bob decrypts").password.as_deref(),
        Some("s3cret")
    );

    let mut carol_session = ClientSession::start();
    let refused = node.serve("client:carol", read(), &mut carol_session);
    assert!(
        matches!(refused, Err(VaultError::PermissionDenied(_))),
        "{refused:?}"
    );

    let unshare = Request::Unshare {
        name: "wifi".into(),
        with: "client:bob".into(),
    };
    node.serve("client:alice", unshare, &mut alice_session)
        .expect("unshared");
    let refused = node.serve("client:bob", read(), &mut bob_session);
    assert!(
        matches!(refused, Err(VaultError::PermissionDenied(_))),
        "{refused:?}"
    );
}
