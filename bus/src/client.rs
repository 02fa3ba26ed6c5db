//! The client side of the bus, for any application: a [`Cluster`] knows
//! every node's address, keeps one mutually authenticated QUIC connection
//! per node it has used, and sends each request to the node that answered
//! last. A node that cannot be reached, or whose answer the application
//! calls worth retrying elsewhere ("unavailable": no leader yet), makes it
//! try the next node until the deadline. Followers forward writes and reads
//! to the leader themselves, so a client never needs to know who leads.
//!
//! The application's client library wraps it with its own request and
//! reply types (`WireRequest::Client`, `WireResponse::Client`) and its own
//! idea of a retryable reply.

use certs::Credentials;
use consensus::raft::NodeId;
use consensus::transport::{Client, PeerAddress};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Pause before trying the next node after a failure.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Longest wait for one node's QUIC handshake. A dead node does not refuse a
/// connection, it just never answers, so without this bound the first node
/// listed would take the whole request timeout and the others would never be
/// tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a dial may go unanswered before the next node is dialled as
/// well ("happy eyeballs", RFC 8305's connection attempt delay): a killed
/// node does not refuse a QUIC handshake, it is silent, so without this a
/// fresh client whose first node is down would wait [`CONNECT_TIMEOUT`]
/// before trying another. A healthy handshake takes a few milliseconds on
/// a LAN; the first dial is not abandoned, and whichever finishes first
/// carries the request.
const DIAL_STAGGER: Duration = Duration::from_millis(150);

/// Longest wait for one node's answer before the same request goes to the
/// next node ([`Cluster::call`]'s usual `per_node`). A node can accept a
/// request and never answer it: a leader killed after the connection was
/// made (nothing tells the client for many seconds), or one cut off from
/// its peers that cannot commit. Two seconds is far above a healthy
/// cluster's slowest write and well under the client's whole timeout.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a request got no answer from a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The client configuration lists no nodes.
    #[error("the client configuration lists no nodes")]
    NoNodes,
    /// No node could be reached before the deadline.
    #[error("no node could be reached")]
    NoNodeReached,
    /// The node did not connect or answer before the deadline.
    #[error("{0} did not answer in time")]
    TimedOut(NodeId),
    /// The connection could not be set up.
    #[error("cannot connect to {node}: {reason}")]
    Connect {
        /// The node.
        node: NodeId,
        /// What went wrong.
        reason: String,
    },
    /// The node refused this client's certificate during the handshake.
    #[error(
        "{node} refused this client's certificate ({reason}); is it issued by the cluster CA?"
    )]
    CertificateRefused {
        /// The node.
        node: NodeId,
        /// The node's words.
        reason: String,
    },
    /// The request was sent but the answer was lost.
    #[error("{node}: {reason}")]
    Lost {
        /// The node.
        node: NodeId,
        /// What went wrong.
        reason: String,
    },
}

/// The connection to one node, once dialled; locked while it is dialled.
type Slot = Arc<Mutex<Option<Arc<Client>>>>;

/// Connections to the nodes of one cluster on behalf of one identity.
pub struct Cluster {
    credentials: Credentials,
    nodes: Vec<(NodeId, PeerAddress)>,
    /// One slot per node dialled: a dial holds its node's slot only, so
    /// several nodes can be dialled at once (see [`DIAL_STAGGER`]) while
    /// two requests for the same node share one dial.
    connections: std::sync::Mutex<BTreeMap<NodeId, Slot>>,
    preferred: AtomicUsize,
}

impl Cluster {
    /// A cluster whose nodes are `nodes`, reached with `credentials`.
    /// Nothing is dialled until the first request.
    pub fn new(credentials: Credentials, nodes: Vec<(NodeId, PeerAddress)>) -> Self {
        Cluster {
            credentials,
            nodes,
            connections: std::sync::Mutex::new(BTreeMap::new()),
            preferred: AtomicUsize::new(0),
        }
    }

    /// The nodes, in the configured order.
    pub fn nodes(&self) -> &[(NodeId, PeerAddress)] {
        &self.nodes
    }

