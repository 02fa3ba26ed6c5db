//! `cluster init`: the CA, one self-contained directory per node, and a
//! client configuration with an admin certificate.
//!
//! Layout of DIR:
//!
//! ```text
//! ca/ca.crt, ca/ca.key          the cluster CA (key mode 0600)
//! nodeK/node.toml               node K's configuration (relative paths)
//! nodeK/node.crt, node.key      node K's certificate and key
//! nodeK/ca.crt                  a copy of the CA certificate
//! nodeK/data/raft/              node K's initial Raft state (mode 0700):
//!                               entry 1 = every node as a founding voter
//! admin/client.crt, client.key  an operator identity (urn:vault:admin:admin)
//! client.toml                   endpoints, CA and the admin certificate
//! ```
//!
//! Each `nodeK/` directory is complete on its own, so for a multi-host
//! cluster it can be copied to host K as it is.
//!
//! The initial Raft state is written here, once, because `node run` never
//! creates a cluster: it refuses a data directory without Raft state
//! (SPEC §13), so a node that lost its data cannot come back as a voter
//! that forgot what it promised.
//!
//! `snapshot restore` writes a cluster through the same [`init_with`]: the
//! same layout, but the CA may be an existing one ([`CaSource::Existing`])
//! and each node's Raft state is a backup's snapshot instead of entry 1.

use crate::config::client::ClientFile;
use crate::config::node::{
    LogFormat, MetricsSection, NodeFile, RaftSection, TwoPcSection, VaultSection,
};
use anyhow::{bail, Context, Result};
use certs::{CertificateAuthority, Identity};
use consensus::node::SeedSnapshot;
use consensus::raft::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A node's metrics listener is at its Raft port plus this (SPEC §8).
pub(crate) const METRICS_PORT_OFFSET: u16 = 1000;

/// What `cluster init` is asked to make.
#[derive(Debug, Clone)]
pub struct InitPlan {
    /// Where.
    pub dir: PathBuf,
    /// `host:port` of each node, node k at position k - 1.
    pub addresses: Vec<(String, u16)>,
}

impl InitPlan {
    /// Node k on `host`, port `base_port + k - 1`.
    pub fn single_host(dir: PathBuf, nodes: usize, host: &str, base_port: u16) -> Result<Self> {
        let last = u32::from(base_port) + nodes as u32;
        if nodes == 0 || last > u32::from(u16::MAX) + 1 {
            bail!("--nodes {nodes} with --base-port {base_port} does not fit in the port range");
        }
        let addresses = (0..nodes)
            .map(|k| (host.to_string(), base_port + k as u16))
            .collect();
        Ok(InitPlan { dir, addresses })
    }

    /// Node k on the k-th host, every node at `base_port`.
    pub fn multi_host(dir: PathBuf, hosts: &[String], base_port: u16) -> Self {
        let addresses = hosts.iter().map(|host| (host.clone(), base_port)).collect();
        InitPlan { dir, addresses }
    }

    /// The plan for the `--nodes`, `--host`, `--hosts` and `--base-port`
    /// flags of `cluster init` and `snapshot restore`: with hosts, one node
    /// per host (`--nodes`, if given, must agree); otherwise `--nodes`
    /// (default `default_nodes`) on one host (default 127.0.0.1).
    pub fn from_flags(
        dir: PathBuf,
        nodes: Option<usize>,
        host: Option<&str>,
        hosts: &[String],
        base_port: u16,
        default_nodes: usize,
    ) -> Result<Self> {
        if hosts.is_empty() {
            let host = host.unwrap_or("127.0.0.1");
            return InitPlan::single_host(dir, nodes.unwrap_or(default_nodes), host, base_port);
        }
        if let Some(nodes) = nodes.filter(|nodes| *nodes != hosts.len()) {
            return Err(crate::exit::Failure::new(
                crate::exit::ExitCode::Usage,
                format!(
                    "--nodes {nodes} does not match the {} hosts given",
                    hosts.len()
                ),
            )
            .into());
        }
        Ok(InitPlan::multi_host(dir, hosts, base_port))
    }
}

/// `cluster init`: writes the cluster directory the flags describe.
pub fn run(args: &crate::args::ClusterInitArgs) -> Result<()> {
    let plan = InitPlan::from_flags(
        args.dir.clone(),
        args.nodes,
        args.host.as_deref(),
        &args.hosts,
        args.base_port,
        5,
    )?;
    let configs = init(&plan)?;
    println!(
        "initialised a {}-node cluster in {}",
        configs.len(),
        plan.dir.display()
    );
    println!("client config: {}", plan.dir.join("client.toml").display());
    Ok(())
}

