//! `node run`: one vault node in the foreground until SIGINT or SIGTERM.

use crate::config::node::{LogFormat, NodeConfig, VotePolicy};
use crate::exit::Failure;
use crate::session::peer_address;
use anyhow::{Context, Result};
use consensus::node::{NodeOptions, StartError};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use vault::server::{ServerError, ServerOptions};

/// Loads `config` (with `VAULT_*` overrides) and runs the node.
///
/// A node whose data directory holds no Raft state refuses to start, and
/// writes nothing, unless it is a joiner (`join = true`): it lost its data
/// or was never initialised by `cluster init` (SPEC §13).
pub fn run(config: &Path, log_format: Option<LogFormat>) -> Result<()> {
    let config = crate::config::node::load(config, &|name| std::env::var(name).ok())?;
    // Kept to the end: dropping it flushes the lines still queued. Set up
    // once the config is read, which names the format (a config error is
    // printed by main as one sentence on stderr).
    let _log_guard = init_logging(log_format.unwrap_or(config.log_format));
    let options = server_options(&config)?;
    consensus::node::preflight(&options.bus.node).map_err(|error| start_failure(&config, error))?;
    create_data_dir(&config.data_dir)?;
    // Held until `run` returns; the kernel releases it if the process dies.
    let _lock = crate::data_dir::DataDirLock::acquire(&config.data_dir)?;
    crate::data_dir::tighten(&config.data_dir)?;
    tracing::info!(
        "Node {} two-phase commit policy: vote {:?}, vote timeout {} ms, decision timeout {} ms",
        config.id,
        config.twopc.vote,
        config.twopc.vote_timeout_ms,
        config.twopc.decision_timeout_ms
    );
    // One async thread: a node's async work (QUIC, the Raft driver,
    // request handling) is a fraction of a core, and its heavy work runs
    // on threads of its own (log writer, apply, snapshots, 2PC prepares,
    // stale reads and backups on the blocking pool). With two async
    // workers on 2 vCPUs an idle cluster used 10-20 % more CPU and a write
    // cost about 0.7 more context switches (docs/performance.md).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        vault::server::run(options, shutdown_signal())
            .await
            .map_err(|error| match error {
                ServerError::Start(error) => start_failure(&config, error),
                other => other.into(),
            })?;
        tracing::info!("Node {} stopped cleanly", config.id);
        Ok(())
    })
}

/// The one sentence for a node that may not start: for a node without
/// Raft state, what to do about it.
pub(crate) fn start_failure(config: &NodeConfig, error: StartError) -> anyhow::Error {
    match error {
        StartError::NoState { .. } => Failure::new(
            crate::exit::ExitCode::Failure,
            format!(
                "data directory {} holds no Raft state: this node lost its data or was never \
                 initialised; remove it from the cluster (`vault-cli member remove {id}`) and add \
                 it back as a new member (`vault-cli cluster add-node`, `vault-cli member add`)",
                config.data_dir.display(),
                id = config.id,
            ),
        )
        .into(),
        other => other.into(),
    }
}

/// Creates the data directory if missing (a joiner's), owner-only.
pub(crate) fn create_data_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create the data directory {}", dir.display()))
}

/// What the bus needs to run this node, whichever application it runs.
pub(crate) fn bus_options(config: &NodeConfig) -> Result<bus::BusOptions> {
    let mut peers = BTreeMap::new();
    let mut unresolved_peers = BTreeMap::new();
    for (id, address) in &config.peers {
        match peer_address(address) {
            Ok(resolved) => {
                peers.insert(*id, resolved);
            }
            // A host that does not resolve yet (not up, its name not yet
            // published) is resolved again in the background; a malformed
            // address or our own is an error now.
            Err(error) if *id != config.id && has_port(address) => {
                tracing::warn!("peer {id} at {address} does not resolve yet: {error:#}");
                unresolved_peers.insert(*id, address.clone());
            }
            Err(error) => return Err(error),
        }
    }
    let node = NodeOptions {
        id: config.id,
        raft_dir: config.raft_dir(),
        join: config.join,
        heartbeat: Duration::from_millis(config.raft.heartbeat_ms),
        election_min: Duration::from_millis(config.raft.election_min_ms),
        election_max: Duration::from_millis(config.raft.election_max_ms),
        snapshot_every: config.raft.snapshot_every,
        snapshot_after_bytes: config.raft.snapshot_after_mb.saturating_mul(1 << 20),
        keep_log_bytes: config.raft.keep_log_mb.saturating_mul(1 << 20),
        request_timeout: Duration::from_secs(5),
        max_pending_requests: consensus::node::DEFAULT_MAX_PENDING_REQUESTS,
        seed: rand::random(),
        min_free_bytes: config.raft.min_free_mb.saturating_mul(1 << 20),
        metrics: consensus::metrics::Metrics::new(),
    };
    Ok(bus::BusOptions {
        node,
        listen: config.listen,
        peers,
        unresolved_peers,
        ca: config.ca.clone(),
        cert: config.cert.clone(),
        key: config.key.clone(),
        metrics_listen: config.metrics_listen,
    })
}

/// The vault node's options: the bus's, and the vault's own.
pub(crate) fn server_options(config: &NodeConfig) -> Result<ServerOptions> {
    Ok(ServerOptions {
        bus: bus_options(config)?,
        database: config.data_dir.join("vault.db"),
        twopc: vault::server::TwoPcOptions {
            vote: match config.twopc.vote {
                VotePolicy::Commit => consensus::twopc::VotePolicy::Commit,
                VotePolicy::Abort => consensus::twopc::VotePolicy::Abort,
            },
            vote_timeout: Duration::from_millis(config.twopc.vote_timeout_ms),
            decision_timeout: Duration::from_millis(config.twopc.decision_timeout_ms),
        },
        max_versions: config.vault.max_versions,
    })
}

/// Whether `address` ends in `:PORT`: then a lookup failure is about the
/// host, which may appear later.
fn has_port(address: &str) -> bool {
    address
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
}

/// Completes on the first SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

/// `tracing` to stderr, level from `RUST_LOG` (default `info`), as text
/// or as one JSON object per line (`{"timestamp","level","message",
/// "target",...}`: the message field holds SPEC §7's exact RPC texts, and
/// structured fields sit beside it).
///
/// Lines are formatted on the calling thread and written by a dedicated
/// thread: client RPCs are logged at `info` (SPEC §7), and a `write(2)` to
/// the log file on the request path of every write cost more than the
/// request itself under load. The writer is not lossy: when its queue is
/// full, callers wait rather than drop lines. The returned guard flushes
/// the queue when dropped.
pub fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder
            // Colour only on a terminal: node.log files stay plain text.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder
            .json()
            // `message` and the event's fields at the top level, where log
            // shippers look for them; no span context (the node logs none).
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_ansi(false)
            .try_init(),
    };
    guard
}
