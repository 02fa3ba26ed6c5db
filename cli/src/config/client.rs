//! `client.toml`: where the cluster is and which certificate to present.

use super::resolve;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A client configuration file, as written by `cluster init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// Every node: id -> `host:port`. The client tries them in turn and
    /// follows leader hints.
    pub nodes: BTreeMap<String, String>,
    /// The cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// The client's certificate (PEM).
    pub cert: PathBuf,
    /// The client's private key (PEM, mode 0600).
    pub key: PathBuf,
}

/// A loaded client configuration with absolute paths.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// id -> `host:port` of every node.
    pub nodes: BTreeMap<String, String>,
    /// CA certificate path.
    pub ca: PathBuf,
    /// Client certificate path.
    pub cert: PathBuf,
    /// Client key path.
    pub key: PathBuf,
}

/// Reads a client config, resolving relative paths against its directory.
pub fn load(path: &Path) -> Result<ClientConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read client config {}", path.display()))?;
    let file: ClientFile = toml::from_str(&text)
        .with_context(|| format!("invalid client config {}", path.display()))?;
    anyhow::ensure!(
        !file.nodes.is_empty(),
        "client config {} lists no nodes",
        path.display()
    );
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(ClientConfig {
        nodes: file.nodes,
        ca: resolve(base, &file.ca),
        cert: resolve(base, &file.cert),
        key: resolve(base, &file.key),
    })
}
