//! A running vault node: the vault plug-in on the bus.
//!
//! ```text
//!  clients ──QUIC/mTLS──► bus (transport, request loop, forwarding, status,
//!                           │  membership, metrics, systemd)
//!  peers   ◄──Raft msgs─────┤
//!                           ▼
//!                handler: VaultApplication (authz, plan) ──► Node ──► Raft
//!                           │                                  │
//!                           └─► twopc (deletes)                ▼
//!                                                      VaultStateMachine
//! ```
//!
//! [`run`] opens what is the vault's (its SQLite database, the 2PC
//! participant's connection) and hands the rest of the lifecycle to
//! [`bus::run`].

mod backup;
mod handler;
mod twopc;
mod wire;

pub use handler::VaultApplication;
pub use twopc::TwoPcOptions;
pub use wire::{TwoPcReply, TwoPcRequest, WireRequest, WireResponse};

use crate::store::{AppliedDecisions, VaultStateMachine};
use bus::{BusOptions, Launch, RunError, Services};
use std::path::PathBuf;

/// The transport a vault node runs.
pub type VaultTransport = bus::BusTransport<VaultApplication>;

/// Everything needed to run one vault node.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// What the bus needs to run the node: Raft runtime options, the
    /// address to bind, the peers, the certificates, the metrics listener.
    pub bus: BusOptions,
    /// Where the SQLite database lives.
    pub database: PathBuf,
    /// Two-phase-commit policy and timeouts (`[twopc]`).
    pub twopc: TwoPcOptions,
    /// How many versions of each secret are kept, the current one included
    /// (`[vault] max_versions`; the same on every node).
    pub max_versions: u32,
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
    /// The node stopped because of a fatal error: its log or its state
    /// machine failed, or a worker of it panicked.
    #[error("node stopped: {0}")]
    Stopped(#[from] consensus::node::Fatal),
}

impl From<RunError<ServerError>> for ServerError {
    fn from(error: RunError<ServerError>) -> Self {
        match error {
            RunError::Certs(error) => ServerError::Certs(error),
            RunError::Transport(error) => ServerError::Transport(error),
            RunError::Start(error) => ServerError::Start(error),
            RunError::Application(error) => error,
            RunError::Stopped(error) => ServerError::Stopped(error),
        }
    }
}

/// Runs a node until `shutdown` completes (or a fatal error), then stops
/// gracefully. A node whose Raft directory holds no state and that is not
/// a joiner is refused ([`consensus::node::StartError::NoState`]) before
/// anything is written.
pub async fn run(
    options: ServerOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    let bus_options = options.bus.clone();
    let launch = VaultLaunch {
        options,
        opened: None,
    };
    Ok(bus::run(bus_options, launch, shutdown).await?)
}

/// Opens the vault's database for the bus, then starts its 2PC service.
struct VaultLaunch {
    options: ServerOptions,
    /// The participant's connection and the decisions feed, opened with
    /// the applying connection in [`Launch::open`].
    opened: Option<(VaultStateMachine, AppliedDecisions)>,
}

impl Launch for VaultLaunch {
    type Application = VaultApplication;
    type Error = ServerError;

    fn open(&mut self) -> Result<VaultStateMachine, ServerError> {
        let options = &self.options;
        let mut machine = VaultStateMachine::open(&options.database)?;
        machine.log_decisions_as(&options.bus.node.id.to_string());
        machine.keep_versions(options.max_versions);
        let applied_decisions = AppliedDecisions::new();
        machine.publish_decisions_to(applied_decisions.clone());
        let participant_store = VaultStateMachine::open_participant(&options.database)?;
        self.opened = Some((participant_store, applied_decisions));
        Ok(machine)
    }

    fn start(
        self,
        services: &mut Services<VaultApplication>,
    ) -> Result<VaultApplication, ServerError> {
        // bus::run calls `open` before `start`; an error, not a panic, if not.
        let (participant_store, applied_decisions) = self.opened.ok_or_else(|| {
            std::io::Error::other("the vault database was not opened before the node started")
        })?;
        let twopc = twopc::TwoPc::new(
            services.node().clone(),
            services.transport().clone(),
            participant_store,
            applied_decisions,
            self.options.twopc,
        )?;
        services.spawn(twopc.clone().recovery_loop());
        services.spawn(twopc.clone().pruning_loop());
        Ok(VaultApplication::new(twopc))
    }
}
