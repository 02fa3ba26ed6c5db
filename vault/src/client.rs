//! The client library: used by `vault-cli` and the tests to talk to a
//! cluster.
//!
//! It knows every node's address, keeps one mutually authenticated QUIC
//! connection per node it has used, and sends each request to the node that
//! answered last. A node that cannot be reached, or that answers
//! "unavailable" (no leader yet), makes the client try the next node until
//! the deadline. Followers forward writes and reads to the leader
//! themselves, so the client never needs to know who leads.
//!
//! Writes carry a [`ClientSession`] (a random client id and a sequence
//! number that grows with each write). A retried write keeps its sequence
//! number, so if the first attempt was applied after all, the state machine
//! answers the retry from its session table instead of applying it twice.

use crate::protocol::{ClientRequest, ClientSession, Reply, Request, Response, VaultError};
use crate::server::{WireRequest, WireResponse};
use certs::Credentials;
use consensus::raft::NodeId;
use consensus::transport::{Client, PeerAddress};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// The replicated state as one node streamed it for `snapshot save`
/// ([`VaultClient::snapshot_save`]), not yet verified: the caller checks it
/// (`backup::Backup::from_state`) before writing anything.
#[derive(Clone, PartialEq, Eq)]
pub struct DownloadedSnapshot {
    /// The node that sent it.
    pub node: NodeId,
    /// The committed log index the state is as of.
    pub index: u64,
    /// The term of the entry at `index`.
    pub term: u64,
    /// The state machine's snapshot bytes.
    pub state: Vec<u8>,
}

impl std::fmt::Debug for DownloadedSnapshot {
    /// Never shows the state.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadedSnapshot")
            .field("node", &self.node)
            .field("index", &self.index)
            .field("term", &self.term)
            .field("state_len", &self.state.len())
            .finish()
    }
}

/// The largest state a backup download accepts: far above any vault this
/// software is meant for, and a bound on what a lying node can make the
/// client allocate.
pub const MAX_SNAPSHOT_BYTES: u64 = 16 << 30;

/// A connection to a vault cluster on behalf of one client identity.
pub struct VaultClient {
    credentials: Credentials,
    nodes: Vec<(NodeId, PeerAddress)>,
    connections: Mutex<BTreeMap<NodeId, Arc<Client>>>,
    preferred: AtomicUsize,
    client_id: u64,
    next_seq: AtomicU64,
    timeout: Duration,
}

/// How a node's refusal of this client's certificate is worded.
const REFUSED_CERTIFICATE: &str = "refused this client's certificate";

fn is_certificate_refusal(error: &VaultError) -> bool {
    matches!(error, VaultError::Unavailable(message) if message.contains(REFUSED_CERTIFICATE))
}

impl VaultClient {
    /// A client for the cluster whose nodes are `nodes`; every request gives
    /// up after `timeout` with [`VaultError::Unavailable`]. Nothing is dialled
    /// until the first request.
    pub fn new(
        credentials: Credentials,
        nodes: Vec<(NodeId, PeerAddress)>,
        timeout: Duration,
    ) -> Self {
        VaultClient {
            credentials,
            nodes,
            connections: Mutex::new(BTreeMap::new()),
            preferred: AtomicUsize::new(0),
            client_id: rand::random::<u64>() | 1,
            next_seq: AtomicU64::new(1),
            timeout,
        }
    }

    /// Starts with node `index` (of the configured list) instead of the
    /// first, so many clients spread their connections over the cluster.
    pub fn prefer(&self, index: usize) {
        if !self.nodes.is_empty() {
            self.preferred
                .store(index % self.nodes.len(), Ordering::Relaxed);
        }
    }

    /// The nodes this client knows.
    pub fn nodes(&self) -> &[(NodeId, PeerAddress)] {
        &self.nodes
    }

    /// Sends `request` to the cluster, retrying on other nodes until the
    /// timeout. Writes get a fresh session sequence number, kept across
    /// retries.
    pub async fn call(&self, request: Request) -> Reply {
        self.call_avoiding(request, None).await
    }

