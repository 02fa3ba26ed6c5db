//! [`run`]: the lifecycle of a node of any application. Bind, start the
//! Raft node and the application, serve until a shutdown signal, then stop
//! accepting, let the driver flush its log, and close connections.

use crate::application::{Application, BusTransport, Launch, Services};
use crate::members::Addresses;
use crate::network::QuicNetwork;
use crate::serve::{pump_peer_messages, serve_requests, Shared};
use crate::{late_peers, systemd};
use certs::Credentials;
use consensus::node::{Fatal, Node, NodeOptions, Worker};
use consensus::raft::NodeId;
use consensus::transport::{PeerAddress, TransportConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Everything the bus needs to run one node, whatever the application.
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// Raft runtime options (id, data directory for the log, timing).
    pub node: NodeOptions,
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
    /// Where to serve `GET /metrics` and `GET /health` over HTTP; none: not
    /// served. The metrics themselves are `node.metrics`.
    pub metrics_listen: Option<SocketAddr>,
}

/// Why a node could not start or stopped abnormally; `E` is the
/// application's own ([`Launch::Error`]).
#[derive(Debug, thiserror::Error)]
pub enum RunError<E: std::error::Error + 'static> {
    /// Certificates could not be loaded.
    #[error("certificates: {0}")]
    Certs(#[from] certs::CertsError),
    /// The QUIC endpoint could not be set up.
    #[error("transport: {0}")]
    Transport(#[from] consensus::transport::TransportError),
    /// The Raft node could not start.
    #[error("{0}")]
    Start(#[from] consensus::node::StartError),
    /// The application could not open or start.
    #[error(transparent)]
    Application(E),
    /// The node stopped because of a fatal error: its log or its state
    /// machine failed, or a worker of it panicked.
    #[error("node stopped: {0}")]
    Stopped(#[from] Fatal),
}

/// Runs a node of the application `launch` starts until `shutdown` completes (or a fatal
/// error), then stops gracefully. A node whose Raft directory holds no
/// state and that is not a joiner is refused
/// ([`consensus::node::StartError::NoState`]) before anything is written,
/// the application's files included.
pub async fn run<L: Launch>(
    options: BusOptions,
    mut launch: L,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError<L::Error>> {
    // Before anything touches the data directory: a node that may not
    // start (no Raft state, not a joiner) leaves it as it found it.
    consensus::node::preflight(&options.node)?;
    let credentials = Credentials::load(&options.ca, &options.cert, &options.key)?;
    let (transport, inbox, configured) = bind::<L::Application>(&options, &credentials).await?;
    let machine = launch.open().map_err(RunError::Application)?;
    let network = Arc::new(QuicNetwork::<L::Application>::new(
        transport.clone(),
        configured,
    ));
    let (node, mut driver) = Node::start(&options.node, machine, network)?;
    tracing::info!(
        "Node {} listening on {} with {} peers",
        options.node.id,
        options.listen,
        options.peers.len().saturating_sub(1)
    );
    let mut services = Services {
        node: node.clone(),
        transport: transport.clone(),
        tasks: Vec::new(),
    };
    let started = launch.start(&mut services);
    let mut tasks = services.tasks;
    let application = match started {
        Ok(application) => Arc::new(application),
        Err(error) => {
            for task in &tasks {
                task.abort();
            }
            node.shutdown().await;
            let _ = tokio::time::timeout(Duration::from_secs(10), driver).await;
            transport.shutdown().await;
            return Err(RunError::Application(error));
        }
    };
    tasks.extend(serve_metrics(&options, &node).await);
    tasks.extend(systemd::spawn(&node));
    let peer_pump = tokio::spawn(pump_peer_messages(node.clone(), inbox.peer_messages));
    tasks.push(tokio::spawn(late_peers::resolve_later::<L::Application>(
        transport.clone(),
        options.unresolved_peers.clone(),
    )));
    let shared = Arc::new(Shared {
        node: node.clone(),
        transport: transport.clone(),
        application,
        addresses: addresses(&options),
    });
    tasks.push(tokio::spawn(serve_requests(shared, inbox.requests)));
    let outcome = tokio::select! {
        () = shutdown => {
            tracing::info!("Node {} shutting down", options.node.id);
            None
        }
        result = &mut driver => Some(result),
    };
    systemd::stopping();
    for task in tasks {
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
        Ok(Err(error)) => Err(RunError::Stopped(error)),
        // The node's handle catches the driver's panics itself; this is
        // its watcher task failing (cancelled with the runtime).
        Err(join_error) => Err(RunError::Stopped(Fatal::Panicked {
            worker: Worker::Driver,
            message: join_error.to_string(),
        })),
    }
}

/// The transport, its inbox, and the configured peers (this node excluded).
type Bound<A> = (
    Arc<BusTransport<A>>,
    consensus::transport::Inbox<
        consensus::raft::Message,
        crate::application::WireRequestOf<A>,
        crate::application::WireResponseOf<A>,
    >,
    BTreeMap<NodeId, PeerAddress>,
);

/// Binds the endpoint, trusting only the configured peers until the Raft
/// log names the members (SPEC §13, trust follows membership).
async fn bind<A: Application>(
    options: &BusOptions,
    credentials: &Credentials,
) -> Result<Bound<A>, consensus::transport::TransportError> {
    let mut config = TransportConfig::new(options.node.id, options.listen);
    config.metrics = options.node.metrics.clone();
    config.peers = options
        .peers
        .iter()
        .filter(|(id, _)| **id != options.node.id)
        .map(|(id, address)| (*id, address.clone()))
        .collect();
    let configured = config.peers.clone();
    let (transport, inbox) = BusTransport::<A>::bind(config, credentials).await?;
    transport.set_trusted_nodes(Some(
        configured
            .keys()
            .chain(options.unresolved_peers.keys())
            .copied()
            .collect(),
    ));
    Ok((Arc::new(transport), inbox, configured))
}

/// Serves `/metrics` and `/health` if configured. Monitoring must not take
/// the node down: if the listener cannot start, the node serves its peers
/// and clients without it, and says so.
async fn serve_metrics(options: &BusOptions, node: &Node) -> Option<tokio::task::JoinHandle<()>> {
    let address = options.metrics_listen?;
    let status_node = node.clone();
    let status: consensus::metrics::StatusSource = Arc::new(move || status_node.status());
    match consensus::metrics::serve(address, options.node.metrics.clone(), status).await {
        Ok((_, server)) => Some(tokio::spawn(server)),
        Err(error) => {
            tracing::error!("{error}; this node runs without /metrics and /health");
            None
        }
    }
}

/// Every member's `host:port` as configured, for `member list`.
fn addresses(options: &BusOptions) -> Addresses {
    Arc::new(
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
    )
}
