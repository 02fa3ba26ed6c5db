//! Transport tests on 127.0.0.1 with real QUIC, real TLS and certificates
//! from the `certs` crate. Ports are chosen by the OS (port 0). Timeouts
//! are hang guards only; no test asserts on timing.

mod flood;
mod measure;
mod pairs;
mod peers;
mod refusals;
mod requests;
mod streamed;

use super::{Client, Inbox, PeerAddress, RequestOrigin, Transport, TransportConfig};
use crate::raft::types::NodeId;
use certs::{CertificateAuthority, Credentials, Identity};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;

/// A stand-in for a Raft message: the transport is generic over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PeerMessage {
    pub(super) sequence: u64,
    pub(super) body: String,
}

/// A request the test application answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum TestRequest {
    /// Answer with the text and the caller's verified origin.
    Echo(String),
    /// Drop the responder without answering.
    Ignore,
}

/// The test application's answer: the request text and who asked, as the
/// transport verified it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct TestResponse {
    pub(super) text: String,
    pub(super) acting_for: String,
    pub(super) forwarded_by: Option<NodeId>,
    pub(super) calling_node: Option<NodeId>,
}

pub(super) type TestTransport = Transport<PeerMessage, TestRequest, TestResponse>;
pub(super) type TestInbox = Inbox<PeerMessage, TestRequest, TestResponse>;

/// A test cluster's CA.
pub(super) struct Pki {
    pub(super) ca: CertificateAuthority,
}

impl Pki {
    pub(super) fn new() -> Self {
        Pki {
            ca: CertificateAuthority::generate("transport test CA").unwrap(),
        }
    }

    pub(super) fn node(&self, id: u64) -> Credentials {
        let issued = self
            .ca
            .issue_node(&NodeId(id).to_string(), &["127.0.0.1".to_string()])
            .unwrap();
        Credentials::from_pem(
            self.ca.certificate_pem(),
            &issued.certificate_pem,
            issued.key_pem(),
        )
        .unwrap()
    }

    pub(super) fn user(&self, identity: Identity) -> Credentials {
        let issued = self.ca.issue_client(&identity).unwrap();
        Credentials::from_pem(
            self.ca.certificate_pem(),
            &issued.certificate_pem,
            issued.key_pem(),
        )
        .unwrap()
    }

    pub(super) fn client(&self, name: &str) -> Credentials {
        self.user(Identity::client(name).unwrap())
    }
}

pub(super) fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub(super) fn config(id: u64) -> TransportConfig {
    TransportConfig::new(NodeId(id), loopback())
}

pub(super) async fn start(pki: &Pki, config: TransportConfig) -> (TestTransport, TestInbox) {
    let id = config.node_id.0;
    TestTransport::bind(config, &pki.node(id)).await.unwrap()
}

pub(super) fn address_of(transport: &TestTransport) -> PeerAddress {
    PeerAddress::from_socket_address(transport.local_address().unwrap())
}

/// Makes each transport a peer of the other.
pub(super) fn connect_pair(first: &TestTransport, second: &TestTransport) {
    first.add_peer(second.node_id(), address_of(second));
    second.add_peer(first.node_id(), address_of(first));
}

/// Answers every request: echoes, or drops the responder for `Ignore`.
pub(super) fn serve_echo(
    mut requests: tokio::sync::mpsc::Receiver<super::InboundRequest<TestRequest, TestResponse>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(inbound) = requests.recv().await {
            let TestRequest::Echo(text) = inbound.request else {
                continue;
            };
            let forwarded_by = match &inbound.origin {
                RequestOrigin::Forwarded { by, .. } => Some(*by),
                RequestOrigin::Direct(_) => None,
            };
            inbound.responder.respond(TestResponse {
                text,
                acting_for: inbound.origin.acting_for().to_string(),
                forwarded_by,
                calling_node: inbound.origin.node(),
            });
        }
    })
}

/// Hang guard: generous, never a timing assertion.
/// Binds `config` with the node's (unchanged) credentials, retrying while
/// the old endpoint's socket is released.
pub(super) async fn bind_again(
    credentials: &Credentials,
    config: TransportConfig,
) -> (TestTransport, TestInbox) {
    guard(async {
        loop {
            match TestTransport::bind(config.clone(), credentials).await {
                Ok(bound) => return bound,
                Err(crate::transport::TransportError::Bind { .. }) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => panic!("{error}"),
            }
        }
    })
    .await
}

/// A runtime with one worker thread, for tests that run a node on a
/// runtime they can drop (killing the node without a goodbye, like
/// kill -9).
pub(super) fn one_worker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Settings whose idle timeout and keep-alive are far beyond the hang
/// guard: only a stateless reset can reveal a dead connection in time.
pub(super) fn patient(id: u64) -> TransportConfig {
    let mut settings = config(id);
    settings.idle_timeout = Duration::from_secs(300);
    settings.keep_alive = Duration::from_secs(120);
    settings
}

pub(super) async fn guard<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .expect("hang guard: the operation did not finish in 30 s")
}

/// Connects a client and returns it.
pub(super) async fn client(credentials: &Credentials, node: &TestTransport) -> Client {
    guard(Client::connect(credentials, &address_of(node)))
        .await
        .unwrap()
}
