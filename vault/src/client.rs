//! The client library: used by `vault-cli` and the tests to talk to a
//! cluster.
//!
//! The connections and the failover are the bus's ([`bus::client::Cluster`]):
//! it knows every node's address, keeps one mutually authenticated QUIC
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
use bus::client::{CallError, Cluster, ATTEMPT_TIMEOUT};
use certs::Credentials;
use consensus::raft::NodeId;
use consensus::transport::PeerAddress;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Pause before trying the next node after a failure.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

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
    cluster: Cluster,
    client_id: u64,
    next_seq: AtomicU64,
    timeout: Duration,
}

/// A node's failure to answer as the client-facing error: "unavailable"
/// (exit code 6), except a client configuration without nodes.
fn call_error(error: CallError) -> VaultError {
    match error {
        CallError::NoNodes => VaultError::Invalid(error.to_string()),
        other => VaultError::Unavailable(other.to_string()),
    }
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
            cluster: Cluster::new(credentials, nodes),
            client_id: rand::random::<u64>() | 1,
            next_seq: AtomicU64::new(1),
            timeout,
        }
    }

    /// Starts with node `index` (of the configured list) instead of the
    /// first, so many clients spread their connections over the cluster.
    pub fn prefer(&self, index: usize) {
        self.cluster.prefer(index);
    }

    /// The nodes this client knows.
    pub fn nodes(&self) -> &[(NodeId, PeerAddress)] {
        self.cluster.nodes()
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
        // A delete is not sent to a second node while the first may still
        // be deciding it: the second would run its own transaction under
        // the same session, and its abort could answer for the first's
        // commit.
        let attempt = match request.request {
            Request::Delete { .. } => self.timeout,
            _ => ATTEMPT_TIMEOUT,
        };
        let wire = WireRequest::Client(request);
        let unavailable = |response: &WireResponse| {
            matches!(
                response,
                WireResponse::Client(Err(VaultError::Unavailable(_)))
            )
        };
        let outcome = self
            .cluster
            .call(&wire, self.timeout, attempt, avoid, unavailable)
            .await;
        match outcome {
            Ok(response) => client_reply(response),
            // A node's refusal of our certificate, a node's own reason for
            // refusing (no leader, a full disk) or the last failure.
            Err(error) => Err(match call_error(error) {
                VaultError::Unavailable(message) => VaultError::Unavailable(message),
                other => VaultError::Unavailable(format!("cluster unavailable: {other}")),
            }),
        }
    }

    /// Sends `request` to node `id` only, once, within the client timeout.
    /// Used by `status`, which asks every node about itself.
    pub async fn call_node(&self, id: NodeId, request: Request) -> Reply {
        let index = self.cluster.index_of(id).ok_or_else(|| {
            VaultError::NotFound(format!("{id} is not in the client configuration"))
        })?;
        let request = WireRequest::Client(ClientRequest {
            session: None,
            request,
        });
        let deadline = Instant::now() + self.timeout;
        let response = self
            .cluster
            .request(index, &request, deadline)
            .await
            .map_err(call_error)?;
        client_reply(response)
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
        let count = self.cluster.nodes().len().max(1);
        let mut last_error = VaultError::Unavailable("no node could be reached".into());
        let mut attempt = 0usize;
        while Instant::now() < deadline {
            let index = (self.cluster.preferred() + attempt) % count;
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
        let (id, connection) = self
            .cluster
            .connect_index(index, deadline)
            .await
            .map_err(call_error)?;
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
                self.cluster.forget(id).await;
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

    /// Opens the connection to the preferred node now (handshake included),
    /// so that the first request does not pay for it: a benchmark connects
    /// every client before it starts the clock.
    pub async fn connect(&self) -> Result<(), VaultError> {
        self.cluster.connect(self.timeout).await.map_err(call_error)
    }

    /// Closes every connection politely, all at once.
    pub async fn close(&self) {
        self.cluster.close().await
    }
}

/// The client reply in a node's answer.
fn client_reply(response: WireResponse) -> Reply {
    match response {
        WireResponse::Client(reply) => reply,
        WireResponse::Node(_) | WireResponse::Peer(_) => Err(VaultError::Internal(
            "a node answered with a node reply".into(),
        )),
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