    /// [`VaultClient::call`], but node `avoid` is asked only when no other
    /// node is configured: `member remove` does not go through the node it
    /// removes, which is cut off (trust follows membership) as soon as its
    /// removal commits, possibly before the answer reaches us.
    pub async fn call_avoiding(&self, request: Request, avoid: Option<NodeId>) -> Reply {
        let session = is_write(&request).then(|| ClientSession {
            client_id: self.client_id,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
        });
        self.send(ClientRequest { session, request }, avoid).await
    }

    /// Sends `request` under `session`, taken from an earlier attempt of the
    /// same request (perhaps made through another `VaultClient`, or by a
    /// process that crashed and kept its session), with the retries of
    /// [`VaultClient::call`]. A write the cluster already executed is not
    /// executed again: the answer is the first attempt's.
    pub async fn call_in_session(&self, request: Request, session: ClientSession) -> Reply {
        let request = ClientRequest {
            session: Some(session),
            request,
        };
        self.send(request, None).await
    }

    /// Sends `request` to the cluster, retrying on other nodes until the
    /// timeout, asking `avoid` only if it is the only node configured.
    async fn send(&self, request: ClientRequest, avoid: Option<NodeId>) -> Reply {
        let deadline = Instant::now() + self.timeout;
        let mut last_error = VaultError::Unavailable("no node could be reached".into());
        // A node that refused our certificate says more than a later node
        // that merely ran out of time: that is the error to report.
        let mut refusal = None;
        // Likewise a node's own reason for refusing (no leader, a full disk)
        // says more than the deadline cutting the last attempt short.
        let mut answered = None;
        let count = self.nodes.len().max(1);
        let mut attempt = 0usize;
        while Instant::now() < deadline {
            let index = (self.preferred.load(Ordering::Relaxed) + attempt) % count;
            if count > 1 && avoid.is_some() && self.nodes.get(index).map(|(id, _)| *id) == avoid {
                attempt += 1;
                continue;
            }
            match self.call_index(index, &request, deadline).await {
                Ok(Err(error @ VaultError::Unavailable(_))) => {
                    if refusal.is_none() && is_certificate_refusal(&error) {
                        refusal = Some(error.clone());
                    }
                    answered = Some(error.clone());
                    last_error = error;
                    attempt += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(error) => {
                    if refusal.is_none() && is_certificate_refusal(&error) {
                        refusal = Some(error.clone());
                    }
                    last_error = error;
                    attempt += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Ok(reply) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return reply;
                }
            }
        }
        Err(match refusal.or(answered).unwrap_or(last_error) {
            VaultError::Unavailable(message) => VaultError::Unavailable(message),
            other => VaultError::Unavailable(format!("cluster unavailable: {other}")),
        })
    }

    /// Sends `request` to node `id` only, once, within the client timeout.
    /// Used by `status`, which asks every node about itself.
    pub async fn call_node(&self, id: NodeId, request: Request) -> Reply {
        let index = self
            .nodes
            .iter()
            .position(|(node, _)| *node == id)
            .ok_or_else(|| {
                VaultError::NotFound(format!("{id} is not in the client configuration"))
            })?;
        let request = ClientRequest {
            session: None,
            request,
        };
        self.call_index(index, &request, Instant::now() + self.timeout)
            .await?
    }

    /// One attempt at node `index`: `Err` when the node could not be reached.
    async fn call_index(
        &self,
        index: usize,
        request: &ClientRequest,
        deadline: Instant,
    ) -> Result<Reply, VaultError> {
        let (id, connection) = self.connect_index(index, deadline).await?;
        let wire = WireRequest::Client(request.clone());
        let outcome = tokio::time::timeout_at(deadline, connection.request(&wire)).await;
        match outcome {
            Ok(Ok(WireResponse::Client(reply))) => Ok(reply),
            Ok(Ok(WireResponse::Node(_) | WireResponse::TwoPc(_))) => Err(VaultError::Internal(
                format!("{id} answered with a node reply"),
            )),
            Ok(Err(error)) => {
                self.connections.lock().await.remove(&id);
                if let Some(refusal) = connection.handshake_refusal() {
                    return Err(VaultError::Unavailable(format!(
                        "{id} {REFUSED_CERTIFICATE} ({refusal}); is it issued by the cluster CA?"
                    )));
                }
                Err(VaultError::Unavailable(format!("{id}: {error}")))
            }
            Err(_) => Err(VaultError::Unavailable(format!(
                "{id} did not answer in time"
            ))),
        }
    }

    /// Downloads a consistent copy of the replicated state (`snapshot
    /// save`, admin only): the first node that answers takes a linearizable
    /// snapshot and streams it. Nodes that cannot be reached or answer
    /// "unavailable" are skipped until the client timeout, as for
    /// [`VaultClient::call`]; any other refusal (permission denied) is the
    /// answer. Once the download has started, each chunk must arrive
    /// within the client timeout; `progress(received, total)` is called
    /// after each. A stream that ends early, sends more than it announced
    /// or sends anything but chunks is an error: a partial state is never
    /// returned.
    pub async fn snapshot_save(
        &self,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<DownloadedSnapshot, VaultError> {
        let deadline = Instant::now() + self.timeout;
        let request = WireRequest::Client(ClientRequest {
            session: None,
            request: Request::SnapshotSave,
        });
        let count = self.nodes.len().max(1);
        let mut last_error = VaultError::Unavailable("no node could be reached".into());
        let mut attempt = 0usize;
        while Instant::now() < deadline {
            let index = (self.preferred.load(Ordering::Relaxed) + attempt) % count;
            attempt += 1;
            match self.start_download(index, &request, deadline).await {
                Ok(Ok((node, mut stream, started))) => {
                    return self
                        .finish_download(node, &mut stream, started, &mut progress)
                        .await;
                }
                Ok(Err(error @ VaultError::Unavailable(_))) | Err(error) => {
                    last_error = error;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Ok(Err(refusal)) => return Err(refusal),
            }
        }
        Err(last_error)
    }

    /// Asks node `index` for a snapshot and reads its first frame: `Err`
    /// when the node could not be reached, `Ok(Err)` when it refused.
    async fn start_download(
        &self,
        index: usize,
        request: &WireRequest,
        deadline: Instant,
    ) -> Result<Result<(NodeId, SnapshotStream, (u64, u64, u64)), VaultError>, VaultError> {
        let (id, connection) = self.connect_index(index, deadline).await?;
        let unreachable = |error: consensus::transport::TransportError| {
            VaultError::Unavailable(format!("{id}: {error}"))
        };
        let late = |_| VaultError::Unavailable(format!("{id} did not answer in time"));
        let mut stream = tokio::time::timeout_at(deadline, connection.request_stream(request))
            .await
            .map_err(late)?
            .map_err(unreachable)?;
        let first = tokio::time::timeout_at(deadline, stream.next())
            .await
            .map_err(late)?;
        let first = match first {
            Ok(first) => first,
            Err(error) => {
                self.connections.lock().await.remove(&id);
                return Err(unreachable(error));
            }
        };
        Ok(match first {
            Some(WireResponse::Client(Ok(Response::SnapshotStarted { index, term, bytes }))) => {
                Ok((id, stream, (index, term, bytes)))
            }
            Some(WireResponse::Client(Err(error))) => Err(error),
            Some(_) => Err(VaultError::Internal(format!(
                "{id} answered a snapshot request with something else"
            ))),
            None => Err(VaultError::Unavailable(format!(
                "{id} closed the stream without an answer"
            ))),
        })
    }

    /// Reads the chunks that follow [`Response::SnapshotStarted`].
    async fn finish_download(
        &self,
        node: NodeId,
        stream: &mut SnapshotStream,
        (index, term, total): (u64, u64, u64),
        progress: &mut impl FnMut(u64, u64),
    ) -> Result<DownloadedSnapshot, VaultError> {
        if total > MAX_SNAPSHOT_BYTES {
            return Err(VaultError::Internal(format!(
                "{node} announced a snapshot of {total} bytes, more than the {MAX_SNAPSHOT_BYTES} a backup may hold"
            )));
        }
        // Grown as bytes arrive, so an announced size costs nothing up front.
        let mut state = Vec::with_capacity(total.min(64 << 20) as usize);
        progress(0, total);
        loop {
            let frame = tokio::time::timeout(self.timeout, stream.next())
                .await
                .map_err(|_| {
                    VaultError::Unavailable(format!(
                        "{node} stopped sending the snapshot after {} of {total} bytes",
                        state.len()
                    ))
                })?
                .map_err(|error| {
                    VaultError::Unavailable(format!(
                        "the snapshot from {node} broke off after {} of {total} bytes: {error}",
                        state.len()
                    ))
                })?;
            match frame {
                Some(WireResponse::Client(Ok(Response::SnapshotChunk(chunk)))) => {
                    if state.len() as u64 + chunk.len() as u64 > total {
                        return Err(VaultError::Internal(format!(
                            "{node} sent more snapshot bytes than the {total} it announced"
                        )));
                    }
                    state.extend_from_slice(&chunk);
                    progress(state.len() as u64, total);
                }
                None if state.len() as u64 == total => {
                    return Ok(DownloadedSnapshot {
                        node,
                        index,
                        term,
                        state,
                    })
                }
                None => {
                    return Err(VaultError::Unavailable(format!(
                        "the snapshot from {node} ended after {} of {total} bytes",
                        state.len()
                    )))
                }
                Some(_) => {
                    return Err(VaultError::Internal(format!(
                        "{node} sent something other than snapshot chunks"
                    )))
                }
            }
        }
    }

    /// The connection to node `index` (of the configured list), dialled if
    /// needed within [`CONNECT_TIMEOUT`] or `deadline`, whichever is first.
    async fn connect_index(
        &self,
        index: usize,
        deadline: Instant,
    ) -> Result<(NodeId, Arc<Client>), VaultError> {
        let (id, address) = self
            .nodes
            .get(index)
            .ok_or_else(|| VaultError::Invalid("the client configuration lists no nodes".into()))?;
        let connect_deadline = deadline.min(Instant::now() + CONNECT_TIMEOUT);
        let connection = tokio::time::timeout_at(connect_deadline, self.connection(*id, address))
            .await
            .map_err(|_| VaultError::Unavailable(format!("{id} did not answer in time")))??;
        Ok((*id, connection))
    }

    /// Opens the connection to the preferred node now (handshake included),
    /// so that the first request does not pay for it: a benchmark connects
    /// every client before it starts the clock.
    pub async fn connect(&self) -> Result<(), VaultError> {
        let index = self.preferred.load(Ordering::Relaxed);
        let (id, address) = self
            .nodes
            .get(index)
            .ok_or_else(|| VaultError::Invalid("the client configuration lists no nodes".into()))?;
        tokio::time::timeout(self.timeout, self.connection(*id, address))
            .await
            .map_err(|_| VaultError::Unavailable(format!("{id} did not answer in time")))?
            .map(|_| ())
    }

    async fn connection(
        &self,
        id: NodeId,
        address: &PeerAddress,
    ) -> Result<Arc<Client>, VaultError> {
        let mut connections = self.connections.lock().await;
        if let Some(client) = connections.get(&id) {
            return Ok(client.clone());
        }
        let client = Client::connect(&self.credentials, address)
            .await
            .map_err(|error| VaultError::Unavailable(format!("cannot connect to {id}: {error}")))?;
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

/// The frames of a streamed answer from a node.
type SnapshotStream = consensus::transport::ResponseStream<WireResponse>;

/// Whether a request changes state (and so needs a session for dedup).
fn is_write(request: &Request) -> bool {
    matches!(
        request,
        Request::AddSecret { .. }
            | Request::Share { .. }
            | Request::Unshare { .. }
            | Request::PublishKey { .. }
            | Request::Delete { .. }
    )
}
