//! Peer messages: order, both directions, reconnects, bounded queues.

use super::*;
use crate::transport::SendError;

pub(super) fn message(sequence: u64) -> PeerMessage {
    PeerMessage {
        sequence,
        body: format!("entry {sequence}"),
    }
}

#[tokio::test]
async fn peer_messages_flow_both_ways_in_order() {
    let pki = Pki::new();
    let (node1, mut inbox1) = start(&pki, config(1)).await;
    let (node2, mut inbox2) = start(&pki, config(2)).await;
    connect_pair(&node1, &node2);
    const COUNT: u64 = 500;
    for sequence in 0..COUNT {
        node1.send(NodeId(2), message(sequence)).unwrap();
        node2.send(NodeId(1), message(sequence + 10_000)).unwrap();
    }
    for sequence in 0..COUNT {
        let (from, received) = guard(inbox2.peer_messages.recv()).await.unwrap();
        assert_eq!((from, received), (NodeId(1), message(sequence)));
        let (from, received) = guard(inbox1.peer_messages.recv()).await.unwrap();
        assert_eq!((from, received), (NodeId(2), message(sequence + 10_000)));
    }
    assert_eq!(node1.dropped_messages(), 0);
    guard(node1.shutdown()).await;
    guard(node2.shutdown()).await;
}

#[tokio::test]
async fn peer_messages_resume_after_the_receiver_restarts() {
    let pki = Pki::new();
    let (node1, _inbox1) = start(&pki, config(1)).await;
    let node2_credentials = pki.node(2);
    let (node2, mut inbox2) = TestTransport::bind(config(2), &node2_credentials)
        .await
        .unwrap();
    let address = node2.local_address().unwrap();
    node1.add_peer(NodeId(2), address_of(&node2));
    node1.send(NodeId(2), message(1)).unwrap();
    assert_eq!(
        guard(inbox2.peer_messages.recv()).await.unwrap().1,
        message(1)
    );

    guard(node2.shutdown()).await;
    drop((node2, inbox2));
    let (node2, mut inbox2) =
        bind_again(&node2_credentials, TransportConfig::new(NodeId(2), address)).await;

    // Messages sent while the old connection dies may be lost, as Raft
    // allows; like Raft, keep sending until one arrives on the new node.
    let received = first_delivery(&node1, &mut inbox2.peer_messages).await;
    assert_eq!(received.0, NodeId(1));
    assert!(received.1.sequence >= 100);
    guard(node1.shutdown()).await;
    guard(node2.shutdown()).await;
}

/// Sends until one message reaches `inbox`, as Raft would retransmit.
pub(super) async fn first_delivery(
    sender: &TestTransport,
    inbox: &mut tokio::sync::mpsc::Receiver<(NodeId, PeerMessage)>,
) -> (NodeId, PeerMessage) {
    guard(async {
        let mut sequence = 100;
        loop {
            let _ = sender.send(NodeId(2), message(sequence));
            sequence += 1;
            let wait = tokio::time::timeout(Duration::from_millis(100), inbox.recv());
            if let Ok(Some(received)) = wait.await {
                return received;
            }
        }
    })
    .await
}

/// Starts node2 (patient settings) on a runtime of its own, lets `node1`
/// reach it with one message, then kills it by dropping that runtime:
/// no goodbye, like kill -9. Returns node2's credentials (the restarted
/// node has the same key, as it would from its key file) and address.
pub(super) fn crash_after_a_first_message(
    pki: &Pki,
    runtime: &tokio::runtime::Runtime,
    node1: &TestTransport,
) -> (Credentials, std::net::SocketAddr) {
    let doomed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let node2_credentials = pki.node(2);
    let (node2, mut inbox2) = doomed
        .block_on(TestTransport::bind(patient(2), &node2_credentials))
        .unwrap();
    let address = node2.local_address().unwrap();
    runtime.block_on(async {
        node1.add_peer(NodeId(2), PeerAddress::from_socket_address(address));
        node1.send(NodeId(2), message(1)).unwrap();
    });
    let first = doomed.block_on(guard(inbox2.peer_messages.recv()));
    assert_eq!(first, Some((NodeId(1), message(1))));
    drop(doomed);
    drop((node2, inbox2));
    (node2_credentials, address)
}

