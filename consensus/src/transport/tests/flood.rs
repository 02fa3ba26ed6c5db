//! Nobody can take the node down (SPEC §9): a flood of half-open
//! handshakes from many source addresses, and one authenticated client
//! that grabs all the request budget it can, while real clients and peers
//! keep being served.
//!
//! The flooder is a second QUIC stack, quinn-proto driven by hand: each
//! attempt is a real client Initial packet (a TLS ClientHello) sent from
//! its own loopback address, and nothing the node answers is ever read, so
//! no handshake is finished and no Retry is answered. It holds no
//! certificate.

use super::*;
use crate::transport::codec::encode_frame;
use crate::transport::wire::{Hello, HELLO_LIMIT};
use crate::transport::{codes, TransportError};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Source addresses the flood comes from: 127.0.1.1 ... 127.0.1.200 (all
/// of 127.0.0.0/8 is loopback on Linux).
const SOURCES: u8 = 200;

/// A QUIC client configuration without any client certificate: the
/// flooder has nothing but the CA's public certificate.
fn anonymous_client(pki: &Pki) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(pki.ca.certificate_pem().as_bytes()).unwrap();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"vault/1".to_vec()];
    quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()))
}

/// Sends Initial packets to `target` from every source address, round
/// after round, until dropped; counts the packets sent.
struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flood {
    fn start(pki: &Pki, target: SocketAddr) -> Flood {
        let config = anonymous_client(pki);
        let sockets: Vec<UdpSocket> = (1..=SOURCES)
            .map(|last| UdpSocket::bind((Ipv4Addr::new(127, 0, 1, last), 0)).unwrap())
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (thread_stop, thread_sent) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let endpoint_config = Arc::new(quinn_proto::EndpointConfig::default());
            while !thread_stop.load(Ordering::Relaxed) {
                // A fresh endpoint per round keeps the flooder's own state
                // from growing: the attempts are abandoned anyway.
                let mut endpoint =
                    quinn_proto::Endpoint::new(endpoint_config.clone(), None, false, None);
                let mut buffer = Vec::with_capacity(1500);
                for socket in &sockets {
                    let now = std::time::Instant::now();
                    let Ok((_, mut connection)) =
                        endpoint.connect(now, config.clone(), target, "127.0.0.1")
                    else {
                        continue;
                    };
                    buffer.clear();
                    if let Some(transmit) = connection.poll_transmit(now, 1, &mut buffer) {
                        if socket
                            .send_to(&buffer[..transmit.size], transmit.destination)
                            .is_ok()
                        {
                            thread_sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Flood {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    /// Waits (bounded) until `count` Initial packets have been sent.
    async fn until_sent(&self, count: u64) {
        guard(async {
            while self.sent.load(Ordering::Relaxed) < count {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// With the defaults, 1024 connection permits were taken on arrival and
/// held through handshakes that never finish: a few seconds of this flood
/// locked out every client and every reconnecting peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_half_open_handshakes_locks_out_no_client_and_no_peer() {
    let pki = Pki::new();
    let (node1, inbox1) = start(&pki, config(1)).await;
    let _server = serve_echo(inbox1.requests);
    let node2_credentials = pki.node(2);
    let (node2, inbox2) = start(&pki, config(2)).await;
    let node2_address = node2.local_address().unwrap();
    let _server2 = serve_echo(inbox2.requests);
    connect_pair(&node1, &node2);
    let before = guard(node2.request(NodeId(1), &TestRequest::Echo("before".into()))).await;
    assert_eq!(before.unwrap().text, "before");

    let flood = Flood::start(&pki, node1.local_address().unwrap());
    // More half-open handshakes than the node has connection slots.
    flood.until_sent(3000).await;

    for name in ["alice", "bob"] {
        let client = client(&pki.client(name), &node1).await;
        let response: TestResponse = guard(client.request(&TestRequest::Echo(name.into())))
            .await
            .unwrap_or_else(|error| panic!("{name} during the flood: {error}"));
        assert_eq!(response.acting_for, format!("urn:vault:client:{name}"));
    }

    // node2 restarts on its address and dials node1 again: the peer's
    // handshake proves its address and gets a slot kept for peers.
    guard(node2.shutdown()).await;
    drop(node2);
    let mut restarted = config(2);
    restarted.listen = node2_address;
    let (node2, inbox2) = bind_again(&node2_credentials, restarted).await;
    let _server2 = serve_echo(inbox2.requests);
    node2.add_peer(NodeId(1), address_of(&node1));
    flood.until_sent(6000).await;
    let after = guard(node2.request(NodeId(1), &TestRequest::Echo("after".into()))).await;
    let after = after.unwrap_or_else(|error| panic!("peer reconnect during the flood: {error}"));
    assert_eq!(after.calling_node, Some(NodeId(2)));

    drop(flood);
    guard(node1.shutdown()).await;
    guard(node2.shutdown()).await;
}

/// Opens a request stream on `connection` announcing a `length`-byte
/// request, and then trickles its body one byte at a time.
async fn trickle(connection: quinn::Connection, length: u32) -> Option<u64> {
    let (mut send, mut receive) = connection.open_bi().await.ok()?;
    let hello = encode_frame(&Hello::Request, HELLO_LIMIT).unwrap();
    send.write_all(&hello).await.ok()?;
    send.write_all(&length.to_be_bytes()).await.ok()?;
    let trickling = async {
        loop {
            match send.write_all(&[0]).await {
                Ok(()) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(quinn::WriteError::Stopped(code)) => return Some(code.into_inner()),
                Err(_) => return None,
            }
        }
    };
    // The node's verdict on this stream, if it gives one: a stop or reset
    // code.
    tokio::select! {
        stopped = trickling => stopped,
        read = receive.read_to_end(64) => match read {
            Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => Some(code.into_inner()),
            _ => None,
        },
    }
}

/// With one budget for everybody and no limit on the wait, one client's
/// 64 trickling 1 MiB requests held all 64 MiB: 2PC votes, forwarded
/// proposals, ReadIndex and every other client waited forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_greedy_client_starves_neither_the_nodes_nor_other_clients() {
    let pki = Pki::new();
    let (node1, inbox1) = start(&pki, config(1)).await;
    let _server = serve_echo(inbox1.requests);
    let (node2, _inbox2) = start(&pki, config(2)).await;
    connect_pair(&node1, &node2);
    let mallory = client(&pki.client("mallory"), &node1).await;
    let mut streams = tokio::task::JoinSet::new();
    for _ in 0..64 {
        streams.spawn(trickle(mallory.connection().clone(), 1 << 20));
    }

    // Her streams beyond her share wait for it, and are told "busy".
    let refused = guard(async {
        loop {
            match streams.join_next().await {
                Some(Ok(Some(code))) => return code,
                Some(_) => {}
                None => panic!("no stream of mallory was refused"),
            }
        }
    })
    .await;
    assert_eq!(refused, u64::from(codes::BUSY));

    let vote = guard(node2.request(NodeId(1), &TestRequest::Echo("vote".into()))).await;
    assert_eq!(vote.unwrap().calling_node, Some(NodeId(2)));
    let alice = Identity::client("alice").unwrap();
    let forwarded = guard(node2.forward(NodeId(1), &alice, &TestRequest::Echo("add".into()))).await;
    assert_eq!(forwarded.unwrap().forwarded_by, Some(NodeId(2)));
    let bob = client(&pki.client("bob"), &node1).await;
    let answer: TestResponse = guard(bob.request(&TestRequest::Echo("bob".into())))
        .await
        .unwrap();
    assert_eq!(answer.acting_for, "urn:vault:client:bob");

    // Mallory's own next request waits for her share, briefly, and is
    // refused as busy instead of hanging.
    let more: Result<TestResponse, _> =
        guard(mallory.request(&TestRequest::Echo("x".repeat(100)))).await;
    assert!(matches!(more, Err(TransportError::Busy)), "{more:?}");
    streams.abort_all();
    guard(node1.shutdown()).await;
    guard(node2.shutdown()).await;
}
