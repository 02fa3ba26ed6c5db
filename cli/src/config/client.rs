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
    /// Argon2id cost a new identity is created with (at least 8 MiB and one
    /// pass). An existing identity uses the cost published in its record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdf: Option<KdfSection>,
    /// Seconds a command may wait for the cluster before exit code 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
}

/// `[kdf]` of `client.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfSection {
    /// Memory in KiB (default 65536).
    pub memory_kib: u32,
    /// Passes (default 3).
    pub iterations: u32,
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
    /// Argon2id parameters.
    pub kdf: vault::crypto::KdfParams,
    /// How long a command may wait for the cluster.
    pub timeout: std::time::Duration,
}

/// Reads a client config, resolving relative paths against its directory.
pub fn load(path: &Path) -> Result<ClientConfig> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "there is no client config at {}: name one with --config FILE or \
             VAULT_CONFIG=FILE (`vault-cli cluster init --dir DIR` writes DIR/client.toml)",
            path.display()
        ),
        Err(error) => {
            return Err(error)
                .with_context(|| format!("cannot read client config {}", path.display()))
        }
    };
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
        kdf: match file.kdf {
            Some(section) => vault::crypto::KdfParams {
                memory_kib: section.memory_kib,
                iterations: section.iterations,
                parallelism: 1,
            },
            None => vault::crypto::KdfParams::RECOMMENDED,
        },
        timeout: std::time::Duration::from_secs(file.timeout_secs.unwrap_or(10)),
    })
    .and_then(|config: ClientConfig| {
        // A new identity is created with this cost; below the floor the
        // passphrase would be too cheap to guess (and other clients,
        // which refuse such a cost, could not unlock it).
        config
            .kdf
            .check(vault::crypto::KdfParams::MINIMUM)
            .with_context(|| format!("invalid [kdf] in {}", path.display()))?;
        Ok(config)
    })
}
