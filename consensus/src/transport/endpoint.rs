//! The node's transport: one quinn endpoint that listens for peers and
//! clients and dials peers.

use super::admission::{Admission, PeerAddresses};
use super::budget::RequestBudgets;
use super::inbound::{run_accept_loop, serve_established, Dialled, InboundContext, Trust};
use super::link::{Links, PeerLink, ServeDialled};
use super::peer::{run_sender, Backoff, SenderContext};
use super::quic::{client_config, endpoint_config, node_of, server_config, QuicParameters};
use super::request::{InboundRequest, RequestLimits};
use super::wire::Hello;
use super::{PeerAddress, TransportConfig, TransportError};
use crate::raft::types::NodeId;
use certs::{Credentials, Identity};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::watch;

/// What the application receives from the transport.
#[derive(Debug)]
pub struct Inbox<M, Req, Resp> {
    /// Peer messages in the order each sender sent them, tagged with the
    /// sending node (verified against its certificate).
    pub peer_messages: mpsc::Receiver<(NodeId, M)>,
    /// Requests from clients and nodes, with their verified origin.
    pub requests: mpsc::Receiver<InboundRequest<Req, Resp>>,
}

/// Why [`Transport::send`] did not queue a message. The message is dropped
/// in every case; Raft recovers by retransmitting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No address is known for this node.
    #[error("unknown peer {0}")]
    UnknownPeer(NodeId),
    /// The peer's queue is full (the peer is slow or unreachable).
    #[error("queue to {0} is full; message dropped")]
    QueueFull(NodeId),
    /// The transport is shutting down.
    #[error("the transport is shutting down")]
    ShuttingDown,
}

/// A node's QUIC endpoint for peer messages (`M`) and requests (`Req`,
/// answered with `Resp`).
///
/// Fields and why they exist:
/// - `endpoint`: the one UDP socket; serves inbound and dials outbound.
/// - `queues`: per-peer bounded queues feeding one sender task each, so
///   that [`Transport::send`] is a non-blocking `try_send` and a slow peer
///   never slows the others or the caller. A std mutex: it is never held
///   across an await.
/// - `links`: the same peers' addresses and connections, shared with the
///   inbound side, which hands a link the connection its peer dialled;
///   `serve_dialled` serves the streams peers open on the connections this
///   node dialled.
/// - `peer_addresses`: where the peers are, shared with the accept loop,
///   which keeps handshake slots for connections from those addresses.
/// - `dropped`: messages dropped because a queue was full, for metrics.
/// - `trust`: the node ids allowed to connect, watched by every inbound
///   connection so that one from a node that stops being trusted is closed
///   at once, not at its next stream.
/// - `shutdown`: a watch every task selects on, so shutdown reaches tasks
///   blocked on a socket or a channel.
/// - `task_guard` / `tasks_done`: every task holds a clone of the guard;
///   when the last is dropped, `tasks_done` yields `None` and shutdown knows
///   all tasks have finished (the mini-redis pattern).
pub struct Transport<M, Req, Resp> {
    config: Arc<TransportConfig>,
    endpoint: quinn::Endpoint,
    queues: Mutex<BTreeMap<NodeId, mpsc::Sender<M>>>,
    links: Links,
    serve_dialled: ServeDialled,
    peer_addresses: PeerAddresses,
    dropped: Arc<AtomicU64>,
    trust: watch::Sender<Trust>,
    shutdown: watch::Sender<bool>,
    task_guard: Mutex<Option<mpsc::Sender<()>>>,
    tasks_done: tokio::sync::Mutex<mpsc::Receiver<()>>,
    _requests: PhantomData<fn(Req) -> Resp>,
}

