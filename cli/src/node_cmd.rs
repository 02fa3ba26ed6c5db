//! `node run`: one vault node in the foreground until SIGINT or SIGTERM.

use crate::client_cmd::peer_address;
use crate::config::node::{NodeConfig, VotePolicy};
use anyhow::{Context, Result};
use consensus::node::NodeOptions;
use std::path::Path;
use std::time::Duration;
use vault::server::ServerOptions;

/// Loads `config` (with `VAULT_*` overrides) and runs the node.
pub fn run(config: &Path) -> Result<()> {
    // Kept to the end: dropping it flushes the lines still queued.
    let _log_guard = init_logging();
    let config = crate::config::node::load(config, &|name| std::env::var(name).ok())?;
    let options = server_options(&config)?;
    tracing::info!(
        "Node {} two-phase commit policy: vote {:?}, vote timeout {} ms, decision timeout {} ms",
        config.id,
        config.twopc.vote,
        config.twopc.vote_timeout_ms,
        config.twopc.decision_timeout_ms
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        vault::server::run(options, shutdown_signal()).await?;
        tracing::info!("Node {} stopped cleanly", config.id);
        Ok(())
    })
}

fn server_options(config: &NodeConfig) -> Result<ServerOptions> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let peers = config
        .peers
        .iter()
        .map(|(id, address)| Ok((*id, peer_address(address)?)))
        .collect::<Result<_>>()?;
    let node = NodeOptions {
        id: config.id,
        raft_dir: config.data_dir.join("raft"),
        initial_voters: config.peers.keys().copied().collect(),
        heartbeat: Duration::from_millis(config.raft.heartbeat_ms),
        election_min: Duration::from_millis(config.raft.election_min_ms),
        election_max: Duration::from_millis(config.raft.election_max_ms),
        snapshot_every: config.raft.snapshot_every,
        request_timeout: Duration::from_secs(5),
        seed: rand::random(),
    };
    Ok(ServerOptions {
        node,
        database: config.data_dir.join("vault.db"),
        listen: config.listen,
        peers,
        ca: config.ca.clone(),
        cert: config.cert.clone(),
        key: config.key.clone(),
        twopc: vault::server::TwoPcOptions {
            vote: match config.twopc.vote {
                VotePolicy::Commit => consensus::twopc::VotePolicy::Commit,
                VotePolicy::Abort => consensus::twopc::VotePolicy::Abort,
            },
            vote_timeout: Duration::from_millis(config.twopc.vote_timeout_ms),
            decision_timeout: Duration::from_millis(config.twopc.decision_timeout_ms),
        },
    })
}

/// Completes on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
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

/// `tracing` to stderr, level from `RUST_LOG` (default `info`).
///
/// Lines are formatted on the calling thread and written by a dedicated
/// thread: client RPCs are logged at `info` (SPEC §7), and a `write(2)` to
/// the log file on the request path of every write cost more than the
/// request itself under load. The writer is not lossy: when its queue is
/// full, callers wait rather than drop lines. The returned guard flushes
/// the queue when dropped.
pub fn init_logging() -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour only on a terminal: node.log files stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer)
        .try_init();
    guard
}
