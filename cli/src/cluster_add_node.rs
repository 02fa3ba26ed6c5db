//! `cluster add-node`: the directory of a new member, written offline on
//! the machine that holds the cluster CA (SPEC §13).
//!
//! It signs the new node's certificate with `DIR/ca` and writes `DIR/<id>/`
//! exactly as `cluster init` writes a node directory (through the same
//! [`write_node_directory`]), with two differences that make the node a
//! joiner rather than a founding member:
//!
//! - `join = true` in its `node.toml`, and
//! - no Raft state: it starts empty and receives the log (or a snapshot)
//!   from the leader once `member add` has told the cluster about it. A
//!   founding entry written here would claim a membership the running
//!   cluster never agreed to.
//!
//! Its `peers` are the members found in DIR (every other `DIR/*/node.toml`,
//! each with the address it gives for itself, which is the one others dial)
//! plus itself. `DIR/client.toml` gains the new node so that clients made
//! from this directory can reach it. Nothing goes over the network: telling
//! the cluster is `member add`, a separate and deliberate step.

use crate::args::ClusterAddNodeArgs;
use crate::cluster_init::{join_host_port, write_node_directory, NodeDirectory};
use crate::config::client::ClientFile;
use crate::config::node::NodeFile;
use crate::exit::Failure;
use anyhow::{bail, Context, Result};
use certs::CertificateAuthority;
use consensus::raft::NodeId;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What `cluster add-node` is asked to make, already parsed.
#[derive(Debug, Clone)]
pub struct AddNodePlan {
    /// The cluster directory made by `cluster init` (holds `ca/`).
    pub dir: PathBuf,
    /// The new node's id.
    pub id: NodeId,
    /// The host others dial the new node at (an IP address or a name).
    pub host: String,
    /// The new node's UDP port.
    pub port: u16,
}

impl AddNodePlan {
    /// Parses `--id` (`node7` or `7`) and `--addr` (`HOST:PORT`, IPv6 in
    /// brackets).
    pub fn parse(dir: PathBuf, id: &str, addr: &str) -> Result<Self> {
        let id: NodeId = id.parse().map_err(|_| {
            Failure::new(
                crate::exit::ExitCode::Usage,
                format!("--id {id:?} is not a node id such as node4 or 4"),
            )
        })?;
        let (host, port) = split_host_port(addr)
            .map_err(|error| Failure::new(crate::exit::ExitCode::Usage, error))?;
        Ok(AddNodePlan {
            dir,
            id,
            host,
            port,
        })
    }

    /// `host:port` as written into `peers` and `client.toml`.
    pub fn address(&self) -> String {
        join_host_port(&self.host, self.port)
    }
}

/// What `cluster add-node` wrote.
#[derive(Debug, Clone)]
pub struct AddedNode {
    /// The new node's directory, `DIR/<id>`.
    pub node_dir: PathBuf,
    /// Its `node.toml`.
    pub config: PathBuf,
    /// The client configuration that now lists the node, if DIR has one.
    pub client_config: Option<PathBuf>,
}

/// Runs `cluster add-node` and tells the operator what to do next.
pub fn run(args: &ClusterAddNodeArgs) -> Result<()> {
    let plan = AddNodePlan::parse(args.dir.clone(), &args.id, &args.addr)?;
    let added = add_node(&plan)?;
    let id = plan.id;
    let address = plan.address();
    println!(
        "wrote {}/ (node.crt, node.key, ca.crt, node.toml with join = true; no Raft state)",
        added.node_dir.display()
    );
    match &added.client_config {
        Some(path) => println!("added {id} = {address:?} to {}", path.display()),
        None => println!(
            "no client.toml in {}; add {id} = {address:?} to your clients' [nodes]",
            plan.dir.display()
        ),
    }
    let client = added
        .client_config
        .clone()
        .unwrap_or_else(|| PathBuf::from("CLIENT.toml"));
    println!("next steps:");
    println!(
        "  1. copy {} to the new host if it runs elsewhere",
        added.node_dir.display()
    );
    println!(
        "  2. vault-cli --config {} member add {id} --addr {address}",
        client.display()
    );
    println!(
        "  3. vault-cli node run --config {}",
        added.config.display()
    );
    Ok(())
}