impl<M, Req, Resp> Transport<M, Req, Resp>
where
    M: Serialize + DeserializeOwned + Send + 'static,
    Req: Serialize + DeserializeOwned + Send + 'static,
    Resp: Serialize + DeserializeOwned + Send + 'static,
{
    /// Binds the endpoint and starts accepting. Peers are dialled lazily, on
    /// the first message or request for them. The certificate of
    /// `credentials` must be the node `config.node_id`.
    pub async fn bind(
        config: TransportConfig,
        credentials: &Credentials,
    ) -> Result<(Self, Inbox<M, Req, Resp>), TransportError> {
        if node_of(credentials.identity()) != Some(config.node_id) {
            return Err(TransportError::WrongIdentity {
                configured: config.node_id,
                certificate: credentials.identity().to_string(),
            });
        }
        let parameters = QuicParameters::from(&config);
        let server = server_config(credentials, parameters)?;
        let bind_error = |source| TransportError::Bind {
            address: config.listen,
            source,
        };
        let socket = std::net::UdpSocket::bind(config.listen).map_err(bind_error)?;
        let mut endpoint = quinn::Endpoint::new(
            endpoint_config(credentials),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_error)?;
        endpoint.set_default_client_config(client_config(credentials, parameters)?);
        let config = Arc::new(config);
        let (peer_sender, peer_messages) = mpsc::channel(config.inbound_queue.max(1));
        let (request_sender, requests) = mpsc::channel(config.request_queue.max(1));
        let (shutdown, shutdown_receiver) = watch::channel(false);
        let (task_guard, tasks_done) = mpsc::channel(1);
        let (trust, trust_receiver) = watch::channel(None);
        let peer_addresses = PeerAddresses::default();
        let links = Links::default();
        let context = Arc::new(InboundContext {
            config: config.clone(),
            peer_messages: peer_sender,
            requests: request_sender,
            budgets: RequestBudgets::new(&config),
            admission: Admission::new(&config, peer_addresses.clone()),
            trust: trust_receiver,
            links: links.clone(),
            shutdown: shutdown_receiver,
            _task_guard: task_guard.clone(),
        });
        // Weak: the context holds the links, which hold this.
        let weak = Arc::downgrade(&context);
        let serve_dialled: ServeDialled = Arc::new(move |connection, identity| {
            if let Some(context) = weak.upgrade() {
                tokio::spawn(serve_established(
                    connection,
                    Arc::new(identity),
                    context,
                    Dialled::ByUs,
                ));
            }
        });
        tokio::spawn(run_accept_loop(endpoint.clone(), context));
        let transport = Transport {
            config: config.clone(),
            endpoint,
            queues: Mutex::new(BTreeMap::new()),
            links,
            serve_dialled,
            peer_addresses,
            dropped: Arc::new(AtomicU64::new(0)),
            trust,
            shutdown,
            task_guard: Mutex::new(Some(task_guard)),
            tasks_done: tokio::sync::Mutex::new(tasks_done),
            _requests: PhantomData,
        };
        for (id, address) in &config.peers {
            transport.add_peer(*id, address.clone());
        }
        Ok((
            transport,
            Inbox {
                peer_messages,
                requests,
            },
        ))
    }

    /// The address the endpoint listens on (useful after binding port 0).
    pub fn local_address(&self) -> Result<SocketAddr, TransportError> {
        self.endpoint
            .local_addr()
            .map_err(|source| TransportError::Bind {
                address: self.config.listen,
                source,
            })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    /// Adds or replaces a peer (membership change). Replacing drops the old
    /// queue and connection. Must be called from within the tokio runtime.
    pub fn add_peer(&self, id: NodeId, address: PeerAddress) {
        let guard = self
            .task_guard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(guard) = guard else { return };
        self.peer_addresses
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, address.address);
        let link = Arc::new(PeerLink::new(
            id,
            address,
            self.config.node_id,
            self.endpoint.clone(),
            self.config.handshake_timeout,
            self.serve_dialled.clone(),
        ));
        let (queue, receiver) = mpsc::channel(self.config.peer_queue.max(1));
        let context = SenderContext {
            local_id: self.config.node_id,
            link: link.clone(),
            max_frame: self.config.max_peer_frame,
            backoff: Backoff::new(self.config.backoff_initial, self.config.backoff_max),
            dropped: self.dropped.clone(),
            shutdown: self.shutdown.subscribe(),
        };
        tokio::spawn(async move {
            run_sender(context, receiver).await;
            drop(guard);
        });
        let replaced = self.write_links().insert(id, link);
        if let Some(replaced) = replaced {
            replaced.close();
        }
        self.lock_queues().insert(id, queue);
    }

    /// Forgets a peer: its queue closes, its sender task finishes the
    /// stream and ends, and its connection is closed.
    pub fn remove_peer(&self, id: NodeId) {
        self.lock_queues().remove(&id);
        if let Some(removed) = self.write_links().remove(&id) {
            removed.close();
        }
        self.peer_addresses
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    /// The address of a known peer.
    pub fn peer_address(&self, id: NodeId) -> Option<PeerAddress> {
        self.read_links().get(&id).map(|link| link.address.clone())
    }

    /// The peers messages can be sent to.
    pub fn peer_ids(&self) -> Vec<NodeId> {
        self.lock_queues().keys().copied().collect()
    }

    /// Accepts connections from these node ids only (`None`: from any node
    /// certificate the CA signed, the default). Connections already open
    /// from a node outside the new set are closed, with
    /// [`codes::UNAUTHORIZED`](super::codes::UNAUTHORIZED). Client and admin
    /// certificates are not affected. This is how trust follows membership
    /// (SPEC §13): a removed node's certificate is refused from then on.
    pub fn set_trusted_nodes(&self, nodes: Option<std::collections::BTreeSet<NodeId>>) {
        let trust: Trust = nodes.map(Arc::new);
        self.trust.send_if_modified(|current| {
            let changed = *current != trust;
            if changed {
                *current = trust;
            }
            changed
        });
    }

    /// Queues `message` for node `to` without waiting. Messages to one peer
    /// arrive in the order they were queued, or not at all.
    pub fn send(&self, to: NodeId, message: M) -> Result<(), SendError> {
        let queues = self.lock_queues();
        let queue = queues.get(&to).ok_or(SendError::UnknownPeer(to))?;
        match queue.try_send(message) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Err(SendError::QueueFull(to))
            }
            Err(TrySendError::Closed(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Err(SendError::ShuttingDown)
            }
        }
    }

    /// How many QUIC connections the endpoint holds: peers', clients' and
    /// those still closing. A pair of nodes shares one connection.
    pub fn open_connections(&self) -> usize {
        self.endpoint.open_connections()
    }

    /// How many peer messages were dropped since start (full queues,
    /// shutdown, or too large to frame).
    pub fn dropped_messages(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Sends a node-to-node request (e.g. a 2PC Vote) to `to` and waits for
    /// the response. The receiver sees [`super::RequestOrigin::Direct`] with
    /// this node's identity. Callers bound the wait with their own timeout.
    ///
    /// If the connection to `to` is found dead, typically because `to`
    /// restarted since it was dialled, the request is sent once more on a
    /// fresh connection, so the first request after a peer's restart does
    /// not fail. Node-to-node requests must therefore be safe to repeat
    /// (2PC messages are idempotent; forwarded proposals are deduplicated
    /// by their client session, and the first 2PC decision wins).
    pub async fn request(&self, to: NodeId, request: &Req) -> Result<Resp, TransportError> {
        let link = self.link(to)?;
        link.request(&Hello::Request, request, self.node_limits(), true)
            .await
    }

    /// Forwards a request of `client` (authenticated by this node) to node
    /// `to`, typically the leader. The receiver sees
    /// [`super::RequestOrigin::Forwarded`].
    pub async fn forward(
        &self,
        to: NodeId,
        client: &Identity,
        request: &Req,
    ) -> Result<Resp, TransportError> {
        let link = self.link(to)?;
        let hello = Hello::Forwarded {
            client: client.uri(),
        };
        // Not repeated: the client retries on its own, with its session.
        link.request(&hello, request, self.node_limits(), false)
            .await
    }

    /// Stops the transport: no new connections or streams, every task told
    /// to stop, every connection closed with [`super::codes::CLOSED`]; waits
    /// for all tasks to end and for the endpoint to be idle (peers told).
    /// In-flight requests are cut off; clients retry, and commands are
    /// deduplicated by their (client, sequence) so a retry is safe.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        self.lock_queues().clear();
        self.write_links().clear();
        self.task_guard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.endpoint
            .close(quinn::VarInt::from_u32(super::codes::CLOSED), b"shutdown");
        // `recv` yields `None` once every task has dropped its guard.
        let _ = self.tasks_done.lock().await.recv().await;
        self.endpoint.wait_idle().await;
    }

    fn link(&self, to: NodeId) -> Result<Arc<PeerLink>, TransportError> {
        self.read_links()
            .get(&to)
            .cloned()
            .ok_or(TransportError::UnknownPeer(to))
    }

    fn node_limits(&self) -> RequestLimits {
        RequestLimits {
            request: self.config.max_peer_frame,
            response: self.config.max_peer_frame,
        }
    }

    fn read_links(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<NodeId, Arc<PeerLink>>> {
        // Like `queues`: one insert/remove/clear at a time.
        self.links.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_links(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<NodeId, Arc<PeerLink>>> {
        self.links.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_queues(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, mpsc::Sender<M>>> {
        // A panic while holding this lock cannot leave the map half-updated
        // (each operation is one insert/remove/lookup), so a poisoned lock
        // is still consistent.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<M, Req, Resp> Drop for Transport<M, Req, Resp> {
    /// Dropping without [`Transport::shutdown`] still stops every task and
    /// closes the endpoint, without waiting.
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.endpoint
            .close(quinn::VarInt::from_u32(super::codes::CLOSED), b"dropped");
    }
}

impl<M, Req, Resp> std::fmt::Debug for Transport<M, Req, Resp> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Transport")
            .field("node_id", &self.config.node_id)
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
