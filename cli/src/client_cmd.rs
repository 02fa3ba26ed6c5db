//! The client subcommands: add-secret, get-secret, list, share, unshare,
//! delete, status, transfer-leader. Each prints text, or one JSON document
//! with `--json` (shapes of SPEC §8).

use crate::args::{AddSecretArgs, GetSecretArgs, ShareArgs};
use crate::config::client::ClientConfig;
use crate::exit::Failure;
use anyhow::{Context, Result};
use certs::{Credentials, Identity};
use consensus::raft::NodeId;
use consensus::transport::PeerAddress;
use serde_json::json;
use std::io::{IsTerminal, Read};
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use vault::client::VaultClient;
use vault::crypto::{Keyring, Passphrase, SecretFields};
use vault::protocol::{Reply, Request, Response, WrappedKey};

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
}

impl Session {
    /// Loads the client configuration (`--config`, `$VAULT_CONFIG`, or
    /// `./client.toml`) and prepares a client; nothing is dialled yet.
    pub fn load(
        config: Option<&Path>,
        json: bool,
        passphrase_file: Option<PathBuf>,
    ) -> Result<Self> {
        let path = config.map_or_else(|| PathBuf::from("client.toml"), Path::to_path_buf);
        let config = crate::config::client::load(&path)?;
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
        })
    }

    /// Derives this identity's keys from the passphrase.
    fn keyring(&self) -> Result<Keyring> {
        let passphrase = read_passphrase(self.passphrase_file.as_deref())?;
        Keyring::derive(&self.owner, &passphrase, self.config.kdf)
            .context("cannot derive keys from the passphrase")
    }

    async fn call(&self, request: Request) -> Result<Response> {
        reply_to_result(self.client.call(request).await)
    }

    /// Publishes our X25519 public key if the cluster does not have it, so
    /// that others can share secrets with us.
    async fn ensure_key_published(&self, keyring: &Keyring) -> Result<()> {
        let published = self
            .client
            .call(Request::PublicKey {
                identity: self.owner.clone(),
            })
            .await;
        match published {
            Ok(Response::PublicKey { public_key, .. }) if public_key == keyring.public_key() => {
                Ok(())
            }
            _ => {
                self.call(Request::PublishKey {
                    public_key: keyring.public_key(),
                })
                .await?;
                Ok(())
            }
        }
    }
}

fn reply_to_result(reply: Reply) -> Result<Response> {
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

fn read_passphrase(file: Option<&Path>) -> Result<Passphrase> {
    let text = if let Ok(value) = std::env::var("VAULT_PASSPHRASE") {
        value
    } else if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the passphrase file {}", path.display()))?;
        text.trim_end_matches(['\n', '\r']).to_string()
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Passphrase: ").context("cannot read the passphrase")?
    } else {
        anyhow::bail!(
            "no passphrase: set VAULT_PASSPHRASE, pass --passphrase-file, or run on a terminal"
        );
    };
    let passphrase = Passphrase::new(text);
    anyhow::ensure!(!passphrase.is_empty(), "the passphrase is empty");
    Ok(passphrase)
}

/// `add-secret`.
pub async fn add_secret(session: &Session, args: &AddSecretArgs) -> Result<()> {
    vault::validate::validate_name(&args.name).map_err(Failure::from)?;
    let password = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the password from stdin")?;
        Some(text.trim_end_matches(['\n', '\r']).to_string())
    } else if std::io::stdin().is_terminal() {
        Some(rpassword::prompt_password(format!(
            "Password for {}: ",
            args.name
        ))?)
    } else {
        None
    };
    let keyring = session.keyring()?;
    let fields = SecretFields {
        username: args.username.clone(),
        password,
        url: args.url.clone(),
        note: args.note.clone(),
    };
    let sealed = if args.update {
        // Keep the data key so existing shares stay valid.
        match session
            .call(Request::GetSecret {
                owner: None,
                name: args.name.clone(),
                stale: false,
            })
            .await?
        {
            Response::Secret(previous) => keyring.reseal(&args.name, &previous.sealed, &fields)?,
            other => anyhow::bail!("unexpected answer to get-secret: {other:?}"),
        }
    } else {
        keyring.seal(&args.name, &fields)?
    };
    session.ensure_key_published(&keyring).await?;
    let response = session
        .call(Request::AddSecret {
            name: args.name.clone(),
            sealed,
            update: args.update,
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

/// `get-secret`.
pub async fn get_secret(session: &Session, args: &GetSecretArgs) -> Result<()> {
    let response = session
        .call(Request::GetSecret {
            owner: args.owner.as_deref().map(qualify_identity),
            name: args.name.clone(),
            stale: args.stale,
        })
        .await?;
    let Response::Secret(record) = response else {
        anyhow::bail!("unexpected answer to get-secret: {response:?}");
    };
    let keyring = session.keyring()?;
    // Reading is also when a new identity makes itself reachable for
    // shares; best effort, and never for a --stale read, which must work
    // without a quorum.
    if !args.stale {
        let _ = session.ensure_key_published(&keyring).await;
    }
    let fields = keyring.open(&record).map_err(|_| {
        Failure::new(
            1,
            "cannot decrypt the secret: wrong passphrase, or the data was tampered with",
        )
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

/// `share` and `unshare`.
pub async fn share(session: &Session, args: &ShareArgs, grant: bool) -> Result<()> {
    let grantee = qualify_identity(&args.with);
    if !grant {
        session
            .call(Request::Unshare {
                name: args.name.clone(),
                with: grantee.clone(),
            })
            .await?;
        return print_done(
            session,
            &format!("{} no longer shared with {grantee}", args.name),
        );
    }
    let lookup = session
        .client
        .call(Request::PublicKey {
            identity: grantee.clone(),
        })
        .await;
    let lookup = match lookup {
        Err(vault::protocol::VaultError::NotFound(_)) => {
            return Err(Failure::new(
                3,
                format!(
                    "{grantee} has not published a public key yet: they must run add-secret or get-secret once with their passphrase"
                ),
            )
            .into())
        }
        other => reply_to_result(other)?,
    };
    let Response::PublicKey { public_key, .. } = lookup else {
        anyhow::bail!("unexpected answer to a public key lookup");
    };
    let Response::Secret(record) = session
        .call(Request::GetSecret {
            owner: None,
            name: args.name.clone(),
            stale: false,
        })
        .await?
    else {
        anyhow::bail!("unexpected answer to get-secret");
    };
    let keyring = session.keyring()?;
    let wrapped: WrappedKey = keyring.share(&args.name, &record.sealed, &grantee, public_key)?;
    session
        .call(Request::Share {
            name: args.name.clone(),
            with: grantee.clone(),
            wrapped_key: wrapped,
        })
        .await?;
    print_done(session, &format!("{} shared with {grantee}", args.name))
}

fn print_done(session: &Session, message: &str) -> Result<()> {
    if session.json {
        println!("{}", json!({ "ok": true, "message": message }));
    } else {
        println!("{message}");
    }
    Ok(())
}

/// `bob` means the client identity `client:bob`; `admin:ops` stays as is.
fn qualify_identity(name: &str) -> String {
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
