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

/// Connections to the nodes of one cluster on behalf of one identity.
pub struct Cluster {
    credentials: Credentials,
    nodes: Vec<(NodeId, PeerAddress)>,
    connections: Mutex<BTreeMap<NodeId, Arc<Client>>>,
    preferred: AtomicUsize,
}

impl Cluster {
    /// A cluster whose nodes are `nodes`, reached with `credentials`.
    /// Nothing is dialled until the first request.
    pub fn new(credentials: Credentials, nodes: Vec<(NodeId, PeerAddress)>) -> Self {
        Cluster {
            credentials,
            nodes,
            connections: Mutex::new(BTreeMap::new()),
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
    /// passes. Node `avoid` is asked only when it is the only one. At the
    /// deadline the most telling outcome is returned: a node's refusal of
    /// our certificate, else the last retryable reply, else the last error.
    pub async fn call<Req, Resp>(
        &self,
        request: &Req,
        timeout: Duration,
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
        let mut attempt = 0usize;
        while Instant::now() < deadline {
            let index = (self.preferred() + attempt) % count;
            attempt += 1;
            if count > 1 && avoid.is_some() && self.nodes.get(index).map(|(id, _)| *id) == avoid {
                continue;
            }
            match self.request(index, request, deadline).await {
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
            Err(_) => Err(CallError::TimedOut(id)),
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
        self.connections.lock().await.remove(&id);
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
        let mut connections = self.connections.lock().await;
        if let Some(client) = connections.get(&id) {
            return Ok(client.clone());
        }
        let client = Client::connect(&self.credentials, address)
            .await
            .map_err(|error| CallError::Connect {
                node: id,
                reason: error.to_string(),
            })?;
        let client = Arc::new(client);
        connections.insert(id, client.clone());
        Ok(client)
    }

    /// Closes every connection politely, all at once: each close waits
    /// out its connection's draining period, which in sequence added about
    /// 85 ms per node to every command.
    pub async fn close(&self) {
        let connections = std::mem::take(&mut *self.connections.lock().await);
        let mut closing = tokio::task::JoinSet::new();
        for client in connections.into_values() {
            closing.spawn(async move { client.close().await });
        }
        while closing.join_next().await.is_some() {}
    }
}
