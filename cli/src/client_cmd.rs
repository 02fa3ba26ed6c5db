//! The client subcommands: add-secret, get-secret, list, delete, status,
//! transfer-leader (share and unshare: `share_cmd.rs`). Each prints text,
//! or one JSON document with `--json` (shapes of SPEC §8).

use crate::args::{AddSecretArgs, GetSecretArgs};
use crate::config::client::ClientConfig;
use crate::exit::Failure;
use crate::identity::{crypto_failure, pinned_key, unlock};
use anyhow::{Context, Result};
use certs::{Credentials, Identity};
use consensus::raft::NodeId;
use consensus::transport::PeerAddress;
use serde_json::json;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use vault::client::VaultClient;
use vault::crypto::{check_reply, Asked};
use vault::protocol::{Reply, Request, Response, SecretRecord};

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
        let path = match config {
            Some(path) => path.to_path_buf(),
            None => std::env::var_os("VAULT_CONFIG")
                .filter(|value| !value.is_empty())
                .map_or_else(|| PathBuf::from("client.toml"), PathBuf::from),
        };
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

    /// Sends `request`; an error reply becomes a [`Failure`].
    pub async fn call(&self, request: Request) -> Result<Response> {
        reply_to_result(self.client.call(request).await)
    }

    /// Reads a secret of `owner` (ourselves or someone who shared it) and
    /// refuses it unless it is the record asked for (SPEC §4).
    pub async fn read_secret(&self, owner: &str, name: &str, stale: bool) -> Result<SecretRecord> {
        let request = Request::GetSecret {
            owner: (owner != self.owner).then(|| owner.to_string()),
            name: name.to_string(),
            stale,
        };
        let Response::Secret(record) = self.call(request).await? else {
            anyhow::bail!("unexpected answer to get-secret");
        };
        let asked = Asked {
            owner,
            name,
            version: None,
            reader: &self.owner,
        };
        check_reply(&asked, &record).map_err(crypto_failure)?;
        Ok(record)
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

/// `add-secret`: the passphrase is checked (and a new identity's record
/// published) before anything is sealed; an update is sealed as the next
/// version of the record the node returned, after checking it is ours.
pub async fn add_secret(session: &Session, args: &AddSecretArgs) -> Result<()> {
    vault::validate::validate_name(&args.name).map_err(Failure::from)?;
    let fields = crate::fields_input::read_fields(args)?;
    let keyring = unlock(session, false).await?;
    let (sealed, version) = if args.update {
        // Keep the data key so existing shares stay valid.
        let previous = session
            .read_secret(&session.owner, &args.name, false)
            .await?;
        let sealed = keyring.reseal(&previous, &fields).map_err(crypto_failure)?;
        (sealed, previous.version + 1)
    } else {
        (
            keyring
                .seal(&args.name, 1, &fields)
                .map_err(crypto_failure)?,
            1,
        )
    };
    let response = session
        .call(Request::AddSecret {
            name: args.name.clone(),
            sealed,
            update: args.update,
            version,
        })
        .await?;
    let Response::Added { version } = response else {
        anyhow::bail!("unexpected answer to add-secret: {response:?}");
    };
    if session.json {
        println!("{}", json!({ "name": args.name, "version": version }));
    } else {
        println!("stored {} (version {version})", args.name);
    }
    Ok(())
}

/// `get-secret`: our passphrase is checked first; the record must be the
/// one asked for, and a shared one must open under the owner's pinned key.
pub async fn get_secret(session: &Session, args: &GetSecretArgs) -> Result<()> {
    let keyring = unlock(session, args.stale).await?;
    let owner = args
        .owner
        .as_deref()
        .map_or_else(|| session.owner.clone(), qualify_identity);
    let record = session.read_secret(&owner, &args.name, args.stale).await?;
    let owner_key = if owner == session.owner {
        None
    } else {
        let accept = args.accept_key.as_deref();
        Some(pinned_key(session, &owner, accept, args.stale).await?.0)
    };
    let fields = keyring.open(&record, owner_key).map_err(|error| match error {
        vault::crypto::CryptoError::Decrypt => Failure::new(
            1,
            "cannot decrypt the secret: the stored data was altered, or is not the secret asked for",
        )
        .into(),
        other => crypto_failure(other),
    })?;
    if let Some(field) = &args.field {
        let value = match field.as_str() {
            "username" => &fields.username,
            "password" => &fields.password,
            "url" => &fields.url,
            "note" => &fields.note,
            other => {
                return Err(Failure::new(
                    2,
                    format!("unknown field {other:?}: use username, password, url or note"),
                )
                .into())
            }
        };
        if session.json {
            println!("{}", json!({ field.as_str(): value }));
        } else {
            println!("{}", value.as_deref().unwrap_or(""));
        }
        return Ok(());
    }
    if session.json {
        println!(
            "{}",
            json!({
                "name": record.name,
                "username": fields.username,
                "password": fields.password,
                "url": fields.url,
                "note": fields.note,
                "version": record.version,
            })
        );
    } else {
        println!("name:     {}", record.name);
        println!("version:  {}", record.version);
        for (label, value) in [
            ("username", &fields.username),
            ("password", &fields.password),
            ("url", &fields.url),
            ("note", &fields.note),
        ] {
            if let Some(value) = value {
                println!("{label:<9} {value}");
            }
        }
    }
    Ok(())
}

/// `list`.
pub async fn list(session: &Session) -> Result<()> {
    let response = session.call(Request::List { stale: false }).await?;
    let Response::Secrets(secrets) = response else {
        anyhow::bail!("unexpected answer to list: {response:?}");
    };
    if session.json {
        let secrets: Vec<_> = secrets
            .iter()
            .map(|secret| json!({ "name": secret.name, "version": secret.version }))
            .collect();
        println!("{}", json!({ "secrets": secrets }));
    } else if secrets.is_empty() {
        println!("no secrets");
    } else {
        for secret in secrets {
            println!("{} (version {})", secret.name, secret.version);
        }
    }
    Ok(())
}

/// `bob` means the client identity `client:bob`; `admin:ops` stays as is.
pub fn qualify_identity(name: &str) -> String {
    if name.contains(':') {
        name.to_string()
    } else {
        format!("client:{name}")
    }
}

/// `status`: asks every node about itself; a node that does not answer is
/// shown as unreachable.
pub async fn status(session: &Session) -> Result<()> {
    let queries = session
        .client
        .nodes()
        .iter()
        .map(|(id, address)| async move {
            let reply = session.client.call_node(*id, Request::Status).await;
            (*id, address.address.to_string(), reply)
        });
    let answers = futures::future::join_all(queries).await;
    let mut nodes = Vec::new();
    let mut unreachable = None;
    for (id, address, reply) in answers {
        if let Err(error @ vault::protocol::VaultError::PermissionDenied(_)) = reply {
            return Err(Failure::from(error).into());
        }
        match status_row(id, &address, &reply) {
            Ok(row) => nodes.push(row),
            Err(reason) => {
                unreachable.get_or_insert(reason);
                nodes.push(json!({
                    "id": id.to_string(), "addr": address, "role": "unknown", "term": null,
                    "leader": null, "commit_index": null, "applied_index": null, "reachable": false,
                }));
            }
        }
    }
    // No node answered at all: the cluster is unavailable to us (down, or
    // our certificate is refused), which is exit code 6, not a table of
    // unreachable nodes with exit code 0.
    if let (true, Some(reason)) = (
        nodes.iter().all(|node| node["reachable"] == false),
        unreachable,
    ) {
        return Err(Failure::new(6, format!("no node answered status: {reason}")).into());
    }
    if session.json {
        println!("{}", json!({ "nodes": nodes }));
        return Ok(());
    }
    println!(
        "{:<8} {:<22} {:<14} {:>6} {:<8} {:>8} {:>8}",
        "NODE", "ADDRESS", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED"
    );
    for node in &nodes {
        let text = |key: &str| match &node[key] {
            serde_json::Value::String(text) => text.clone(),
            serde_json::Value::Null => "-".to_string(),
            other => other.to_string(),
        };
        println!(
            "{:<8} {:<22} {:<14} {:>6} {:<8} {:>8} {:>8}",
            text("id"),
            text("addr"),
            text("role"),
            text("term"),
            text("leader"),
            text("commit_index"),
            text("applied_index")
        );
    }
    for node in &nodes {
        if let serde_json::Value::String(reason) = &node["writes_refused"] {
            println!(
                "{} refuses writes: {reason}",
                node["id"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

/// One node's row of `status`, or why it has none.
fn status_row(
    id: NodeId,
    address: &str,
    reply: &vault::protocol::Reply,
) -> std::result::Result<serde_json::Value, String> {
    match reply {
        Ok(Response::Status(report)) if !report.nodes.is_empty() => {
            let node = &report.nodes[0];
            Ok(json!({
                "id": node.id.to_string(),
                "addr": address,
                "role": node.role,
                "term": node.term,
                "leader": node.leader.map(|leader| leader.to_string()),
                "commit_index": node.commit_index,
                "applied_index": node.applied_index,
                "reachable": true,
                "writes_refused": node.writes_refused,
            }))
        }
        Ok(_) => Err(format!("{id} gave no status")),
        Err(error) => Err(error.to_string()),
    }
}

/// `transfer-leader`.
pub async fn transfer_leader(session: &Session, to: Option<&str>) -> Result<()> {
    let to = to
        .map(str::parse::<NodeId>)
        .transpose()
        .map_err(|error| Failure::new(2, error.to_string()))?;
    let response = session.call(Request::TransferLeader { to }).await?;
    let Response::LeaderTransferred { leader } = response else {
        anyhow::bail!("unexpected answer to transfer-leader: {response:?}");
    };
    if session.json {
        println!("{}", json!({ "leader": leader.to_string() }));
    } else {
        println!("{leader} is now the leader");
    }
    Ok(())
}

/// `delete`: a two-phase commit across every node (SPEC §6).
pub async fn delete(session: &Session, name: &str) -> Result<()> {
    vault::validate::validate_name(name).map_err(Failure::from)?;
    let response = session
        .call(Request::Delete {
            name: name.to_string(),
        })
        .await?;
    let Response::Deleted(report) = response else {
        anyhow::bail!("unexpected answer to delete: {response:?}");
    };
    let decision = match report.decision {
        vault::protocol::Decision::Commit => "commit",
        vault::protocol::Decision::Abort => "abort",
    };
    let votes: serde_json::Map<String, serde_json::Value> = report
        .votes
        .iter()
        .map(|(node, vote)| {
            let vote = match vote {
                vault::protocol::Vote::Commit => "commit",
                vault::protocol::Vote::Abort => "abort",
            };
            (node.to_string(), json!(vote))
        })
        .collect();
    let acked: Vec<String> = report.acked.iter().map(ToString::to_string).collect();
    if session.json {
        println!(
            "{}",
            json!({ "tx": report.tx, "decision": decision, "votes": votes, "acked": acked })
        );
    } else {
        println!("transaction {}: {}", report.tx, decision.to_uppercase());
        for (node, vote) in &votes {
            println!("  {node} voted {}", vote.as_str().unwrap_or("?"));
        }
        println!("  acknowledged by: {}", acked.join(", "));
    }
    if decision == "abort" {
        // The report above is the one `--json` document; the error sentence
        // goes to stderr only.
        return Err(Failure::after_json(
            crate::exit::ABORTED,
            format!("deleting {name} aborted: not every node voted to commit"),
        )
        .into());
    }
    Ok(())
}
