//! Every trust decision of the transport, shown refusing; and bad frames
//! closing only their own stream.

use super::*;
use crate::transport::codec::{encode_frame, write_frame};
use crate::transport::wire::Hello;
use crate::transport::{codes, TransportError};
use std::sync::Arc;

/// Whether an error (its `Debug` text) is the connection closed by a TLS
/// alert, i.e. the handshake refused us, rather than some other failure.
fn refused_by_tls(debug: &str) -> bool {
    debug.contains("Code::crypto")
}

/// A request through a fresh connection fails because the node's TLS layer
/// refused the credentials (at the handshake, or right after it: in TLS 1.3
/// the client may finish before the server has checked its certificate).
async fn refused(credentials: &Credentials, node: &TestTransport) -> bool {
    let attempt = async {
        let client = Client::connect(credentials, &address_of(node)).await?;
        client
            .request::<_, TestResponse>(&TestRequest::Echo("let me in".into()))
            .await
    };
    match guard(attempt).await {
        Ok(_) => false,
        Err(error) => refused_by_tls(&format!("{error:?}")),
    }
}

/// The node still answers a legitimate client.
async fn still_serves(pki: &Pki, node: &TestTransport) {
    let alice = client(&pki.client("alice"), node).await;
    let response: TestResponse = guard(alice.request(&TestRequest::Echo("ok".into())))
        .await
        .unwrap();
    assert_eq!(response.text, "ok");
}

