//! A running vault node: the QUIC transport, the Raft node runtime and the
//! SQLite state machine put together, serving clients.
//!
//! ```text
//!  clients ──QUIC/mTLS──► Transport ──requests──► handler ──► Node ──► Raft
//!                           │   ▲                  (authz,     │
//!  peers   ◄──Raft msgs─────┘   └──── Node::deliver  plan)     ▼
//!                                                       VaultStateMachine
//! ```
//!
//! [`run`] owns the lifecycle: bind, start, serve until a shutdown signal,
//! then stop accepting, let the driver flush its log, and close connections.

mod backup;
mod handler;
mod late_peers;
mod members;
mod network;
mod systemd;
mod twopc;
mod wire;

pub use network::QuicNetwork;
pub use twopc::TwoPcOptions;
pub use wire::{TwoPcReply, TwoPcRequest, WireRequest, WireResponse};

use crate::store::{AppliedDecisions, VaultStateMachine};
use certs::Credentials;
use consensus::node::{Node, NodeOptions};
use consensus::raft::{Message, NodeId};
use consensus::transport::{PeerAddress, Transport, TransportConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The transport a vault node runs.
pub type VaultTransport = Transport<Message, WireRequest, WireResponse>;

/// Everything needed to run one vault node.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Raft runtime options (id, data directory for the log, timing).
    pub node: NodeOptions,
    /// Where the SQLite database lives.
    pub database: PathBuf,
    /// Address to bind.
    pub listen: SocketAddr,
    /// Every member and how to reach it (this node included).
    pub peers: BTreeMap<NodeId, PeerAddress>,
    /// Members whose configured `host:port` did not resolve at start (a host
    /// that is not up yet): resolved again in the background with backoff
    /// and dialled once they resolve, so one missing host stops nobody.
    pub unresolved_peers: BTreeMap<NodeId, String>,
    /// Cluster CA certificate.
    pub ca: PathBuf,
    /// This node's certificate.
    pub cert: PathBuf,
    /// This node's key.
    pub key: PathBuf,
    /// Two-phase-commit policy and timeouts (`[twopc]`).
    pub twopc: TwoPcOptions,
    /// How many versions of each secret are kept, the current one included
    /// (`[vault] max_versions`; the same on every node).
    pub max_versions: u32,
    /// Where to serve `GET /metrics` and `GET /health` over HTTP
    /// (`[metrics] listen`); none: not served. The metrics themselves are
    /// `node.metrics`.
    pub metrics_listen: Option<SocketAddr>,
}

/// Why a node could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Certificates could not be loaded.
    #[error("certificates: {0}")]
    Certs(#[from] certs::CertsError),
    /// The QUIC endpoint could not be set up.
    #[error("transport: {0}")]
    Transport(#[from] consensus::transport::TransportError),
    /// The database could not be opened.
    #[error("database: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The Raft node could not start.
    #[error("{0}")]
    Start(#[from] consensus::node::StartError),
    /// A thread of the node could not be started.
    #[error("cannot start a thread: {0}")]
    Spawn(#[from] std::io::Error),
    /// The node stopped because of a fatal error.
    #[error("node stopped: {0}")]
    Stopped(#[from] consensus::node::NodeError),
}

/// Runs a node until `shutdown` completes (or a fatal error), then stops
/// gracefully. A node whose Raft directory holds no state and that is not
/// a joiner is refused ([`consensus::node::StartError::NoState`]) before
/// anything is written.
pub async fn run(
    options: ServerOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    // Before anything touches the data directory: a node that may not
    // start (no Raft state, not a joiner) leaves it as it found it.
    consensus::node::preflight(&options.node)?;
    let credentials = Credentials::load(&options.ca, &options.cert, &options.key)?;
    let mut config = TransportConfig::new(options.node.id, options.listen);
    config.metrics = options.node.metrics.clone();
    config.peers = options
        .peers
        .iter()
        .filter(|(id, _)| **id != options.node.id)
        .map(|(id, address)| (*id, address.clone()))
        .collect();
    let config_peers = config.peers.clone();
    let (transport, inbox) = VaultTransport::bind(config, &credentials).await?;
    // Trust follows membership (SPEC §13): until the Raft log names the
    // members, only the configured peers' certificates are let in.
    transport.set_trusted_nodes(Some(
        config_peers
            .keys()
            .chain(options.unresolved_peers.keys())
            .copied()
            .collect(),
    ));
    let transport = Arc::new(transport);
    let mut machine = VaultStateMachine::open(&options.database)?;
    machine.log_decisions_as(&options.node.id.to_string());
    machine.keep_versions(options.max_versions);
    let applied_decisions = AppliedDecisions::new();
    machine.publish_decisions_to(applied_decisions.clone());
    let participant_store = VaultStateMachine::open_participant(&options.database)?;
    let network = Arc::new(QuicNetwork::new(transport.clone(), config_peers));
    let (node, mut driver) = Node::start(&options.node, machine, network)?;
    tracing::info!(
        "Node {} listening on {} with {} peers",
        options.node.id,
        options.listen,
        options.peers.len().saturating_sub(1)
    );
    let metrics_server = match options.metrics_listen {
        Some(address) => {
            let status_node = node.clone();
            let status: consensus::metrics::StatusSource = Arc::new(move || status_node.status());
            match consensus::metrics::serve(address, options.node.metrics.clone(), status).await {
                Ok((_, server)) => Some(tokio::spawn(server)),
                Err(error) => {
                    // Monitoring must not take the node down: it serves its
                    // peers and clients without metrics, and says so.
                    tracing::error!("{error}; this node runs without /metrics and /health");
                    None
                }
            }
        }
        None => None,
    };
    let notifier = systemd::spawn(&node);
    let peer_pump = tokio::spawn(handler::pump_peer_messages(
        node.clone(),
        inbox.peer_messages,
    ));
    let twopc = twopc::TwoPc::new(
        node.clone(),
        transport.clone(),
        participant_store,
        applied_decisions,
        options.twopc,
    )?;
    let recovery = tokio::spawn(twopc.clone().recovery_loop());
    let pruning = tokio::spawn(twopc.clone().pruning_loop());
    let late_peers = tokio::spawn(late_peers::resolve_later(
        transport.clone(),
        options.unresolved_peers.clone(),
    ));
    let addresses = Arc::new(
        options
            .peers
            .iter()
            .map(|(id, address)| {
                let host = &address.server_name;
                let port = address.address.port();
                let text = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                (*id, text)
            })
            .chain(
                options
                    .unresolved_peers
                    .iter()
                    .map(|(id, text)| (*id, text.clone())),
            )
            .collect(),
    );
    let request_loop = tokio::spawn(handler::serve_requests(
        node.clone(),
        transport.clone(),
        twopc,
        addresses,
        inbox.requests,
    ));
    let outcome = tokio::select! {
        () = shutdown => {
            tracing::info!("Node {} shutting down", options.node.id);
            None
        }
        result = &mut driver => Some(result),
    };
    systemd::stopping();
    request_loop.abort();
    recovery.abort();
    pruning.abort();
    late_peers.abort();
    for task in [metrics_server, notifier].into_iter().flatten() {
        task.abort();
    }
    node.shutdown().await;
    let result = match outcome {
        Some(result) => result,
        None => tokio::time::timeout(Duration::from_secs(10), driver)
            .await
            .unwrap_or(Ok(Ok(()))),
    };
    peer_pump.abort();
    transport.shutdown().await;
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(ServerError::Stopped(error)),
        Err(join_error) => Err(ServerError::Stopped(
            consensus::node::NodeError::StateMachine(format!("driver task failed: {join_error}")),
        )),
    }
}
