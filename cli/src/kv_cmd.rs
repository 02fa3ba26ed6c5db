//! `vault-cli kv ...`: the replicated key-value store, the bus's second
//! plug-in. `kv node run` runs a node from the same `node.toml` as `node
//! run` (address, peers, certificates, timing) with its own Raft log and
//! database under `DATA_DIR/kv/` (`cluster init` writes its founding Raft
//! state there too); `kv put|get|cas` are its client, with the same
//! `client.toml`.

use crate::args::{KvCommand, NodeCommand};
use crate::exit::{ExitCode, Failure};
use anyhow::{Context, Result};
use certs::Credentials;
use kv::client::KvClient;
use kv::protocol::KvError;
use serde_json::json;
use std::path::Path;

/// Runs one `kv` subcommand.
pub fn run(config: Option<&Path>, json: bool, command: &KvCommand) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match command {
        KvCommand::Node(NodeCommand::Run(run)) => match config {
            Some(config) => run_node(&runtime, config, run.log_format),
            None => Err(Failure::new(
                ExitCode::Usage,
                "kv node run needs --config DIR/nodeK/node.toml (cluster init writes one per node)",
            )
            .into()),
        },
        client_command => runtime.block_on(run_client(config, json, client_command)),
    }
}

/// A key-value node in the foreground until SIGINT or SIGTERM.
fn run_node(
    runtime: &tokio::runtime::Runtime,
    config: &Path,
    log_format: Option<crate::config::node::LogFormat>,
) -> Result<()> {
    let config = crate::config::node::load(config, &|name| std::env::var(name).ok())?;
    let _log_guard = crate::node_cmd::init_logging(log_format.unwrap_or(config.log_format));
    let mut options = crate::node_cmd::bus_options(&config)?;
    let kv_dir = kv::server::kv_dir(&config.data_dir);
    options.node.raft_dir = kv_dir.join("raft");
    consensus::node::preflight(&options.node)
        .map_err(|error| crate::node_cmd::start_failure(&config, error))?;
    crate::node_cmd::create_data_dir(&config.data_dir)?;
    // One process per data directory, whichever application it runs.
    let _lock = crate::data_dir::DataDirLock::acquire(&config.data_dir)?;
    crate::node_cmd::create_data_dir(&kv_dir)?;
    crate::data_dir::tighten(&config.data_dir)?;
    runtime.block_on(async move {
        let database = kv_dir.join("kv.db");
        kv::server::run(options, database, crate::node_cmd::shutdown_signal())
            .await
            .map_err(|error| match error {
                bus::RunError::Start(error) => crate::node_cmd::start_failure(&config, error),
                other => other.into(),
            })?;
        tracing::info!("Key-value node {} stopped cleanly", config.id);
        Ok(())
    })
}

/// `kv put|get|cas` with the client configuration.
async fn run_client(config: Option<&Path>, json: bool, command: &KvCommand) -> Result<()> {
    let path = crate::session::config_path(config);
    let config = crate::config::client::load(&path)?;
    let credentials = Credentials::load(&config.ca, &config.cert, &config.key)
        .context("cannot load the client certificate")?;
    let nodes = crate::session::resolve_nodes(&config)?;
    let client = KvClient::new(credentials, nodes, config.timeout);
    let outcome = serve(&client, json, command).await;
    client.close().await;
    outcome
}

async fn serve(client: &KvClient, json: bool, command: &KvCommand) -> Result<()> {
    match *command {
        KvCommand::Put { key, value } => {
            client.put(key, value).await.map_err(failure)?;
            crate::render::print(json, json!({ "key": key, "value": value }), || {
                format!("{key} = {value}")
            });
        }
        KvCommand::Get { key, stale } => {
            let value = client.get(key, stale).await.map_err(failure)?;
            crate::render::print(json, json!({ "key": key, "value": value }), || {
                value.to_string()
            });
        }
        KvCommand::Cas { key, expected, new } => {
            let (swapped, current) = client.cas(key, expected, new).await.map_err(failure)?;
            let document = json!({ "key": key, "swapped": swapped, "current": current });
            crate::render::print(json, document, || {
                if swapped {
                    format!("{key} = {new}")
                } else {
                    format!("{key} holds {current}")
                }
            });
            if !swapped {
                let message = format!("key {key} holds {current}, not {expected}");
                let failure = if json {
                    Failure::after_json(ExitCode::Conflict, message)
                } else {
                    Failure::new(ExitCode::Conflict, message)
                };
                return Err(failure.into());
            }
        }
        KvCommand::Node(_) => unreachable!("kv node run is handled before a client is set up"),
    }
    Ok(())
}

/// A key-value error with the exit code of SPEC §8.
fn failure(error: KvError) -> anyhow::Error {
    let code = match error {
        KvError::Unavailable(_) => ExitCode::Unavailable,
        KvError::PermissionDenied(_) => ExitCode::PermissionDenied,
        KvError::Internal(_) => ExitCode::Failure,
    };
    Failure::new(code, error.to_string()).into()
}