/// Writes the new member's directory and lists it in `DIR/client.toml`.
///
/// Everything that can be refused is checked before anything is written:
/// an existing directory or member with this id, a DIR without a CA, an
/// address another member already uses, an unreadable `node.toml` or
/// `client.toml`. If writing the directory fails half-way it is removed,
/// so a second attempt is not refused because of the first.
pub fn add_node(plan: &AddNodePlan) -> Result<AddedNode> {
    let id = plan.id.to_string();
    let node_dir = plan.dir.join(&id);
    if node_dir.exists() {
        let sentence = format!(
            "{} already exists; if {id} is being replaced, run `vault-cli member remove {id}` \
             first, then remove {} and run cluster add-node again",
            node_dir.display(),
            node_dir.display()
        );
        return Err(Failure::new(crate::exit::ExitCode::Conflict, sentence).into());
    }
    let ca_dir = plan.dir.join("ca");
    if !ca_dir.join("ca.key").is_file() {
        bail!(
            "{} holds no CA (no {}): cluster add-node signs with the CA that cluster init \
             wrote, so run it on the machine that holds the cluster directory",
            plan.dir.display(),
            ca_dir.join("ca.key").display()
        );
    }
    let authority = CertificateAuthority::load(&ca_dir)
        .with_context(|| format!("cannot load the cluster CA in {}", ca_dir.display()))?;

    let address = plan.address();
    let mut peers = current_members(&plan.dir)?;
    if peers.contains_key(&id) {
        let sentence = format!(
            "{id} is already a member in {} (another directory's node.toml has that id); \
             choose another id",
            plan.dir.display()
        );
        return Err(Failure::new(crate::exit::ExitCode::Conflict, sentence).into());
    }
    if let Some((other, _)) = peers.iter().find(|(_, taken)| **taken == address) {
        let sentence = format!("{other} already uses {address}; give {id} another address or port");
        return Err(Failure::new(crate::exit::ExitCode::Conflict, sentence).into());
    }
    peers.insert(id.clone(), address.clone());

    let client_path = plan.dir.join("client.toml");
    let client = if client_path.exists() {
        let text = std::fs::read_to_string(&client_path)
            .with_context(|| format!("cannot read {}", client_path.display()))?;
        let file: ClientFile = toml::from_str(&text)
            .with_context(|| format!("invalid client config {}", client_path.display()))?;
        Some(file)
    } else {
        None
    };

    let node = NodeDirectory {
        dir: &plan.dir,
        id: plan.id,
        host: &plan.host,
        port: plan.port,
        peers: &peers,
        join: true,
    };
    let config = match write_node_directory(&authority, &node) {
        Ok(config) => config,
        Err(error) => {
            // The directory did not exist before (checked above), so
            // everything in it is ours to remove.
            let _ = std::fs::remove_dir_all(&node_dir);
            return Err(error);
        }
    };

    let client_config = match client {
        Some(mut file) => {
            file.nodes.insert(id, address);
            replace_file(&client_path, &toml::to_string_pretty(&file)?)?;
            Some(client_path)
        }
        None => None,
    };
    Ok(AddedNode {
        node_dir,
        config,
        client_config,
    })
}

/// Every member with a directory in `dir`: id (canonical) -> the address
/// it gives for itself in its own `peers`, which is the one others dial
/// (its `listen` may be `0.0.0.0`).
fn current_members(dir: &Path) -> Result<BTreeMap<String, String>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut members = BTreeMap::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path()
            .join("node.toml");
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file: NodeFile = toml::from_str(&text)
            .with_context(|| format!("invalid node config {}", path.display()))?;
        let id: NodeId = file
            .id
            .parse()
            .with_context(|| format!("{}: id {:?} is not a node id", path.display(), file.id))?;
        let Some(address) = file.peers.get(&file.id) else {
            bail!(
                "{} does not list {} itself in peers, so its address is unknown",
                path.display(),
                file.id
            );
        };
        members.insert(id.to_string(), address.clone());
    }
    Ok(members)
}