/// A crashed node says nothing to its peers; its restarted successor must
/// make them drop the dead connection (RFC 9000 §10.3, stateless reset)
/// rather than leave them writing into it until their idle timeout.
#[test]
fn peer_messages_resume_after_the_receiver_crashes_and_restarts() {
    let pki = Pki::new();
    let runtime = one_worker_runtime();
    // Idle timeouts (the smaller of both sides applies) far beyond the 30 s
    // hang guard: only a stateless reset can reveal the dead connection in
    // time.
    let (node1, _inbox1) = runtime.block_on(start(&pki, patient(1)));

    let (node2_credentials, address) = crash_after_a_first_message(&pki, &runtime, &node1);

    runtime.block_on(async {
        let mut restarted = patient(2);
        restarted.listen = address;
        let (node2, mut inbox2) = bind_again(&node2_credentials, restarted).await;
        let received = first_delivery(&node1, &mut inbox2.peer_messages).await;
        assert_eq!(received.0, NodeId(1));
        guard(node1.shutdown()).await;
        guard(node2.shutdown()).await;
    });
}

#[tokio::test]
async fn send_never_blocks_and_drops_when_the_queue_is_full() {
    let pki = Pki::new();
    let mut settings = config(1);
    settings.peer_queue = 4;
    let (node1, _inbox1) = start(&pki, settings).await;
    // Nothing answers QUIC on this socket, so the sender task never drains.
    let silent = std::net::UdpSocket::bind(loopback()).unwrap();
    node1.add_peer(
        NodeId(2),
        PeerAddress::from_socket_address(silent.local_addr().unwrap()),
    );
    let accepted = (0..100)
        .filter(|sequence| node1.send(NodeId(2), message(*sequence)).is_ok())
        .count() as u64;
    // The queue holds 4; the sender task may have taken one more.
    assert!((4..=5).contains(&accepted), "accepted {accepted}");
    assert_eq!(node1.dropped_messages(), 100 - accepted);
    assert_eq!(
        node1.send(NodeId(9), message(0)),
        Err(SendError::UnknownPeer(NodeId(9)))
    );
    guard(node1.shutdown()).await;
}

#[test]
fn endpoints_resolve_to_an_address_and_the_name_to_verify() {
    let resolved = PeerAddress::resolve("127.0.0.1:7001").unwrap();
    assert_eq!(resolved.address, "127.0.0.1:7001".parse().unwrap());
    assert_eq!(resolved.server_name, "127.0.0.1");
    let resolved = PeerAddress::resolve("[::1]:7002").unwrap();
    assert_eq!(resolved.address, "[::1]:7002".parse().unwrap());
    assert_eq!(resolved.server_name, "::1");
    let resolved = PeerAddress::resolve("localhost:7003").unwrap();
    assert_eq!(resolved.server_name, "localhost");
    assert_eq!(resolved.address.port(), 7003);
    for bad in [
        "",
        "127.0.0.1",
        "127.0.0.1:",
        ":7001",
        "127.0.0.1:99999",
        "host:port",
    ] {
        assert!(
            PeerAddress::resolve(bad).is_err(),
            "{bad:?} must be refused"
        );
    }
}

#[tokio::test]
async fn a_message_too_large_to_frame_is_dropped_and_the_stream_goes_on() {
    let pki = Pki::new();
    let mut settings = config(1);
    settings.max_peer_frame = 64;
    let (node1, _inbox1) = start(&pki, settings).await;
    let (node2, mut inbox2) = start(&pki, config(2)).await;
    connect_pair(&node1, &node2);
    let oversized = PeerMessage {
        sequence: 1,
        body: "x".repeat(200),
    };
    node1.send(NodeId(2), oversized).unwrap();
    node1.send(NodeId(2), message(2)).unwrap();
    // The sender handles its queue in order, so once message 2 has arrived
    // the oversized one has been dropped and counted.
    assert_eq!(
        guard(inbox2.peer_messages.recv()).await.unwrap(),
        (NodeId(1), message(2))
    );
    assert_eq!(node1.dropped_messages(), 1);
    guard(node1.shutdown()).await;
    guard(node2.shutdown()).await;
}
