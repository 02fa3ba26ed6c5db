//! `node.toml`: everything one node needs to run.

use super::resolve;
use anyhow::{bail, Context, Result};
use consensus::raft::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A node's configuration file, as written by `cluster init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// This node's id, `node<N>`.
    pub id: String,
    /// The UDP address the node's QUIC endpoint binds to.
    pub listen: String,
    /// Where the Raft log, snapshots and the SQLite database live.
    pub data_dir: PathBuf,
    /// The cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// This node's certificate (PEM).
    pub cert: PathBuf,
    /// This node's private key (PEM, mode 0600).
    pub key: PathBuf,
    /// True for a new member joining a running cluster (made by `cluster
    /// add-node`): with an empty data directory it starts empty and waits
    /// for the leader to send it the log. Any other node refuses an empty
    /// data directory (SPEC §13). Ignored once the node holds Raft state.
    #[serde(default)]
    pub join: bool,
    /// Every member's address, this node included: id -> `host:port`.
    pub peers: BTreeMap<String, String>,
    /// Raft timing and compaction.
    #[serde(default)]
    pub raft: RaftSection,
    /// Two-phase commit participant policy and timeouts.
    #[serde(default)]
    pub twopc: TwoPcSection,
    /// What the vault keeps.
    #[serde(default)]
    pub vault: VaultSection,
    /// Where the node serves `/metrics` and `/health`.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// How log lines are written: `text` (default) or `json`.
    #[serde(default)]
    pub log_format: LogFormat,
}

/// `[vault]` of `node.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaultSection {
    /// How many versions of each secret are kept, the current one included
    /// (at least 1). Give every node the same value: it shapes the
    /// replicated history.
    pub max_versions: u32,
}

impl Default for VaultSection {
    fn default() -> Self {
        VaultSection {
            max_versions: vault::store::DEFAULT_MAX_VERSIONS,
        }
    }
}

/// `[metrics]` of `node.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// `IP:PORT` of the HTTP listener for `GET /metrics` and `GET /health`;
    /// unset: not served. `cluster init` writes the node's host at its
    /// port + 1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

/// How the node writes its log lines (`log_format`, `--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// `[raft]` of `node.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftSection {
    /// Interval between leader heartbeats (100 ms by default, as etcd's:
    /// each heartbeat wakes every node, and with a commit broadcast at
    /// once a shorter one buys nothing but idle CPU). The core's tick is
    /// this or shorter (see `NodeOptions::tick`).
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout.
    pub election_min_ms: u64,
    /// Upper bound (exclusive) of the randomized election timeout.
    pub election_max_ms: u64,
    /// Take a snapshot and compact the log after this many applied entries.
    pub snapshot_every: u64,
    /// The most command MiB applied between two snapshots (bounds the log
    /// a node holds in memory once the vault is large).
    pub snapshot_after_mb: u64,
    /// Command MiB a node keeps in memory behind each snapshot, so that a
    /// follower away for less catches up from entries instead of a whole
    /// snapshot (0: compact at once).
    pub keep_log_mb: u64,
    /// Refuse new writes while the data directory's file system has less
    /// than this many MiB free (0: no reserve). See docs/storage.md.
    pub min_free_mb: u64,
}

impl Default for RaftSection {
    fn default() -> Self {
        RaftSection {
            heartbeat_ms: 100,
            election_min_ms: 500,
            election_max_ms: 1000,
            snapshot_every: 10_000,
            snapshot_after_mb: consensus::node::DEFAULT_SNAPSHOT_AFTER_BYTES >> 20,
            keep_log_mb: consensus::node::DEFAULT_KEEP_LOG_BYTES >> 20,
            min_free_mb: 64,
        }
    }
}

/// How this node votes as a 2PC participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VotePolicy {
    /// Vote to commit when the secret is held at the asked version and unlocked.
    #[default]
    Commit,
    /// Always vote to abort (lets an operator force an abort).
    Abort,
}

/// `[twopc]` of `node.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwoPcSection {
    /// This node's vote policy.
    pub vote: VotePolicy,
    /// A participant that has not answered within this time votes abort.
    pub vote_timeout_ms: u64,
    /// A prepared transaction with no logged decision after this time is aborted.
    pub decision_timeout_ms: u64,
}

impl Default for TwoPcSection {
    fn default() -> Self {
        TwoPcSection {
            vote: VotePolicy::Commit,
            vote_timeout_ms: 2_000,
            decision_timeout_ms: 10_000,
        }
    }
}

