//! Requests: clients, node-to-node RPCs, forwarding, shutdown.

use super::*;
use crate::transport::{codes, TransportError};

#[tokio::test]
async fn client_requests_are_answered_with_the_verified_identity() {
    let pki = Pki::new();
    let (node1, inbox1) = start(&pki, config(1)).await;
    let _server = serve_echo(inbox1.requests);
    let alice = client(&pki.client("alice"), &node1).await;
    assert_eq!(alice.server_identity(), &Identity::Node("node1".into()));
    let response: TestResponse = guard(alice.request(&TestRequest::Echo("hi".into())))
        .await
        .unwrap();
    assert_eq!(response.text, "hi");
    assert_eq!(response.acting_for, "urn:vault:client:alice");
    assert_eq!((response.forwarded_by, response.calling_node), (None, None));

    // Concurrent requests on one connection each get their own answer.
    let alice = std::sync::Arc::new(alice);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..16 {
        let alice = alice.clone();
        tasks.spawn(async move {
            let response: TestResponse = alice
                .request(&TestRequest::Echo(index.to_string()))
                .await
                .unwrap();
            (index, response.text)
        });
    }
    let answers = guard(tasks.join_all()).await;
    assert_eq!(answers.len(), 16);
    for (index, text) in answers {
        assert_eq!(text, index.to_string());
    }

    let admin = client(&pki.user(Identity::admin("ops").unwrap()), &node1).await;
    let response: TestResponse = guard(admin.request(&TestRequest::Echo("status".into())))
        .await
        .unwrap();
    assert_eq!(response.acting_for, "urn:vault:admin:ops");
    guard(alice.close()).await;
    guard(node1.shutdown()).await;
}

#[tokio::test]
async fn nodes_make_requests_and_forward_for_clients() {
    let pki = Pki::new();
    let (node1, _inbox1) = start(&pki, config(1)).await;
    let (node2, inbox2) = start(&pki, config(2)).await;
    let _server = serve_echo(inbox2.requests);
    connect_pair(&node1, &node2);

    let vote = guard(node1.request(NodeId(2), &TestRequest::Echo("vote".into())))
        .await
        .unwrap();
    assert_eq!(vote.calling_node, Some(NodeId(1)));
    assert_eq!(vote.acting_for, "urn:vault:node:node1");

    let alice = Identity::client("alice").unwrap();
    let forwarded = guard(node1.forward(NodeId(2), &alice, &TestRequest::Echo("add".into())))
        .await
        .unwrap();
    assert_eq!(forwarded.acting_for, "urn:vault:client:alice");
    assert_eq!(forwarded.forwarded_by, Some(NodeId(1)));
    assert_eq!(
        forwarded.calling_node, None,
        "a forwarded request is not a node RPC"
    );

    let unknown = guard(node1.request(NodeId(7), &TestRequest::Ignore)).await;
    assert!(
        matches!(unknown, Err(TransportError::UnknownPeer(NodeId(7)))),
        "{unknown:?}"
    );
    guard(node1.shutdown()).await;
    guard(node2.shutdown()).await;
}

// A peer that hears nothing of the handshake (its address swallows every
// datagram, as a partitioned or deaf host does): the dial is abandoned
// after the handshake timeout instead of retransmitting with ever longer
// gaps until the connection's idle timeout, so the next attempt starts
// fresh.
#[tokio::test]
async fn a_dial_nobody_answers_gives_up_after_the_handshake_timeout() {
    let pki = Pki::new();
    let mut settings = config(1);
    settings.handshake_timeout = Duration::from_millis(300);
    settings.idle_timeout = Duration::from_secs(20);
    let (node1, _inbox1) = start(&pki, settings).await;
    let silent = std::net::UdpSocket::bind(loopback()).expect("a UDP socket");
    let address = silent.local_addr().expect("its address");
    node1.add_peer(NodeId(2), PeerAddress::from_socket_address(address));
    let result = guard(node1.request(NodeId(2), &TestRequest::Echo("vote".into()))).await;
    assert!(
        matches!(&result, Err(TransportError::Connect { reason, .. }) if reason.contains("handshake not finished")),
        "{result:?}"
    );
    drop(silent);
    guard(node1.shutdown()).await;
}

#[tokio::test]
async fn an_unanswered_request_is_reported_not_hung() {
    let pki = Pki::new();
    let (node1, inbox1) = start(&pki, config(1)).await;
    let _server = serve_echo(inbox1.requests);
    let alice = client(&pki.client("alice"), &node1).await;
    let result: Result<TestResponse, _> = guard(alice.request(&TestRequest::Ignore)).await;
    assert!(
        matches!(result, Err(TransportError::Refused(code)) if code == u64::from(codes::NO_RESPONSE)),
        "{result:?}"
    );
    guard(node1.shutdown()).await;
}