/// Where a new cluster's CA comes from.
#[derive(Debug, Clone, Copy)]
pub enum CaSource<'a> {
    /// A fresh CA, as `cluster init` makes.
    Generate,
    /// The CA (`ca.crt`, `ca.key`) in this directory, copied into the new
    /// cluster's `ca/`, so certificates it signed earlier (clients of the
    /// cluster a backup came from) are trusted by the new nodes.
    Existing(&'a Path),
}

/// Writes the whole cluster directory. Refuses a directory that already
/// holds a cluster, so keys are never overwritten.
pub fn init(plan: &InitPlan) -> Result<Vec<PathBuf>> {
    init_with(plan, CaSource::Generate, None, &|_, _| {})
}

/// [`init`] with the CA from `ca` and, with `seed`, every node's Raft
/// state seeded with that snapshot (the backup's index and term, the new
/// cluster's nodes as voters) instead of the founding entry; `progress`
/// hears `(nodes written, nodes)` after each node. Returns the paths of
/// the nodes' `node.toml`.
pub fn init_with(
    plan: &InitPlan,
    ca: CaSource<'_>,
    seed: Option<&SeedSnapshot>,
    progress: &dyn Fn(u64, u64),
) -> Result<Vec<PathBuf>> {
    if plan.dir.join("client.toml").exists() || plan.dir.join("ca").exists() {
        bail!(
            "{} already holds a cluster; choose an empty directory",
            plan.dir.display()
        );
    }
    // Loaded before anything is written: a CA that cannot be used leaves
    // no half-made cluster behind.
    let authority = match ca {
        CaSource::Generate => CertificateAuthority::generate("vault cluster CA")?,
        CaSource::Existing(dir) => CertificateAuthority::load(dir)
            .with_context(|| format!("cannot use the CA in {}", dir.display()))?,
    };
    let ca_dir = plan.dir.join("ca");
    std::fs::create_dir_all(&ca_dir)
        .with_context(|| format!("cannot create {}", ca_dir.display()))?;
    authority.write(&ca_dir)?;

    let peers: BTreeMap<String, String> = plan
        .addresses
        .iter()
        .enumerate()
        .map(|(k, (host, port))| (format!("node{}", k + 1), join_host_port(host, *port)))
        .collect();
    let voters: BTreeSet<NodeId> = (1..=plan.addresses.len() as u64).map(NodeId).collect();
    let mut configs = Vec::new();
    for (k, (host, port)) in plan.addresses.iter().enumerate() {
        let id = NodeId(k as u64 + 1);
        let node = NodeDirectory {
            dir: &plan.dir,
            id,
            host,
            port: *port,
            peers: &peers,
            join: false,
        };
        let config = write_node_directory(&authority, &node)?;
        initialize_node(&config, id, &voters, seed)?;
        configs.push(config);
        progress(configs.len() as u64, plan.addresses.len() as u64);
    }
    write_client(&plan.dir, &authority, &peers)?;
    Ok(configs)
}

/// One node directory to write: `dir/<id>/` with the node's certificate,
/// key, a copy of the CA certificate and its `node.toml`. Shared by
/// `cluster init` (founding members) and `cluster add-node` (joiners), so
/// both lay a node out the same way.
pub(crate) struct NodeDirectory<'a> {
    /// The cluster directory; the node's directory is `dir/<id>`.
    pub dir: &'a Path,
    /// The node's id, written in its canonical spelling (`node7`).
    pub id: NodeId,
    /// The host others dial the node at: a SAN of its certificate.
    pub host: &'a str,
    /// The node's UDP port.
    pub port: u16,
    /// Every member's address, this node included (`node.toml` `peers`).
    pub peers: &'a BTreeMap<String, String>,
    /// Whether the node joins a running cluster (`join` in `node.toml`).
    pub join: bool,
}