/// A validated node configuration: ids parsed, paths absolute, env applied.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id.
    pub id: NodeId,
    /// The address to bind.
    pub listen: std::net::SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    /// CA certificate path.
    pub ca: PathBuf,
    /// Node certificate path.
    pub cert: PathBuf,
    /// Node key path.
    pub key: PathBuf,
    /// Whether this node is a new member joining a running cluster.
    pub join: bool,
    /// Every member (this node included) and the `host:port` to reach it.
    pub peers: BTreeMap<NodeId, String>,
    /// `[raft]`.
    pub raft: RaftSection,
    /// `[twopc]`.
    pub twopc: TwoPcSection,
    /// `[vault]`.
    pub vault: VaultSection,
    /// `[metrics] listen`, parsed.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `log_format`.
    pub log_format: LogFormat,
}

impl NodeConfig {
    /// Where the Raft log and snapshots live: `raft/` in the data
    /// directory (see [`raft_dir`]).
    pub fn raft_dir(&self) -> PathBuf {
        raft_dir(&self.data_dir)
    }
}

/// The Raft directory of the data directory `data_dir`; `cluster init`
/// writes a node's initial state there and `node run` opens it.
pub fn raft_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("raft")
}

/// Reads `path`, applies `VAULT_*` overrides from `env`, and validates.
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<NodeConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read node config {}", path.display()))?;
    let mut file: NodeFile =
        toml::from_str(&text).with_context(|| format!("invalid node config {}", path.display()))?;
    apply_env(&mut file, env)?;
    let base = path.parent().unwrap_or(Path::new("."));
    validate(file, base)
}

/// Applies the `VAULT_*` environment overrides documented in README.md.
fn apply_env(file: &mut NodeFile, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
    let number = |name: &str| -> Result<Option<u64>> {
        env(name)
            .map(|value| {
                value.parse::<u64>().with_context(|| {
                    format!(
                        "{name} must be a whole number of milliseconds or entries, not {value:?}"
                    )
                })
            })
            .transpose()
    };
    if let Some(value) = env("VAULT_ID") {
        file.id = value;
    }
    if let Some(value) = env("VAULT_LISTEN") {
        file.listen = value;
    }
    if let Some(value) = env("VAULT_DATA_DIR") {
        file.data_dir = value.into();
    }
    if let Some(value) = env("VAULT_CA") {
        file.ca = value.into();
    }
    if let Some(value) = env("VAULT_CERT") {
        file.cert = value.into();
    }
    if let Some(value) = env("VAULT_KEY") {
        file.key = value.into();
    }
    if let Some(value) = env("VAULT_JOIN") {
        file.join = match value.as_str() {
            "true" => true,
            "false" => false,
            other => bail!("VAULT_JOIN must be \"true\" or \"false\", not {other:?}"),
        };
    }
    if let Some(value) = env("VAULT_PEERS") {
        file.peers = parse_peer_list(&value)?;
    }
    if let Some(value) = number("VAULT_RAFT_HEARTBEAT_MS")? {
        file.raft.heartbeat_ms = value;
    }
    if let Some(value) = number("VAULT_RAFT_ELECTION_MIN_MS")? {
        file.raft.election_min_ms = value;
    }
    if let Some(value) = number("VAULT_RAFT_ELECTION_MAX_MS")? {
        file.raft.election_max_ms = value;
    }
    if let Some(value) = number("VAULT_RAFT_SNAPSHOT_EVERY")? {
        file.raft.snapshot_every = value;
    }
    if let Some(value) = number("VAULT_RAFT_SNAPSHOT_AFTER_MB")? {
        file.raft.snapshot_after_mb = value;
    }
    if let Some(value) = number("VAULT_RAFT_KEEP_LOG_MB")? {
        file.raft.keep_log_mb = value;
    }
    if let Some(value) = number("VAULT_RAFT_MIN_FREE_MB")? {
        file.raft.min_free_mb = value;
    }
    if let Some(value) = env("VAULT_VOTE") {
        file.twopc.vote = match value.as_str() {
            "commit" => VotePolicy::Commit,
            "abort" => VotePolicy::Abort,
            other => bail!("VAULT_VOTE must be \"commit\" or \"abort\", not {other:?}"),
        };
    }
    if let Some(value) = number("VAULT_TWOPC_VOTE_TIMEOUT_MS")? {
        file.twopc.vote_timeout_ms = value;
    }
    if let Some(value) = number("VAULT_TWOPC_DECISION_TIMEOUT_MS")? {
        file.twopc.decision_timeout_ms = value;
    }
    if let Some(value) = number("VAULT_MAX_VERSIONS")? {
        file.vault.max_versions = u32::try_from(value)
            .with_context(|| format!("VAULT_MAX_VERSIONS {value} is too large"))?;
    }
    if let Some(value) = env("VAULT_METRICS_LISTEN") {
        // Empty turns the listener off.
        file.metrics.listen = Some(value).filter(|value| !value.trim().is_empty());
    }
    if let Some(value) = env("VAULT_LOG_FORMAT") {
        file.log_format = match value.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => bail!("VAULT_LOG_FORMAT must be \"text\" or \"json\", not {other:?}"),
        };
    }
    Ok(())
}

