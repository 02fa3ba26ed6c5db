//! What every client command shares: the loaded configuration, the cluster
//! connection, who we are, and how an error reply becomes an exit code.

use crate::config::client::ClientConfig;
use crate::exit::Failure;
use crate::identity::crypto_failure;
use anyhow::{Context, Result};
use certs::{Credentials, Identity};
use consensus::raft::NodeId;
use consensus::transport::PeerAddress;
use std::io::IsTerminal;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use vault::client::VaultClient;
use vault::crypto::{check_reply, Asked};
use vault::protocol::{Reply, Request, Response, SecretRecord};

/// How long a request runs before the user is told it is waiting.
const WAITING_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// What every client command needs: the cluster connection and who we are.
pub struct Session {
    /// The cluster.
    pub client: VaultClient,
    /// Our owner string, e.g. `client:alice`.
    pub owner: String,
    /// The loaded configuration.
    pub config: ClientConfig,
    /// Print JSON.
    pub json: bool,
    /// `--passphrase-file`.
    pub passphrase_file: Option<PathBuf>,
    /// The pin file of this configuration (`crate::pins`).
    pub pins: PathBuf,
}

impl Session {
    /// Loads the client configuration (`--config` before or after the
    /// subcommand, else `$VAULT_CONFIG`, else `./client.toml`) and prepares a client; nothing is dialled yet.
    pub fn load(
        config: Option<&Path>,
        json: bool,
        passphrase_file: Option<PathBuf>,
    ) -> Result<Self> {
        let path = config_path(config);
        let config = crate::config::client::load(&path)?;
        let pins = crate::pins::path_for(&path);
        let credentials = Credentials::load(&config.ca, &config.cert, &config.key)
            .context("cannot load the client certificate")?;
        let owner = match credentials.identity() {
            Identity::Client(name) => format!("client:{name}"),
            Identity::Admin(name) => format!("admin:{name}"),
            Identity::Node(id) => anyhow::bail!(
                "{} is a node certificate ({id}); clients need a client certificate",
                config.cert.display()
            ),
        };
        let nodes = resolve_nodes(&config)?;
        let client = VaultClient::new(credentials, nodes, config.timeout);
        Ok(Session {
            client,
            owner,
            config,
            json,
            passphrase_file,
            pins,
        })
    }

    /// Sends `request`; an error reply becomes a [`Failure`]. When the
    /// cluster takes long to answer (no leader yet, no quorum) a person at a
    /// terminal is told it is waiting, once, on stderr.
    pub async fn call(&self, request: Request) -> Result<Response> {
        let call = self.client.call(request);
        tokio::pin!(call);
        let reply = tokio::select! {
            reply = &mut call => reply,
            () = tokio::time::sleep(WAITING_AFTER) => {
                if !self.json && std::io::stderr().is_terminal() {
                    eprintln!(
                        "waiting for the cluster (no leader or no quorum yet?); giving up after {} s",
                        self.config.timeout.as_secs()
                    );
                }
                call.await
            }
        };
        reply_to_result(reply)
    }

    /// Reads a secret of `owner` (ourselves or someone who shared it), its
    /// current version or `version`, and refuses it unless it is the record
    /// asked for (SPEC §4).
    pub async fn read_secret(
        &self,
        owner: &str,
        name: &str,
        version: Option<u64>,
        stale: bool,
    ) -> Result<SecretRecord> {
        let owner_field = (owner != self.owner).then(|| owner.to_string());
        let request = match version {
            None => Request::GetSecret {
                owner: owner_field,
                name: name.to_string(),
                stale,
            },
            Some(version) => Request::GetVersion {
                owner: owner_field,
                name: name.to_string(),
                version,
                stale,
            },
        };
        let Response::Secret(record) = self.call(request).await? else {
            anyhow::bail!("unexpected answer to get-secret");
        };
        let asked = Asked {
            owner,
            name,
            version,
            reader: &self.owner,
        };
        check_reply(&asked, &record).map_err(crypto_failure)?;
        Ok(record)
    }
}

/// The client configuration file: `--config` before or after the
/// subcommand, else `$VAULT_CONFIG`, else `./client.toml`.
pub fn config_path(config: Option<&Path>) -> PathBuf {
    match config {
        Some(path) => path.to_path_buf(),
        None => std::env::var_os("VAULT_CONFIG")
            .filter(|value| !value.is_empty())
            .map_or_else(|| PathBuf::from("client.toml"), PathBuf::from),
    }
}

/// An error reply as a [`Failure`] with the exit code of SPEC §8.
pub fn reply_to_result(reply: Reply) -> Result<Response> {
    reply.map_err(|error| anyhow::Error::new(Failure::from(error)))
}

/// `node1 = "host:port"` entries as dialable addresses.
pub fn resolve_nodes(config: &ClientConfig) -> Result<Vec<(NodeId, PeerAddress)>> {
    config
        .nodes
        .iter()
        .map(|(id, address)| {
            let id: NodeId = id.parse()?;
            Ok((id, peer_address(address)?))
        })
        .collect()
}

/// Resolves `host:port`; the host is also the name the certificate must carry.
pub fn peer_address(text: &str) -> Result<PeerAddress> {
    let socket = text
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {text}"))?
        .next()
        .with_context(|| format!("{text} resolves to no address"))?;
    let host = text
        .rsplit_once(':')
        .map_or(text, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    Ok(PeerAddress {
        address: socket,
        server_name: host.to_string(),
    })
}

/// `bob` means the client identity `client:bob`; `admin:ops` stays as is.
pub fn qualify_identity(name: &str) -> String {
    if name.contains(':') {
        name.to_string()
    } else {
        format!("client:{name}")
    }
}

/// Refuses an invalid secret name before anything is sent, as a usage
/// error (exit 2): the rules of SPEC §5, checked again by every node.
pub fn check_name(name: &str) -> Result<()> {
    vault::validate::validate_name(name)
        .map_err(|error| Failure::new(crate::exit::ExitCode::Usage, error.to_string()).into())
}
