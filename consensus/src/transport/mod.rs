//! The QUIC transport: one quinn endpoint per node, mutual TLS with the
//! cluster CA, ALPN `vault/1`, for peers and clients alike.
//!
//! What travels, and how (design notes in `docs/transport.md`):
//!
//! - **One connection per pair of nodes**, whichever dialled it: both
//!   sides' peer streams and requests share it, so acknowledgements ride on
//!   the other direction's packets (`transport/link.rs`).
//! - **Peer messages** (Raft): for each ordered pair of nodes, one
//!   long-lived unidirectional stream from sender to receiver carries
//!   length-prefixed postcard frames back to back: ordered, pipelined, no
//!   per-message stream cost. [`Transport::send`] never blocks: each peer
//!   has a bounded queue and a message that does not fit is dropped and
//!   counted (Raft retransmits). Inbound messages arrive as
//!   `(NodeId, M)` on [`Inbox::peer_messages`].
//! - **Requests** (clients, forwarded client requests, node-to-node RPCs
//!   such as 2PC): one bidirectional stream per request carrying a request
//!   frame and a response frame (or, for a streamed answer such as a
//!   backup, response frames until the stream finishes:
//!   [`Responder::respond_stream`], [`Client::request_stream`]). Inbound
//!   requests arrive on
//!   [`Inbox::requests`] with the verified [`RequestOrigin`] of the caller.
//!   [`Client`] is the dialling side for clients.
//!
//! Every stream opens with a hello frame naming its kind. Authorization is
//! decided here from the certificate identity, not by the application:
//! a peer stream is accepted only from a node certificate whose node id is
//! the one the hello claims, forwarded requests only from node
//! certificates, and a dialled peer must present the node id we meant to
//! reach. A bad frame closes its stream with a warning naming the peer;
//! nothing a peer sends can panic, block or grow the node without bound.
//!
//! The transport is generic over the peer message `M` and the request and
//! response types, so it knows nothing of Raft or the vault.
//!
//! ```
//! use consensus::raft::types::NodeId;
//! use consensus::transport::{Client, PeerAddress, Transport, TransportConfig};
//! use certs::{CertificateAuthority, Credentials, Identity};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = CertificateAuthority::generate("example CA")?;
//! let issued = ca.issue_node("node1", &["127.0.0.1".to_string()])?;
//! let node_credentials = Credentials::from_pem(ca.certificate_pem(), &issued.certificate_pem, issued.key_pem())?;
//! let config = TransportConfig::new(NodeId(1), "127.0.0.1:0".parse()?);
//! // Peer messages are `u64` here, requests `String`, responses `usize`.
//! let (node, mut inbox) = Transport::<u64, String, usize>::bind(config, &node_credentials).await?;
//! tokio::spawn(async move {
//!     while let Some(inbound) = inbox.requests.recv().await {
//!         // The transport tells who is asking; the application decides.
//!         assert_eq!(inbound.origin.acting_for(), &Identity::client("alice").unwrap());
//!         inbound.responder.respond(inbound.request.len());
//!     }
//! });
//!
//! let issued = ca.issue_client(&Identity::client("alice")?)?;
//! let alice = Credentials::from_pem(ca.certificate_pem(), &issued.certificate_pem, issued.key_pem())?;
//! let client = Client::connect(&alice, &PeerAddress::from_socket_address(node.local_address()?)).await?;
//! let length: usize = client.request(&"hello".to_string()).await?;
//! assert_eq!(length, 5);
//! node.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod admission;
mod budget;
mod client;
pub mod codec;
mod endpoint;
mod inbound;
mod link;
mod peer;
mod quic;
mod request;
mod wire;

#[cfg(test)]
mod tests;

pub use client::Client;
pub use codec::FrameError;
pub use endpoint::{Inbox, SendError, Transport};
pub use request::{
    InboundRequest, RequestOrigin, Responder, ResponseStream, StreamClosed, StreamResponder,
};

use crate::raft::types::NodeId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Where a peer listens and the name its certificate must carry (a DNS or
/// IP SAN) for the handshake to succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAddress {
    /// The peer's UDP address.
    pub address: SocketAddr,
    /// The host name or IP the peer's certificate is checked against.
    pub server_name: String,
}