/// Parses `node1=host:port,node2=host:port`.
fn parse_peer_list(text: &str) -> Result<BTreeMap<String, String>> {
    text.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| match part.split_once('=') {
            Some((id, addr)) => Ok((id.trim().to_string(), addr.trim().to_string())),
            None => bail!("VAULT_PEERS entries look like node1=host:port, not {part:?}"),
        })
        .collect()
}

fn validate(file: NodeFile, base: &Path) -> Result<NodeConfig> {
    let id: NodeId = file.id.parse()?;
    let listen = file
        .listen
        .parse()
        .with_context(|| format!("listen address {:?} is not IP:PORT", file.listen))?;
    let mut peers = BTreeMap::new();
    for (peer, addr) in &file.peers {
        let peer_id: NodeId = peer
            .parse()
            .with_context(|| format!("peer {peer:?} is not a node id"))?;
        if !addr.contains(':') {
            bail!("peer {peer} address {addr:?} must be host:port");
        }
        peers.insert(peer_id, addr.clone());
    }
    if !peers.contains_key(&id) {
        bail!("peers must list this node ({id}) too, with the address others reach it at");
    }
    let raft = file.raft;
    if raft.heartbeat_ms == 0 || raft.election_min_ms < 2 * raft.heartbeat_ms {
        bail!("[raft] needs heartbeat_ms > 0 and election_min_ms >= 2 * heartbeat_ms");
    }
    if raft.election_max_ms <= raft.election_min_ms {
        bail!("[raft] election_max_ms must be greater than election_min_ms");
    }
    if file.vault.max_versions == 0 {
        bail!("[vault] max_versions must be at least 1 (the current version)");
    }
    let metrics_listen = file
        .metrics
        .listen
        .as_deref()
        .map(|listen| {
            listen
                .parse()
                .with_context(|| format!("[metrics] listen {listen:?} is not IP:PORT"))
        })
        .transpose()?;
    Ok(NodeConfig {
        id,
        listen,
        data_dir: resolve(base, &file.data_dir),
        ca: resolve(base, &file.ca),
        cert: resolve(base, &file.cert),
        key: resolve(base, &file.key),
        join: file.join,
        peers,
        raft,
        twopc: file.twopc,
        vault: file.vault,
        metrics_listen,
        log_format: file.log_format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeFile {
        NodeFile {
            id: "node1".into(),
            listen: "127.0.0.1:7001".into(),
            data_dir: "data".into(),
            ca: "../ca/ca.crt".into(),
            cert: "node.crt".into(),
            key: "node.key".into(),
            join: false,
            peers: [("node1", "127.0.0.1:7001"), ("node2", "127.0.0.1:7002")]
                .into_iter()
                .map(|(id, addr)| (id.to_string(), addr.to_string()))
                .collect(),
            raft: RaftSection::default(),
            twopc: TwoPcSection::default(),
            vault: VaultSection::default(),
            metrics: MetricsSection {
                listen: Some("127.0.0.1:8001".into()),
            },
            log_format: LogFormat::Text,
        }
    }

    fn write(dir: &Path, file: &NodeFile) -> PathBuf {
        let path = dir.join("node.toml");
        std::fs::write(&path, toml::to_string(file).unwrap()).unwrap();
        path
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = load(&write(dir.path(), &sample()), &|_| None).unwrap();
        assert_eq!(config.data_dir, dir.path().join("data"));
        assert_eq!(config.ca, dir.path().join("../ca/ca.crt"));
        assert_eq!(config.peers.len(), 2);
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let env = |name: &str| match name {
            "VAULT_VOTE" => Some("abort".to_string()),
            "VAULT_RAFT_HEARTBEAT_MS" => Some("20".to_string()),
            _ => None,
        };
        let config = load(&write(dir.path(), &sample()), &env).unwrap();
        assert_eq!(config.twopc.vote, VotePolicy::Abort);
        assert_eq!(config.raft.heartbeat_ms, 20);
    }

    #[test]
    fn join_comes_from_the_file_or_vault_join() {
        let dir = tempfile::tempdir().unwrap();
        let founding = load(&write(dir.path(), &sample()), &|_| None).unwrap();
        assert!(!founding.join, "a node is not a joiner by default");
        let text = toml::to_string(&sample())
            .unwrap()
            .replace("join = false", "");
        std::fs::write(dir.path().join("node.toml"), text).unwrap();
        let unset = load(&dir.path().join("node.toml"), &|_| None).unwrap();
        assert!(!unset.join, "a missing `join` means false");

        let joiner = NodeFile {
            join: true,
            ..sample()
        };
        let config = load(&write(dir.path(), &joiner), &|_| None).unwrap();
        assert!(config.join);
        let env_off = |name: &str| (name == "VAULT_JOIN").then(|| "false".to_string());
        assert!(!load(&write(dir.path(), &joiner), &env_off).unwrap().join);
        let env_on = |name: &str| (name == "VAULT_JOIN").then(|| "true".to_string());
        assert!(load(&write(dir.path(), &sample()), &env_on).unwrap().join);
        let env_bad = |name: &str| (name == "VAULT_JOIN").then(|| "yes".to_string());
        let error = load(&write(dir.path(), &sample()), &env_bad).unwrap_err();
        assert!(error.to_string().contains("VAULT_JOIN"), "{error}");
    }

    #[test]
    fn metrics_listen_and_log_format_come_from_the_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let config = load(&write(dir.path(), &sample()), &|_| None).unwrap();
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:8001".parse().unwrap())
        );
        assert_eq!(config.log_format, LogFormat::Text);

        let env = |name: &str| match name {
            "VAULT_METRICS_LISTEN" => Some("127.0.0.1:9100".to_string()),
            "VAULT_LOG_FORMAT" => Some("json".to_string()),
            _ => None,
        };
        let config = load(&write(dir.path(), &sample()), &env).unwrap();
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9100".parse().unwrap())
        );
        assert_eq!(config.log_format, LogFormat::Json);

        let off = |name: &str| (name == "VAULT_METRICS_LISTEN").then(String::new);
        assert_eq!(
            load(&write(dir.path(), &sample()), &off)
                .unwrap()
                .metrics_listen,
            None
        );

        let text = toml::to_string(&NodeFile {
            metrics: MetricsSection::default(),
            ..sample()
        })
        .unwrap();
        assert!(!text.contains("[metrics]\nlisten"), "{text}");
        std::fs::write(dir.path().join("node.toml"), text).unwrap();
        let unset = load(&dir.path().join("node.toml"), &|_| None).unwrap();
        assert_eq!(
            unset.metrics_listen, None,
            "no [metrics] listen: not served"
        );

        let bad_format = |name: &str| (name == "VAULT_LOG_FORMAT").then(|| "xml".to_string());
        let error = load(&write(dir.path(), &sample()), &bad_format).unwrap_err();
        assert!(error.to_string().contains("VAULT_LOG_FORMAT"), "{error}");
        let bad_listen = NodeFile {
            metrics: MetricsSection {
                listen: Some("localhost".into()),
            },
            ..sample()
        };
        let error = load(&write(dir.path(), &bad_listen), &|_| None).unwrap_err();
        assert!(error.to_string().contains("[metrics] listen"), "{error}");
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut missing_self = sample();
        missing_self.peers.remove("node1");
        let error = load(&write(dir.path(), &missing_self), &|_| None).unwrap_err();
        assert!(error.to_string().contains("must list this node"), "{error}");

        let mut bad_peer = sample();
        bad_peer.peers.insert("nodeX".into(), "h:1".into());
        let error = load(&write(dir.path(), &bad_peer), &|_| None).unwrap_err();
        assert!(format!("{error:#}").contains("nodeX"), "{error:#}");

        let bad_vote = |name: &str| (name == "VAULT_VOTE").then(|| "maybe".to_string());
        let error = load(&write(dir.path(), &sample()), &bad_vote).unwrap_err();
        assert!(error.to_string().contains("VAULT_VOTE"), "{error}");

        std::fs::write(dir.path().join("node.toml"), "id = 3\nunknown = 1\n").unwrap();
        assert!(load(&dir.path().join("node.toml"), &|_| None).is_err());
    }
}
