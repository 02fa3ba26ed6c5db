//! The client's failover between nodes, against real QUIC endpoints on
//! loopback: a node that accepts a request and never answers it, and a
//! node that never answers a handshake. Each test's outcome (answered or
//! not) is what tells the mechanisms apart, not how long it took; the
//! timeouts are hang guards.

use bus::client::{CallError, Cluster};
use certs::{CertificateAuthority, Credentials, Identity};
use consensus::raft::NodeId;
use consensus::transport::{InboundRequest, PeerAddress, Transport, TransportConfig};
use std::time::Duration;

type TestTransport = Transport<(), String, String>;

struct Pki(CertificateAuthority);

impl Pki {
    fn new() -> Self {
        Pki(CertificateAuthority::generate("client test CA").unwrap())
    }

    fn node(&self, id: u64) -> Credentials {
        let issued = self
            .0
            .issue_node(&NodeId(id).to_string(), &["127.0.0.1".to_string()])
            .unwrap();
        Credentials::from_pem(
            self.0.certificate_pem(),
            &issued.certificate_pem,
            issued.key_pem(),
        )
        .unwrap()
    }

    fn client(&self) -> Credentials {
        let issued = self
            .0
            .issue_client(&Identity::client("alice").unwrap())
            .unwrap();
        Credentials::from_pem(
            self.0.certificate_pem(),
            &issued.certificate_pem,
            issued.key_pem(),
        )
        .unwrap()
    }
}

/// A node that answers every request with "answered by N".
async fn answering(pki: &Pki, id: u64) -> (TestTransport, PeerAddress) {
    let config = TransportConfig::new(NodeId(id), "127.0.0.1:0".parse().unwrap());
    let (transport, mut inbox) = TestTransport::bind(config, &pki.node(id)).await.unwrap();
    tokio::spawn(async move {
        while let Some(inbound) = inbox.requests.recv().await {
            inbound.responder.respond(format!("answered by {id}"));
        }
    });
    let address = PeerAddress::from_socket_address(transport.local_address().unwrap());
    (transport, address)
}

/// A node that takes every request and never answers (it keeps the
/// responders, so the streams stay open): a leader cut off from its peers.
async fn silent_after_accepting(pki: &Pki, id: u64) -> (TestTransport, PeerAddress) {
    let config = TransportConfig::new(NodeId(id), "127.0.0.1:0".parse().unwrap());
    let (transport, mut inbox) = TestTransport::bind(config, &pki.node(id)).await.unwrap();
    tokio::spawn(async move {
        let mut held: Vec<InboundRequest<String, String>> = Vec::new();
        while let Some(inbound) = inbox.requests.recv().await {
            held.push(inbound);
        }
    });
    let address = PeerAddress::from_socket_address(transport.local_address().unwrap());
    (transport, address)
}

async fn guard<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("hang guard: the call did not end in 60 s")
}

#[tokio::test]
async fn a_node_that_never_answers_costs_one_attempt_and_the_next_node_answers() {
    let pki = Pki::new();
    let (_silent, silent) = silent_after_accepting(&pki, 1).await;
    let (_answering, answering) = answering(&pki, 2).await;
    let cluster = Cluster::new(
        pki.client(),
        vec![(NodeId(1), silent), (NodeId(2), answering)],
    );
    // The whole timeout is far longer than one attempt: a client that waited
    // on the first node until the deadline would end with TimedOut(node1).
    let reply: Result<String, CallError> = guard(cluster.call(
        &"hello".to_string(),
        Duration::from_secs(20),
        Duration::from_secs(1),
        None,
        |_: &String| false,
    ))
    .await;
    assert_eq!(reply, Ok("answered by 2".to_string()));
    assert_eq!(
        cluster.preferred(),
        1,
        "the node that answered is tried first next"
    );
}

#[tokio::test]
async fn a_node_silent_to_handshakes_does_not_hold_up_the_dial_of_the_next() {
    let pki = Pki::new();
    // A bound UDP socket that reads nothing: handshakes to it go unanswered,
    // as to a killed node's address.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_address = PeerAddress::from_socket_address(silent.local_addr().unwrap());
    let (_answering, answering) = answering(&pki, 2).await;
    let cluster = Cluster::new(
        pki.client(),
        vec![(NodeId(1), silent_address), (NodeId(2), answering)],
    );
    // The whole call has less time than one dial's own timeout (1 s): only a
    // dial of node 2 started while node 1's is still pending can answer.
    let reply: Result<String, CallError> = guard(cluster.call(
        &"hello".to_string(),
        Duration::from_millis(900),
        Duration::from_millis(900),
        None,
        |_: &String| false,
    ))
    .await;
    assert_eq!(reply, Ok("answered by 2".to_string()));
}