impl PeerAddress {
    /// Parses `host:port` (or `[v6]:port`) and resolves the host, which
    /// then becomes the name the certificate must carry. Resolution uses
    /// the system resolver and may block: call it at start-up or from
    /// `spawn_blocking`.
    pub fn resolve(endpoint: &str) -> Result<Self, TransportError> {
        use std::net::ToSocketAddrs;
        let invalid = |reason: &str| TransportError::Resolve {
            endpoint: endpoint.to_string(),
            reason: reason.to_string(),
        };
        let (host, port) = endpoint
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected host:port"))?;
        let port: u16 = port.parse().map_err(|_| invalid("invalid port"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|host| host.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(invalid("empty host"));
        }
        let address = (host, port)
            .to_socket_addrs()
            .map_err(|error| invalid(&error.to_string()))?
            .next()
            .ok_or_else(|| invalid("no address"))?;
        Ok(PeerAddress {
            address,
            server_name: host.to_string(),
        })
    }

    /// A peer dialled by IP address, whose certificate must carry that IP.
    pub fn from_socket_address(address: SocketAddr) -> Self {
        PeerAddress {
            address,
            server_name: address.ip().to_string(),
        }
    }
}

/// How a node's transport behaves. [`TransportConfig::new`] gives defaults
/// suited to a LAN cluster; every field is public so a config file can
/// override it.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// This node's id; must match the node id of its certificate.
    pub node_id: NodeId,
    /// The UDP address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The peers known at start; more can be added with
    /// [`Transport::add_peer`].
    pub peers: BTreeMap<NodeId, PeerAddress>,
    /// Largest peer message, node-to-node request or any response, in bytes
    /// (snapshot chunks must fit).
    pub max_peer_frame: usize,
    /// Largest request a client may send, in bytes.
    pub max_client_frame: usize,
    /// Messages queued per peer before [`Transport::send`] drops.
    pub peer_queue: usize,
    /// Capacity of [`Inbox::peer_messages`]; when full, peer streams stop
    /// reading and QUIC flow control pushes back on the senders.
    pub inbound_queue: usize,
    /// Capacity of [`Inbox::requests`]; when full, request streams wait.
    pub request_queue: usize,
    /// Total bytes of inbound requests from clients and admins being read,
    /// queued or handled at once. A request holds its share from its length
    /// prefix until its response is sent; beyond the budget, new requests
    /// wait (at most `budget_wait`). No request larger than this is
    /// accepted.
    pub max_request_bytes_in_flight: usize,
    /// The same budget for requests from node certificates (2PC votes,
    /// forwarded proposals, ReadIndex), kept apart so that clients cannot
    /// starve them.
    pub max_node_request_bytes_in_flight: usize,
    /// The share of `max_request_bytes_in_flight` one client or admin
    /// identity may hold, however many connections and streams it opens.
    pub max_request_bytes_per_identity: usize,
    /// How long a request may wait for its share of a budget before it is
    /// refused with [`codes::BUSY`].
    pub budget_wait: std::time::Duration,
    /// Most simultaneous established connections of clients and admins
    /// (nodes may use them too); more are closed with [`codes::BUSY`].
    pub max_connections: usize,
    /// Established connections only node identities may use, so that
    /// clients can never take the slots of the peers.
    pub reserved_node_connections: usize,
    /// Most handshakes in progress at once, peers' reserve included. A
    /// handshake holds its slot only until it completes or
    /// `handshake_timeout` passes.
    pub max_handshakes: usize,
    /// Handshake slots kept for connections from the address of a
    /// configured peer (whose address was validated by a QUIC Retry).
    pub reserved_peer_handshakes: usize,
    /// Beyond this many handshakes in progress, a new connection must
    /// prove its source address with a QUIC Retry before it gets a slot.
    /// Connections from the address of a configured peer always do.
    pub retry_above: usize,
    /// How long a handshake may take before it is dropped.
    pub handshake_timeout: std::time::Duration,
    /// Most simultaneous request streams per connection.
    pub max_streams_per_connection: u32,
    /// First delay before redialling a peer; doubles up to `backoff_max`.
    pub backoff_initial: Duration,
    /// Longest delay between redials.
    pub backoff_max: Duration,
    /// How long a new stream may take to deliver its hello (and, for a
    /// request, the request) before it is dropped.
    pub read_timeout: Duration,
    /// A connection silent for this long is considered dead.
    pub idle_timeout: Duration,
    /// Keep-alive interval, well below `idle_timeout`, so that idle peer
    /// connections stay up and dead ones are noticed.
    pub keep_alive: Duration,
    /// Where refused connections are counted, by reason
    /// (`vault_transport_refused_connections_total`).
    pub metrics: crate::metrics::Metrics,
}