#[tokio::test]
async fn shutdown_completes_and_refuses_further_requests() {
    let pki = Pki::new();
    let (node1, inbox1) = start(&pki, config(1)).await;
    let _server = serve_echo(inbox1.requests);
    let alice = client(&pki.client("alice"), &node1).await;
    let _: TestResponse = guard(alice.request(&TestRequest::Echo("before".into())))
        .await
        .unwrap();
    guard(node1.shutdown()).await;
    let after: Result<TestResponse, _> =
        guard(alice.request(&TestRequest::Echo("after".into()))).await;
    assert!(after.is_err(), "{after:?}");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused() {
    let pki = Pki::new();
    let mut settings = config(1);
    settings.max_connections = 1;
    settings.reserved_node_connections = 0;
    let (node1, inbox1) = start(&pki, settings).await;
    let _server = serve_echo(inbox1.requests);
    let alice = client(&pki.client("alice"), &node1).await;
    let _: TestResponse = guard(alice.request(&TestRequest::Echo("first".into())))
        .await
        .unwrap();
    // alice's connection holds the only slot until it closes: bob is
    // refused before his handshake.
    let bob = guard(Client::connect(&pki.client("bob"), &address_of(&node1))).await;
    assert!(
        matches!(&bob, Err(TransportError::Connect { reason, .. }) if reason.contains("refused")),
        "{bob:?}"
    );
    let response: TestResponse = guard(alice.request(&TestRequest::Echo("still".into())))
        .await
        .unwrap();
    assert_eq!(response.text, "still");
    guard(node1.shutdown()).await;
}

/// The slots kept for nodes are no use to a client: once the shared slots
/// are taken, a client's connection is closed as busy after its handshake
/// (only then is its identity known), and a node still gets in.
#[tokio::test]
async fn clients_cannot_take_the_connection_slots_kept_for_nodes() {
    let pki = Pki::new();
    let mut settings = config(1);
    settings.max_connections = 1;
    settings.reserved_node_connections = 1;
    let (node1, inbox1) = start(&pki, settings).await;
    let _server = serve_echo(inbox1.requests);
    let (node2, _inbox2) = start(&pki, config(2)).await;
    connect_pair(&node1, &node2);
    let alice = client(&pki.client("alice"), &node1).await;
    let _: TestResponse = guard(alice.request(&TestRequest::Echo("first".into())))
        .await
        .unwrap();
    let bob = client(&pki.client("bob"), &node1).await;
    let refused: Result<TestResponse, _> =
        guard(bob.request(&TestRequest::Echo("bob".into()))).await;
    assert!(matches!(refused, Err(TransportError::Busy)), "{refused:?}");
    let vote = guard(node2.request(NodeId(1), &TestRequest::Echo("vote".into()))).await;
    assert_eq!(vote.unwrap().calling_node, Some(NodeId(2)));
    guard(node1.shutdown()).await;
    guard(node2.shutdown()).await;
}

#[tokio::test]
async fn no_request_exceeds_the_request_budget() {
    let pki = Pki::new();
    let mut settings = config(1);
    settings.max_request_bytes_in_flight = 500;
    let (node1, inbox1) = start(&pki, settings).await;
    let _server = serve_echo(inbox1.requests);
    let alice = client(&pki.client("alice"), &node1).await;
    // Within the 1 MiB client frame limit, but larger than the whole budget:
    // waiting for budget would wait forever, so it is refused.
    let big: Result<TestResponse, _> =
        guard(alice.request(&TestRequest::Echo("x".repeat(600)))).await;
    assert!(
        matches!(big, Err(TransportError::Refused(code)) if code == u64::from(codes::FRAME_TOO_LARGE)),
        "{big:?}"
    );
    // Requests within the budget pass, one after another, because each
    // returns its share when answered.
    for _ in 0..10 {
        let response: TestResponse = guard(alice.request(&TestRequest::Echo("y".repeat(400))))
            .await
            .unwrap();
        assert_eq!(response.text.len(), 400);
    }
    guard(node1.shutdown()).await;
}

/// A node RPC to a peer that crashed and restarted since the connection
/// was dialled is answered at the first attempt: the dead connection is
/// found out (stateless reset) and the request goes again on a new one.
/// Without that, the first 2PC vote to a restarted node was an abort.
#[test]
fn a_request_to_a_restarted_peer_is_answered_at_the_first_attempt() {
    let pki = Pki::new();
    let runtime = one_worker_runtime();
    let (node1, _inbox1) = runtime.block_on(start(&pki, patient(1)));
    // node2 runs on its own runtime, on its own thread, so that dropping
    // the runtime kills it without any goodbye, like kill -9.
    let doomed = one_worker_runtime();
    let node2_credentials = pki.node(2);
    let (node2, inbox2) = doomed.block_on(async {
        let (node2, inbox2) = TestTransport::bind(patient(2), &node2_credentials)
            .await
            .unwrap();
        (node2, serve_echo(inbox2.requests))
    });
    let address = node2.local_address().unwrap();
    runtime.block_on(async {
        node1.add_peer(NodeId(2), PeerAddress::from_socket_address(address));
        let before = guard(node1.request(NodeId(2), &TestRequest::Echo("before".into()))).await;
        assert_eq!(before.unwrap().text, "before");
    });
    drop(doomed);
    drop((node2, inbox2));

    runtime.block_on(async {
        let mut restarted = patient(2);
        restarted.listen = address;
        let (node2, inbox2) = bind_again(&node2_credentials, restarted).await;
        let _server = serve_echo(inbox2.requests);
        let after = guard(node1.request(NodeId(2), &TestRequest::Echo("after".into()))).await;
        assert_eq!(after.unwrap().text, "after");
        guard(node1.shutdown()).await;
        guard(node2.shutdown()).await;
    });
}
