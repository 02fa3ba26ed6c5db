//! One connection per pair of nodes: both directions, peer messages and
//! requests alike, share it, whichever side dialled.

use super::peers::{crash_after_a_first_message, first_delivery, message};
use super::*;

type Messages = tokio::sync::mpsc::Receiver<(NodeId, PeerMessage)>;

/// Waits (bounded by the hang guard) until `node` holds exactly one
/// connection: a superseded one takes a few round trips to drain.
async fn settles_on_one_connection(node: &TestTransport) {
    guard(async {
        while node.open_connections() != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Sends one message each way and one request each way.
async fn exchange(
    node1: &TestTransport,
    inbox1: &mut Messages,
    node2: &TestTransport,
    inbox2: &mut Messages,
    sequence: u64,
) {
    node1.send(NodeId(2), message(sequence)).unwrap();
    node2.send(NodeId(1), message(sequence + 1)).unwrap();
    assert_eq!(
        guard(inbox2.recv()).await,
        Some((NodeId(1), message(sequence)))
    );
    assert_eq!(
        guard(inbox1.recv()).await,
        Some((NodeId(2), message(sequence + 1)))
    );
    let text = format!("request {sequence}");
    let answer = guard(node1.request(NodeId(2), &TestRequest::Echo(text.clone()))).await;
    assert_eq!(answer.unwrap().calling_node, Some(NodeId(1)));
    let answer = guard(node2.request(NodeId(1), &TestRequest::Echo(text))).await;
    assert_eq!(answer.unwrap().calling_node, Some(NodeId(2)));
}

/// Answers the node's requests; returns its peer messages.
fn serve(inbox: TestInbox) -> Messages {
    drop(serve_echo(inbox.requests));
    inbox.peer_messages
}

#[tokio::test]
async fn the_connection_the_first_sender_dialled_carries_both_directions() {
    let pki = Pki::new();
    let (node1, inbox1) = start(&pki, config(1)).await;
    let (node2, inbox2) = start(&pki, config(2)).await;
    let (mut inbox1, mut inbox2) = (serve(inbox1), serve(inbox2));
    connect_pair(&node1, &node2);
    // The higher id dials here, so nothing favours its connection but
    // having been first.
    node2.send(NodeId(1), message(0)).unwrap();
    assert_eq!(guard(inbox1.recv()).await, Some((NodeId(2), message(0))));
    for round in 1..=3 {
        exchange(&node1, &mut inbox1, &node2, &mut inbox2, round * 10).await;
    }
    assert_eq!(node1.open_connections(), 1);
    assert_eq!(node2.open_connections(), 1);
    guard(node1.shutdown()).await;
    guard(node2.shutdown()).await;
}

#[tokio::test]
async fn a_pair_that_dials_at_once_settles_on_one_connection() {
    let pki = Pki::new();
    for attempt in 0..5 {
        let (node1, inbox1) = start(&pki, config(1)).await;
        let (node2, inbox2) = start(&pki, config(2)).await;
        let (mut inbox1, mut inbox2) = (serve(inbox1), serve(inbox2));
        connect_pair(&node1, &node2);
        // Both dial before either hears the other.
        let (one, two) = (
            TestRequest::Echo("one".into()),
            TestRequest::Echo("two".into()),
        );
        let (one, two) = guard(async {
            tokio::join!(
                node1.request(NodeId(2), &one),
                node2.request(NodeId(1), &two)
            )
        })
        .await;
        assert_eq!(one.unwrap().text, "one", "attempt {attempt}");
        assert_eq!(two.unwrap().text, "two", "attempt {attempt}");
        // Peer streams are what hand a connection over; keep talking until
        // the superseded connection has drained away.
        exchange(&node1, &mut inbox1, &node2, &mut inbox2, 100).await;
        settles_on_one_connection(&node1).await;
        settles_on_one_connection(&node2).await;
        exchange(&node1, &mut inbox1, &node2, &mut inbox2, 200).await;
        assert_eq!(node1.open_connections(), 1, "attempt {attempt}");
        assert_eq!(node2.open_connections(), 1, "attempt {attempt}");
        guard(node1.shutdown()).await;
        guard(node2.shutdown()).await;
    }
}

/// A node that crashed and restarted dials its peer again while the peer
/// still holds the old, dead connection; once the peer finds it dead
/// (stateless reset), the pair is back to one connection.
#[test]
fn after_a_crash_and_restart_the_pair_is_back_to_one_connection() {
    let pki = Pki::new();
    let runtime = one_worker_runtime();
    let (node1, inbox1) = runtime.block_on(start(&pki, patient(1)));
    let mut inbox1 = inbox1.peer_messages;
    let (node2_credentials, address) = crash_after_a_first_message(&pki, &runtime, &node1);

    runtime.block_on(async {
        let mut restarted = patient(2);
        restarted.listen = address;
        let (node2, mut inbox2) = bind_again(&node2_credentials, restarted).await;
        node2.add_peer(NodeId(1), address_of(&node1));
        // The restarted node speaks first, on a connection it dials.
        node2.send(NodeId(1), message(2)).unwrap();
        assert_eq!(guard(inbox1.recv()).await, Some((NodeId(2), message(2))));
        let received = first_delivery(&node1, &mut inbox2.peer_messages).await;
        assert_eq!(received.0, NodeId(1));
        settles_on_one_connection(&node1).await;
        settles_on_one_connection(&node2).await;
        guard(node1.shutdown()).await;
        guard(node2.shutdown()).await;
    });
}