impl TransportConfig {
    /// Defaults: 16 MiB peer frames, 1 MiB client frames, 64 MiB of client
    /// requests in flight (8 MiB per identity) and 64 MiB of node requests,
    /// a 2 s wait for budget, 1024-message peer queues, 1024 client
    /// connections plus 64 kept for nodes, 64 handshakes in progress (8
    /// kept for peers, Retry beyond 16, 3 s each), backoff 50 ms to 2 s,
    /// 10 s read and idle timeouts. docs/transport.md explains the numbers.
    pub fn new(node_id: NodeId, listen: SocketAddr) -> Self {
        TransportConfig {
            node_id,
            listen,
            peers: BTreeMap::new(),
            max_peer_frame: 16 << 20,
            max_client_frame: 1 << 20,
            peer_queue: 1024,
            inbound_queue: 4096,
            request_queue: 1024,
            max_request_bytes_in_flight: 64 << 20,
            max_node_request_bytes_in_flight: 64 << 20,
            max_request_bytes_per_identity: 8 << 20,
            budget_wait: Duration::from_secs(2),
            max_connections: 1024,
            reserved_node_connections: 64,
            max_handshakes: 64,
            reserved_peer_handshakes: 8,
            retry_above: 16,
            handshake_timeout: Duration::from_secs(3),
            max_streams_per_connection: 128,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(2),
            metrics: crate::metrics::Metrics::default(),
        }
    }
}

/// Application error codes this transport puts in QUIC stream resets,
/// STOP_SENDING and connection closes.
pub mod codes {
    /// Normal close (shutdown, client done).
    pub const CLOSED: u32 = 0;
    /// A frame did not decode, or the stream ended inside one.
    pub const MALFORMED_FRAME: u32 = 1;
    /// A frame exceeded the stream's size limit.
    pub const FRAME_TOO_LARGE: u32 = 2;
    /// The certificate identity may not open this kind of stream, or the
    /// hello claimed another identity.
    pub const UNAUTHORIZED: u32 = 3;
    /// The application dropped the request without answering, or the node
    /// is shutting down.
    pub const NO_RESPONSE: u32 = 4;
    /// The peer certificate carries no usable identity, or is not the node
    /// that was dialled.
    pub const BAD_IDENTITY: u32 = 5;
    /// The stream did not deliver its hello or request in time.
    pub const TIMEOUT: u32 = 6;
    /// The node is at a limit (connections, its request budget or the
    /// caller's share of it): nothing was done; retry later.
    pub const BUSY: u32 = 7;
}

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The TLS material cannot be turned into a QUIC configuration.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// Binding the UDP socket failed.
    #[error("cannot bind {address}: {source}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The connection could not be set up (unreachable, handshake refused,
    /// certificate not trusted or not valid for the name dialled).
    #[error("cannot connect to {address}: {reason}")]
    Connect {
        /// The address dialled.
        address: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The peer's certificate identity is not the one expected.
    #[error("peer at {address} is {actual}, expected {expected}")]
    WrongPeer {
        /// The address dialled.
        address: SocketAddr,
        /// The identity we meant to reach.
        expected: String,
        /// The identity the certificate carries (or why none was read).
        actual: String,
    },
    /// An endpoint could not be parsed or resolved.
    #[error("cannot resolve {endpoint:?}: {reason}")]
    Resolve {
        /// The endpoint as given.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// The node's certificate is not the node its configuration names.
    #[error("the certificate is {certificate}, but this node is configured as {configured}")]
    WrongIdentity {
        /// The node id of the configuration.
        configured: NodeId,
        /// The identity the certificate carries.
        certificate: String,
    },
    /// No address is known for this node.
    #[error("unknown peer {0}")]
    UnknownPeer(NodeId),
    /// The connection was lost.
    #[error("connection lost: {0}")]
    ConnectionLost(#[from] quinn::ConnectionError),
    /// The node is at a limit and refused the request or connection
    /// without doing anything ([`codes::BUSY`]); retry later.
    #[error("the node is busy (too many requests or connections); retry later")]
    Busy,
    /// The other side refused the stream (see [`codes`]).
    #[error("stream refused by the peer with code {0}")]
    Refused(u64),
    /// The other side closed the stream without a response.
    #[error("the peer closed the stream without a response")]
    NoResponse,
    /// A frame could not be written or read.
    #[error(transparent)]
    Frame(#[from] FrameError),
}