#[tokio::test]
async fn reject_missing_client_cert() {
    let pki = Pki::new();
    let (node1, inbox1) = start(&pki, config(1)).await;
    let _server = serve_echo(inbox1.requests);
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            rustls::pki_types::pem::PemObject::from_pem_slice(pki.ca.certificate_pem().as_bytes())
                .unwrap(),
        )
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![certs::ALPN_PROTOCOL.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client(loopback()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let attempt = async {
        let connection = endpoint
            .connect(node1.local_address().unwrap(), "127.0.0.1")?
            .await?;
        let (mut send, mut receive) = connection.open_bi().await?;
        write_frame(&mut send, &Hello::Request, 256).await?;
        let _ = send.finish();
        let mut byte = [0u8; 1];
        receive.read_exact(&mut byte).await?;
        Ok::<(), Box<dyn std::error::Error>>(())
    };
    let error = guard(attempt).await.expect_err("refused");
    assert!(refused_by_tls(&format!("{error:?}")), "{error:?}");
    still_serves(&pki, &node1).await;
    guard(node1.shutdown()).await;
}

#[tokio::test]
async fn reject_certificate_from_a_foreign_ca() {
    let pki = Pki::new();
    let foreign = Pki::new();
    let (node1, inbox1) = start(&pki, config(1)).await;
    let _server = serve_echo(inbox1.requests);
    // The intruders trust our CA (it is public) but their certificates are
    // from another one: a client, and a node trying to join the peers.
    let client = foreign
        .ca
        .issue_client(&Identity::client("alice").unwrap())
        .unwrap();
    let node = foreign
        .ca
        .issue_node("node2", &["127.0.0.1".into()])
        .unwrap();
    for issued in [client, node] {
        let intruder = Credentials::from_pem(
            pki.ca.certificate_pem(),
            &issued.certificate_pem,
            issued.key_pem(),
        )
        .unwrap();
        assert!(refused(&intruder, &node1).await, "{:?}", issued.identity);
    }
    still_serves(&pki, &node1).await;
    guard(node1.shutdown()).await;
}

/// Opens a peer stream on `client`'s connection with `hello`, sends one
/// message and leaves the stream open; returns the code the node stopped
/// it with.
async fn refused_peer_stream(client: &Client, hello: &Hello, message: &PeerMessage) -> u64 {
    let mut stream = client.connection().open_uni().await.unwrap();
    write_frame(&mut stream, hello, 256).await.unwrap();
    let _ = write_frame(&mut stream, message, 1 << 20).await;
    // Not finished: only a STOP_SENDING from the node ends this wait.
    let code = guard(stream.stopped()).await.unwrap();
    code.expect("stopped, not finished").into_inner()
}

/// Sends `message` on a new peer stream and finishes it; returns once the
/// node has received everything.
async fn accepted_peer_stream(client: &Client, hello: &Hello, message: &PeerMessage) {
    let mut stream = client.connection().open_uni().await.unwrap();
    write_frame(&mut stream, hello, 256).await.unwrap();
    write_frame(&mut stream, message, 1 << 20).await.unwrap();
    stream.finish().unwrap();
    assert_eq!(guard(stream.stopped()).await.unwrap(), None);
}

fn probe() -> PeerMessage {
    PeerMessage {
        sequence: 42,
        body: "append entries".into(),
    }
}

#[tokio::test]
async fn a_client_certificate_never_opens_a_peer_stream() {
    let pki = Pki::new();
    let (node1, mut inbox1) = start(&pki, config(1)).await;
    let alice = client(&pki.client("alice"), &node1).await;
    let admin = client(&pki.user(Identity::admin("ops").unwrap()), &node1).await;
    for user in [&alice, &admin] {
        let code = refused_peer_stream(user, &Hello::Peer { from: NodeId(2) }, &probe()).await;
        assert_eq!(code, u64::from(codes::UNAUTHORIZED));
    }
    // The refusal happens before any message frame is read.
    assert!(inbox1.peer_messages.try_recv().is_err());
    guard(node1.shutdown()).await;
}

#[tokio::test]
async fn a_node_certificate_cannot_claim_another_node_id() {
    let pki = Pki::new();
    let (node1, mut inbox1) = start(&pki, config(1)).await;
    let node2 = client(&pki.node(2), &node1).await;
    let code = refused_peer_stream(&node2, &Hello::Peer { from: NodeId(3) }, &probe()).await;
    assert_eq!(code, u64::from(codes::UNAUTHORIZED));
    assert!(inbox1.peer_messages.try_recv().is_err());
    // A unidirectional stream is for peer messages only.
    let code = refused_peer_stream(&node2, &Hello::Request, &probe()).await;
    assert_eq!(code, u64::from(codes::UNAUTHORIZED));
    // Claiming its own id works on the same connection.
    accepted_peer_stream(&node2, &Hello::Peer { from: NodeId(2) }, &probe()).await;
    assert_eq!(
        guard(inbox1.peer_messages.recv()).await.unwrap(),
        (NodeId(2), probe())
    );
    guard(node1.shutdown()).await;
}

#[tokio::test]
async fn only_nodes_forward_and_never_for_a_node() {
    let pki = Pki::new();
    let (node1, inbox1) = start(&pki, config(1)).await;
    let _server = serve_echo(inbox1.requests);
    let forward_for = |identity: &str| Hello::Forwarded {
        client: identity.to_string(),
    };
    let cases = [
        (pki.client("mallory"), forward_for("urn:vault:client:alice")),
        (pki.node(2), forward_for("urn:vault:node:node3")),
        (pki.node(2), forward_for("not a uri")),
        (pki.node(2), Hello::Peer { from: NodeId(2) }),
    ];
    for (credentials, hello) in cases {
        let caller = client(&credentials, &node1).await;
        let result = guard(crate::transport::request::round_trip::<_, TestResponse>(
            caller.connection(),
            &hello,
            &TestRequest::Echo("delete everything".into()),
            crate::transport::request::RequestLimits {
                request: 1024,
                response: 1024,
            },
        ))
        .await;
        assert!(
            matches!(result, Err(TransportError::Refused(code)) if code == u64::from(codes::UNAUTHORIZED)),
            "{hello:?}: {result:?}"
        );
    }
    guard(node1.shutdown()).await;
}

#[tokio::test]
async fn a_dialled_peer_must_be_the_node_expected() {
    let pki = Pki::new();
    let (node1, _inbox1) = start(&pki, config(1)).await;
    let (node3, inbox3) = start(&pki, config(3)).await;
    let _server = serve_echo(inbox3.requests);
    // node1 believes node2 lives where node3 actually listens.
    node1.add_peer(NodeId(2), address_of(&node3));
    let result = guard(node1.request(NodeId(2), &TestRequest::Echo("vote".into()))).await;
    assert!(
        matches!(result, Err(TransportError::WrongPeer { .. })),
        "{result:?}"
    );
    guard(node1.shutdown()).await;
    guard(node3.shutdown()).await;
}

#[tokio::test]
async fn bad_frames_close_their_stream_and_the_node_keeps_serving() {
    let pki = Pki::new();
    let mut settings = config(1);
    settings.max_client_frame = 1024;
    let (node1, mut inbox1) = start(&pki, settings).await;
    let _server = serve_echo(inbox1.requests);
    let node2 = client(&pki.node(2), &node1).await;
    let hello = encode_frame(&Hello::Peer { from: NodeId(2) }, 256).unwrap();

    let malformed = [0, 0, 0, 3, 0xff, 0xff, 0xff];
    let oversized = u32::MAX.to_be_bytes();
    for (bytes, expected) in [
        (&malformed[..], codes::MALFORMED_FRAME),
        (&oversized[..], codes::FRAME_TOO_LARGE),
    ] {
        let mut stream = node2.connection().open_uni().await.unwrap();
        stream.write_all(&hello).await.unwrap();
        stream.write_all(bytes).await.unwrap();
        // Left open: the node must stop it, not wait for more.
        let code = guard(stream.stopped()).await.unwrap();
        assert_eq!(
            code.map(|code| code.into_inner()),
            Some(u64::from(expected)),
            "{bytes:?}"
        );
    }
    // The same connection still carries a good peer stream...
    accepted_peer_stream(&node2, &Hello::Peer { from: NodeId(2) }, &probe()).await;
    assert_eq!(
        guard(inbox1.peer_messages.recv()).await.unwrap(),
        (NodeId(2), probe())
    );

    // ...an oversized client request is refused on its stream only...
    let alice = client(&pki.client("alice"), &node1).await;
    let big: Result<TestResponse, _> =
        guard(alice.request(&TestRequest::Echo("x".repeat(2000)))).await;
    assert!(
        matches!(big, Err(TransportError::Refused(code)) if code == u64::from(codes::FRAME_TOO_LARGE)),
        "{big:?}"
    );
    // ...and the node keeps answering everyone.
    let response: TestResponse = guard(alice.request(&TestRequest::Echo("small".into())))
        .await
        .unwrap();
    assert_eq!(response.text, "small");
    guard(node1.shutdown()).await;
}

/// SPEC §13, trust follows membership: a node certificate the CA signed is
/// refused once its node id is not trusted, an open connection from it is
/// closed when it stops being trusted, and trusted nodes and clients are
/// served throughout.
#[tokio::test]
async fn a_node_outside_the_trusted_set_is_refused_and_cut_off() {
    let pki = Pki::new();
    let (node1, mut inbox1) = start(&pki, config(1)).await;
    let (node2, _inbox2) = start(&pki, config(2)).await;
    let (node3, _inbox3) = start(&pki, config(3)).await;
    node2.add_peer(NodeId(1), address_of(&node1));
    node3.add_peer(NodeId(1), address_of(&node1));
    let message = |sequence| PeerMessage {
        sequence,
        body: "append".into(),
    };

    // Both trusted: node1 hears both.
    node1.set_trusted_nodes(Some([NodeId(2), NodeId(3)].into()));
    node2.send(NodeId(1), message(1)).unwrap();
    node3.send(NodeId(1), message(2)).unwrap();
    let mut heard = std::collections::BTreeSet::new();
    while heard.len() < 2 {
        let (from, _) = guard(inbox1.peer_messages.recv()).await.unwrap();
        heard.insert(from);
    }

    // node3 is removed: its open connection is closed and nothing it sends
    // arrives any more, however long it keeps trying; node2 still gets in.
    node1.set_trusted_nodes(Some([NodeId(2)].into()));
    for sequence in 10..40 {
        let _ = node3.send(NodeId(1), message(sequence));
        let _ = node2.send(NodeId(1), message(sequence));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut from_node2 = 0;
    while let Ok(Some((from, received))) =
        tokio::time::timeout(Duration::from_millis(500), inbox1.peer_messages.recv()).await
    {
        if received.sequence >= 10 {
            assert_eq!(from, NodeId(2), "a removed node's message got through");
            from_node2 += 1;
        }
    }
    assert!(from_node2 > 0, "the trusted node must still be heard");
    // Its requests are refused too; a client is still served.
    let _server = serve_echo(inbox1.requests);
    node3.add_peer(NodeId(1), address_of(&node1));
    let request = node3
        .request(NodeId(1), &TestRequest::Echo("let me in".into()))
        .await;
    assert!(request.is_err(), "a removed node's request was served");
    still_serves(&pki, &node1).await;

    // Trusting every node again (the default) lets it back in.
    node1.set_trusted_nodes(None);
    let response = guard(node3.request(NodeId(1), &TestRequest::Echo("back".into())))
        .await
        .expect("served again");
    assert_eq!(response.text, "back");
    for node in [node1, node2, node3] {
        guard(node.shutdown()).await;
    }
}