    /// The position of node `id` in [`Cluster::nodes`].
    pub fn index_of(&self, id: NodeId) -> Option<usize> {
        self.nodes.iter().position(|(node, _)| *node == id)
    }

    /// Starts with node `index` (of the configured list) instead of the
    /// first, so many clients spread their connections over the cluster.
    pub fn prefer(&self, index: usize) {
        if !self.nodes.is_empty() {
            self.preferred
                .store(index % self.nodes.len(), Ordering::Relaxed);
        }
    }

    /// The node tried first: the one that answered last.
    pub fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed)
    }

    /// Sends `request` to one node after another, starting with the
    /// preferred one, until one answers with a reply `retry` does not want
    /// retried elsewhere (that node is then preferred), or the `timeout`
    /// passes. One node gets at most `per_node` (usually
    /// [`ATTEMPT_TIMEOUT`]) to answer before the next is tried, so the
    /// request must be safe to repeat (a write carries its client session).
    /// Node `avoid` is asked only when it is the only one. At the
    /// deadline the most telling outcome is returned: a node's refusal of
    /// our certificate, else the last retryable reply, else the last error.
    pub async fn call<Req, Resp>(
        &self,
        request: &Req,
        timeout: Duration,
        per_node: Duration,
        avoid: Option<NodeId>,
        retry: impl Fn(&Resp) -> bool,
    ) -> Result<Resp, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let deadline = Instant::now() + timeout;
        let mut last_error = CallError::NoNodeReached;
        let mut refusal = None;
        let mut answered = None;
        let count = self.nodes.len().max(1);
        let mut next = self.preferred();
        while Instant::now() < deadline {
            let attempt_deadline = deadline.min(Instant::now() + per_node);
            let connected = self.connect_from(next, attempt_deadline, avoid).await;
            let (index, id, connection) = match connected {
                Ok(connected) => connected,
                Err((tried, error)) => {
                    if let CallError::CertificateRefused { .. } = error {
                        refusal.get_or_insert(error.clone());
                    }
                    last_error = error;
                    next = (tried + 1) % count;
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            };
            next = (index + 1) % count;
            match self
                .request_on(id, &connection, request, attempt_deadline)
                .await
            {
                Ok(reply) if retry(&reply) => answered = Some(reply),
                Ok(reply) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(reply);
                }
                Err(error @ CallError::CertificateRefused { .. }) => {
                    refusal.get_or_insert(error.clone());
                    last_error = error;
                }
                Err(error) => last_error = error,
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        match (refusal, answered) {
            (Some(refusal), _) => Err(refusal),
            (None, Some(reply)) => Ok(reply),
            (None, None) => Err(last_error),
        }
    }

    /// A connection to node `start` of the configured list, or, if dialling
    /// it takes longer than [`DIAL_STAGGER`] or fails, to whichever of the
    /// following nodes (in order, `avoid` only if it is the only one) is
    /// connected first; each dial is bounded by [`CONNECT_TIMEOUT`] and
    /// `deadline`. On failure, the last node tried and its error.
    async fn connect_from(
        &self,
        start: usize,
        deadline: Instant,
        avoid: Option<NodeId>,
    ) -> Result<(usize, NodeId, Arc<Client>), (usize, CallError)> {
        let count = self.nodes.len();
        let mut order = (0..count)
            .map(|offset| (start + offset) % count)
            .filter(|&index| count == 1 || avoid != Some(self.nodes[index].0));
        let mut dials = futures::stream::FuturesUnordered::new();
        let mut last = (start, CallError::NoNodes);
        loop {
            if dials.is_empty() {
                match order.next() {
                    Some(index) => dials.push(self.dial(index, deadline)),
                    None => return Err(last),
                }
            }
            tokio::select! {
                Some((index, outcome)) = dials.next() => match outcome {
                    Ok((id, connection)) => return Ok((index, id, connection)),
                    Err(error) => last = (index, error),
                },
                () = tokio::time::sleep(DIAL_STAGGER) => {
                    if let Some(index) = order.next() {
                        dials.push(self.dial(index, deadline));
                    }
                }
            }
        }
    }

    async fn dial(
        &self,
        index: usize,
        deadline: Instant,
    ) -> (usize, Result<(NodeId, Arc<Client>), CallError>) {
        (index, self.connect_index(index, deadline).await)
    }

    /// One attempt at node `index`, answered before `deadline`.
    pub async fn request<Req, Resp>(
        &self,
        index: usize,
        request: &Req,
        deadline: Instant,
    ) -> Result<Resp, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let (id, connection) = self.connect_index(index, deadline).await?;
        self.request_on(id, &connection, request, deadline).await
    }

    /// Sends `request` on `connection` (to node `id`) and waits for the
    /// answer until `deadline`.
    async fn request_on<Req, Resp>(
        &self,
        id: NodeId,
        connection: &Client,
        request: &Req,
        deadline: Instant,
    ) -> Result<Resp, CallError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        match tokio::time::timeout_at(deadline, connection.request(request)).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(error)) => {
                self.forget(id).await;
                if let Some(reason) = connection.handshake_refusal() {
                    return Err(CallError::CertificateRefused { node: id, reason });
                }
                Err(CallError::Lost {
                    node: id,
                    reason: error.to_string(),
                })
            }
            Err(_) => {
                // A connection that leaves a request unanswered this long
                // may lead to a dead node: the next request dials anew
                // (and a dead node then fails within CONNECT_TIMEOUT).
                self.forget(id).await;
                Err(CallError::TimedOut(id))
            }
        }
    }

    /// The connection to node `index` (of the configured list), dialled if
    /// needed within [`CONNECT_TIMEOUT`] or `deadline`, whichever is first.
    pub async fn connect_index(
        &self,
        index: usize,
        deadline: Instant,
    ) -> Result<(NodeId, Arc<Client>), CallError> {
        let (id, address) = self.nodes.get(index).ok_or(CallError::NoNodes)?;
        let connect_deadline = deadline.min(Instant::now() + CONNECT_TIMEOUT);
        let connection = tokio::time::timeout_at(connect_deadline, self.connection(*id, address))
            .await
            .map_err(|_| CallError::TimedOut(*id))??;
        Ok((*id, connection))
    }

    /// Drops the connection to node `id` (it broke); the next request dials
    /// again.
    pub async fn forget(&self, id: NodeId) {
        let slot = self.slots().get(&id).cloned();
        if let Some(slot) = slot {
            slot.lock().await.take();
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, BTreeMap<NodeId, Slot>> {
        // Each use is one lookup or insert: a panic cannot leave it torn.
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens the connection to the preferred node now (handshake included),
    /// so that the first request does not pay for it.
    pub async fn connect(&self, timeout: Duration) -> Result<(), CallError> {
        let (id, address) = self.nodes.get(self.preferred()).ok_or(CallError::NoNodes)?;
        tokio::time::timeout(timeout, self.connection(*id, address))
            .await
            .map_err(|_| CallError::TimedOut(*id))?
            .map(|_| ())
    }

    async fn connection(
        &self,
        id: NodeId,
        address: &PeerAddress,
    ) -> Result<Arc<Client>, CallError> {
        let slot = self.slots().entry(id).or_default().clone();
        let mut slot = slot.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = Client::connect(&self.credentials, address)
            .await
            .map_err(|error| CallError::Connect {
                node: id,
                reason: error.to_string(),
            })?;
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Closes every connection politely, all at once: each close waits
    /// out its connection's draining period, which in sequence added about
    /// 85 ms per node to every command.
    pub async fn close(&self) {
        let slots = std::mem::take(&mut *self.slots());
        let mut closing = tokio::task::JoinSet::new();
        for slot in slots.into_values() {
            if let Some(client) = slot.lock().await.take() {
                closing.spawn(async move { client.close().await });
            }
        }
        while closing.join_next().await.is_some() {}
    }
}