/// Splits `HOST:PORT` (`[v6]:PORT` for IPv6) into host and port, or says
/// in one sentence what is wrong with it. `member add --addr` checks its
/// address with this too, so both commands accept the same addresses.
pub(crate) fn split_host_port(addr: &str) -> std::result::Result<(String, u16), String> {
    let usage = || format!("--addr {addr:?} must be HOST:PORT, e.g. 10.0.0.4:7001 or db4:7001");
    let (host, port) = addr.rsplit_once(':').ok_or_else(usage)?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']').ok_or_else(usage)?,
        // An unbracketed IPv6 address would be ambiguous: which colon
        // starts the port?
        None if host.contains(':') => {
            return Err(format!("{}; put an IPv6 address in brackets", usage()))
        }
        None => host,
    };
    if host.is_empty() {
        return Err(usage());
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|port| *port > 0)
        .ok_or_else(usage)?;
    Ok((host.to_string(), port))
}

/// Replaces `path` with `contents` through a temporary file and a rename,
/// so a crash never leaves a half-written `client.toml`.
fn replace_file(path: &Path, contents: &str) -> Result<()> {
    let temporary = path.with_extension("toml.tmp");
    std::fs::write(&temporary, contents)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    if let Ok(metadata) = std::fs::metadata(path) {
        std::fs::set_permissions(&temporary, metadata.permissions())?;
    }
    std::fs::rename(&temporary, path).with_context(|| format!("cannot replace {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_init::{init, InitPlan};
    use std::os::unix::fs::PermissionsExt;

    fn cluster(root: &Path) -> PathBuf {
        let dir = root.join("c");
        let plan = InitPlan::multi_host(
            dir.clone(),
            &["10.1.0.1".into(), "10.1.0.2".into(), "10.1.0.3".into()],
            7001,
        );
        init(&plan).unwrap();
        dir
    }

    fn plan(dir: &Path, id: &str, addr: &str) -> AddNodePlan {
        AddNodePlan::parse(dir.to_path_buf(), id, addr).unwrap()
    }

    #[test]
    fn writes_a_joiner_directory_listing_every_member_and_itself() {
        let root = tempfile::tempdir().unwrap();
        let dir = cluster(root.path());
        let added = add_node(&plan(&dir, "4", "10.1.0.4:7001")).unwrap();
        assert_eq!(added.node_dir, dir.join("node4"));

        let node = crate::config::node::load(&added.config, &|_| None).unwrap();
        assert_eq!(node.id, NodeId(4));
        assert!(node.join, "a node made by add-node is a joiner");
        assert_eq!(node.listen.to_string(), "10.1.0.4:7001");
        let peers: Vec<(String, String)> = node
            .peers
            .iter()
            .map(|(id, addr)| (id.to_string(), addr.clone()))
            .collect();
        assert_eq!(
            peers,
            (1..=4)
                .map(|k| (format!("node{k}"), format!("10.1.0.{k}:7001")))
                .collect::<Vec<_>>()
        );
        assert!(
            !node.data_dir.exists(),
            "a joiner starts empty: no Raft state is written"
        );

        let key_mode = std::fs::metadata(dir.join("node4/node.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(dir.join("node4/ca.crt")).unwrap(),
            std::fs::read_to_string(dir.join("ca/ca.crt")).unwrap()
        );
        // The certificate, its key and the CA copy load as one set of
        // credentials, and the certificate names node4.
        let tls = certs::Credentials::load(&node.ca, &node.cert, &node.key).unwrap();
        assert_eq!(tls.identity().node_id(), Some("node4"));
    }

    #[test]
    fn a_host_name_gets_an_all_interfaces_listen_address() {
        let root = tempfile::tempdir().unwrap();
        let dir = cluster(root.path());
        let added = add_node(&plan(&dir, "node5", "db5.example:7005")).unwrap();
        let node = crate::config::node::load(&added.config, &|_| None).unwrap();
        assert_eq!(node.id, NodeId(5));
        assert_eq!(node.listen.to_string(), "0.0.0.0:7005");
        assert_eq!(node.peers[&NodeId(5)], "db5.example:7005");
    }

    #[test]
    fn client_toml_lists_the_new_node() {
        let root = tempfile::tempdir().unwrap();
        let dir = cluster(root.path());
        add_node(&plan(&dir, "node4", "10.1.0.4:7001")).unwrap();
        let client = crate::config::client::load(&dir.join("client.toml")).unwrap();
        assert_eq!(client.nodes.len(), 4);
        assert_eq!(client.nodes["node4"], "10.1.0.4:7001");
        assert_eq!(client.nodes["node1"], "10.1.0.1:7001");
        assert_eq!(client.cert, dir.join("admin/client.crt"));
    }

    #[test]
    fn a_later_joiner_lists_an_earlier_one() {
        let root = tempfile::tempdir().unwrap();
        let dir = cluster(root.path());
        add_node(&plan(&dir, "node4", "10.1.0.4:7001")).unwrap();
        let added = add_node(&plan(&dir, "node5", "10.1.0.5:7001")).unwrap();
        let node = crate::config::node::load(&added.config, &|_| None).unwrap();
        assert_eq!(node.peers.len(), 5);
        assert_eq!(node.peers[&NodeId(4)], "10.1.0.4:7001");
    }

    #[test]
    fn an_existing_id_is_refused_with_the_fix() {
        let root = tempfile::tempdir().unwrap();
        let dir = cluster(root.path());
        let before = std::fs::read_to_string(dir.join("node2/node.toml")).unwrap();
        let error = add_node(&plan(&dir, "2", "10.1.0.9:7001")).unwrap_err();
        assert_eq!(crate::exit::code_for(&error), 4, "already exists is exit 4");
        let text = error.to_string();
        assert!(text.contains("already exists"), "{text}");
        assert!(text.contains("vault-cli member remove node2"), "{text}");
        assert!(
            text.contains(&dir.join("node2").display().to_string()),
            "{text}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("node2/node.toml")).unwrap(),
            before,
            "the existing node is untouched"
        );
        let client = crate::config::client::load(&dir.join("client.toml")).unwrap();
        assert_eq!(client.nodes["node2"], "10.1.0.2:7001");
    }

    #[test]
    fn a_directory_without_a_ca_is_refused_and_nothing_is_written() {
        let root = tempfile::tempdir().unwrap();
        let dir = cluster(root.path());
        std::fs::remove_dir_all(dir.join("ca")).unwrap();
        let error = add_node(&plan(&dir, "node4", "10.1.0.4:7001")).unwrap_err();
        assert!(error.to_string().contains("holds no CA"), "{error}");
        assert!(!dir.join("node4").exists());
        let client = crate::config::client::load(&dir.join("client.toml")).unwrap();
        assert_eq!(client.nodes.len(), 3);

        let empty = root.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let error = add_node(&plan(&empty, "node1", "10.1.0.1:7001")).unwrap_err();
        assert!(error.to_string().contains("holds no CA"), "{error}");
    }

    #[test]
    fn an_address_in_use_by_a_member_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = cluster(root.path());
        let error = add_node(&plan(&dir, "node4", "10.1.0.3:7001")).unwrap_err();
        assert!(error.to_string().contains("node3 already uses"), "{error}");
        assert!(!dir.join("node4").exists());
    }

    #[test]
    fn bad_ids_and_addresses_are_refused() {
        let dir = PathBuf::from("unused");
        let usage = |id: &str, addr: &str| {
            let error = AddNodePlan::parse(PathBuf::from("unused"), id, addr).unwrap_err();
            assert_eq!(crate::exit::code_for(&error), 2, "{id} {addr}: {error}");
            error.to_string()
        };
        for id in ["node0", "0", "nodeX", "", "node-1"] {
            assert!(usage(id, "h:1").contains("--id"), "{id}");
        }
        for addr in [
            "h",
            "h:",
            ":7001",
            "h:0",
            "h:70000",
            "::1:7001",
            "[::1:7001",
        ] {
            assert!(usage("4", addr).contains("--addr"), "{addr}");
        }
        let v6 = AddNodePlan::parse(dir, "4", "[fd00::4]:7001").unwrap();
        assert_eq!(v6.host, "fd00::4");
        assert_eq!(v6.address(), "[fd00::4]:7001");
    }
}