/// Writes `node.dir/<id>/` and returns the path of its `node.toml`. Writes
/// no Raft state: a founding member's is written by the caller, and a
/// joiner starts empty. Existing keys are never overwritten.
pub(crate) fn write_node_directory(
    authority: &CertificateAuthority,
    node: &NodeDirectory<'_>,
) -> Result<PathBuf> {
    let id = node.id.to_string();
    let node_dir = node.dir.join(&id);
    std::fs::create_dir_all(&node_dir)
        .with_context(|| format!("cannot create {}", node_dir.display()))?;
    let host = node.host;
    let mut sans = vec![host.to_string()];
    if host != "localhost"
        && host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    {
        sans.push("localhost".to_string());
    }
    authority.issue_node(&id, &sans)?.write(&node_dir, "node")?;
    std::fs::write(node_dir.join("ca.crt"), authority.certificate_pem())?;
    let listen_host = if host.parse::<std::net::IpAddr>().is_ok() {
        host.to_string()
    } else {
        // A host name is for others to dial; the node itself listens on all
        // interfaces of its own host.
        "0.0.0.0".to_string()
    };
    let file = NodeFile {
        id,
        listen: join_host_port(&listen_host, node.port),
        data_dir: "data".into(),
        ca: "ca.crt".into(),
        cert: "node.crt".into(),
        key: "node.key".into(),
        join: node.join,
        peers: node.peers.clone(),
        raft: RaftSection::default(),
        twopc: TwoPcSection::default(),
        vault: VaultSection::default(),
        // The node's host at its port + 1000 (SPEC §8); none if that
        // does not fit in a port number.
        metrics: MetricsSection {
            listen: node
                .port
                .checked_add(METRICS_PORT_OFFSET)
                .map(|port| join_host_port(&listen_host, port)),
        },
        log_format: LogFormat::Text,
    };
    let path = node_dir.join("node.toml");
    std::fs::write(&path, toml::to_string_pretty(&file)?)?;
    Ok(path)
}

/// Writes the founding Raft state of node `id` (or, with `seed`, that
/// snapshot) into the data directory named by its `node.toml` at `config`.
fn initialize_node(
    config: &Path,
    id: NodeId,
    voters: &BTreeSet<NodeId>,
    seed: Option<&SeedSnapshot>,
) -> Result<()> {
    let node = crate::config::node::load(config, &|_| None)?;
    let raft_dir = node.raft_dir();
    let written = match seed {
        None => consensus::node::initialize(&raft_dir, id, voters.clone()),
        Some(seed) => {
            consensus::node::initialize_from_snapshot(&raft_dir, id, voters.clone(), seed.clone())
        }
    };
    written.with_context(|| {
        format!(
            "cannot write the initial Raft state of {id} in {}",
            node.data_dir.display()
        )
    })?;
    // The key-value plug-in (`kv node run`) keeps its own log: a founding
    // member of it too, with an empty store whatever the vault was seeded with.
    let kv_raft_dir = kv::server::kv_dir(&node.data_dir).join("raft");
    consensus::node::initialize(&kv_raft_dir, id, voters.clone()).with_context(|| {
        format!(
            "cannot write the initial key-value Raft state of {id} in {}",
            node.data_dir.display()
        )
    })
}

fn write_client(
    dir: &Path,
    authority: &CertificateAuthority,
    peers: &BTreeMap<String, String>,
) -> Result<()> {
    let admin_dir = dir.join("admin");
    std::fs::create_dir_all(&admin_dir)?;
    authority
        .issue_client(&Identity::admin("admin")?)?
        .write(&admin_dir, "client")?;
    let file = ClientFile {
        nodes: peers.clone(),
        ca: "ca/ca.crt".into(),
        cert: "admin/client.crt".into(),
        key: "admin/client.key".into(),
        kdf: None,
        timeout_secs: None,
    };
    std::fs::write(dir.join("client.toml"), toml::to_string_pretty(&file)?)?;
    Ok(())
}

/// `host:port`, with brackets around IPv6 addresses.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus::raft::{EntryPayload, Membership};
    use consensus::storage::{FileStore, FileStoreOptions};

    /// Every node directory `cluster init` makes holds the founding Raft
    /// state, with every node a voter, in the directory `node run` opens.
    #[test]
    fn init_writes_every_nodes_initial_raft_state() {
        let root = tempfile::tempdir().unwrap();
        let plan = InitPlan::single_host(root.path().join("c"), 3, "127.0.0.1", 27_001).unwrap();
        let configs = init(&plan).unwrap();
        let voters: BTreeSet<NodeId> = (1..=3).map(NodeId).collect();
        for config in &configs {
            let node = crate::config::node::load(config, &|_| None).unwrap();
            assert!(!node.join);
            let (_store, recovered) =
                FileStore::open(node.raft_dir(), FileStoreOptions::default()).unwrap();
            assert_eq!(recovered.hard_state.term, 1, "{}", node.id);
            assert_eq!(recovered.hard_state.incarnation, 0, "{}", node.id);
            assert_eq!(recovered.entries.len(), 1, "{}", node.id);
            assert_eq!(
                recovered.entries[0].payload,
                EntryPayload::Membership(Membership::with_voters(voters.clone()))
            );
        }
        let again = init(&plan).unwrap_err();
        assert!(
            again.to_string().contains("already holds a cluster"),
            "{again}"
        );
    }
}
