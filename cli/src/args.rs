//! The command line of SPEC §8, a stable contract: names, flags and JSON
//! shapes here change only with the specification.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// A replicated password vault: runs nodes, makes certificates, and is the client.
#[derive(Debug, Parser)]
#[command(name = "vault-cli", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file, before or after the subcommand: the client's
    /// (default: $VAULT_CONFIG, then ./client.toml), or for `node run` the
    /// node's node.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print one JSON document instead of text (before or after the subcommand).
    #[arg(long, global = true)]
    pub json: bool,

    /// Read the passphrase from this file instead of $VAULT_PASSPHRASE or a prompt.
    #[arg(long, global = true)]
    pub passphrase_file: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or run a whole cluster.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Run one node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Make the cluster's certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Store a secret (encrypted on this machine before it is sent).
    AddSecret(AddSecretArgs),
    /// Read a secret and decrypt it.
    GetSecret(GetSecretArgs),
    /// List your secrets.
    List,
    /// Let another client identity read one of your secrets.
    Share(ShareArgs),
    /// Take back another identity's read access and re-key the secret.
    Unshare(ShareArgs),
    /// Show your identity, whether it is an admin, and your key's fingerprint.
    Whoami,
    /// Delete a secret on every node (two-phase commit).
    Delete(DeleteArgs),
    /// Show every node's role, term and progress.
    Status,
    /// Hand leadership to another node.
    TransferLeader(TransferLeaderArgs),
    /// Drive concurrent clients and print throughput and latency.
    Bench(BenchArgs),
    /// List, add and remove cluster members (admin only).
    #[command(subcommand)]
    Member(MemberCommand),
    /// Print a shell completion script for vault-cli.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (vault-cli.1 and one per subcommand) to DIR.
    Man {
        /// Directory to write the pages to (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// `vault-cli member ...` (SPEC §13).
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Show every member: address, voter or learner, leader, reachable,
    /// and how far its log matches the leader's.
    List,
    /// Add a node as a learner; the leader promotes it to voter once it
    /// has caught up. Make its directory first with `cluster add-node`.
    Add {
        /// The new node's id, e.g. node4.
        id: String,
        /// Where the members reach it, HOST:PORT.
        #[arg(long)]
        addr: String,
    },
    /// Remove a voter or learner (the leader too: it hands over first).
    Remove {
        /// The member's id, e.g. node3.
        id: String,
    },
}

/// `vault-cli cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Write a CA, one directory per node and client.toml.
    Init(ClusterInitArgs),
    /// Initialise DIR if empty, run every node, stop them all on Ctrl-C.
    Up(ClusterUpArgs),
    /// Write a new member's directory DIR/ID (offline, signed with DIR/ca,
    /// `join = true`, no Raft state) and list it in DIR/client.toml.
    AddNode(ClusterAddNodeArgs),
}

/// `cluster init` flags.
#[derive(Debug, Args)]
pub struct ClusterInitArgs {
    /// Directory to create the cluster in.
    #[arg(long)]
    pub dir: PathBuf,
    /// Number of nodes (default 5, or the number of --hosts).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Every node listens on this host, node k on base-port + k - 1.
    #[arg(long, conflicts_with = "hosts")]
    pub host: Option<String>,
    /// One host per node; node k listens on the k-th host at the base port.
    #[arg(long, value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// First port.
    #[arg(long, default_value_t = 7001)]
    pub base_port: u16,
}

/// `cluster add-node` flags.
#[derive(Debug, Args)]
pub struct ClusterAddNodeArgs {
    /// The cluster directory made by `cluster init` (it holds the CA in ca/).
    #[arg(long)]
    pub dir: PathBuf,
    /// The new node's id, e.g. node4 or 4 (written as node4).
    #[arg(long)]
    pub id: String,
    /// HOST:PORT other nodes and clients reach the new node at.
    #[arg(long)]
    pub addr: String,
}

/// `cluster up` flags.
#[derive(Debug, Args)]
pub struct ClusterUpArgs {
    /// Directory holding (or to hold) the cluster.
    #[arg(long)]
    pub dir: PathBuf,
    /// Number of nodes when the directory is initialised here.
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// First port when the directory is initialised here.
    #[arg(long, default_value_t = 7001)]
    pub base_port: u16,
}

/// `vault-cli node ...`
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Run a node until SIGINT or SIGTERM; `--config DIR/nodeK/node.toml`
    /// names its configuration.
    Run(NodeRunArgs),
}

/// `node run` flags.
#[derive(Debug, Args)]
pub struct NodeRunArgs {
    /// Log lines as `text` or as one JSON object per line (default: the
    /// node.toml `log_format`, else text).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<crate::config::node::LogFormat>,
}

/// `vault-cli certs ...`
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create a cluster CA in DIR.
    Ca {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Issue a node certificate signed by the CA in --ca.
    Node {
        /// Directory holding the CA.
        #[arg(long)]
        ca: PathBuf,
        /// Node id, e.g. node3.
        #[arg(long)]
        id: String,
        /// Host names and IP addresses the node is reached at.
        #[arg(long, num_args = 1.., required = true)]
        san: Vec<String>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Issue a client certificate signed by the CA in --ca.
    Client {
        /// Directory holding the CA.
        #[arg(long)]
        ca: PathBuf,
        /// Client name.
        #[arg(long)]
        name: String,
        /// Make an operator (admin) identity.
        #[arg(long)]
        admin: bool,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `add-secret` flags.
#[derive(Debug, Args)]
pub struct AddSecretArgs {
    /// The secret's name.
    pub name: String,
    /// User name stored with the secret (`-`: read it from standard input,
    /// or a hidden prompt on a terminal).
    #[arg(long, allow_hyphen_values = true)]
    pub username: Option<String>,
    /// URL stored with the secret (`-`: standard input or a prompt).
    #[arg(long, allow_hyphen_values = true)]
    pub url: Option<String>,
    /// Free-form note (`-`: standard input or a prompt).
    #[arg(long, allow_hyphen_values = true)]
    pub note: Option<String>,
    /// Read the password from standard input (otherwise a hidden prompt, or none).
    #[arg(long)]
    pub password_stdin: bool,
    /// Replace an existing secret (its version goes up by one).
    #[arg(long)]
    pub update: bool,
}

/// `get-secret` flags.
#[derive(Debug, Args)]
pub struct GetSecretArgs {
    /// The secret's name.
    pub name: String,
    /// Print only this field (username, password, url, note).
    #[arg(long)]
    pub field: Option<String>,
    /// Read the local node's copy without a linearizable read.
    #[arg(long)]
    pub stale: bool,
    /// Read a secret another identity shared with you.
    #[arg(long)]
    pub owner: Option<String>,
    /// Accept this new fingerprint for the owner's key, which changed since
    /// it was pinned (check it with the owner first).
    #[arg(long, value_name = "FINGERPRINT", requires = "owner")]
    pub accept_key: Option<String>,
}

/// `share` / `unshare` flags.
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// The secret's name.
    pub name: String,
    /// The client identity to share with (its name).
    #[arg(long = "with")]
    pub with: String,
    /// Accept this new fingerprint for a grantee's key, which changed since
    /// it was pinned (check it with the grantee first).
    #[arg(long, value_name = "FINGERPRINT")]
    pub accept_key: Option<String>,
}

/// `delete` flags.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The secret's name.
    pub name: String,
}

/// `transfer-leader` flags.
#[derive(Debug, Args)]
pub struct TransferLeaderArgs {
    /// Target node (default: the most up-to-date follower).
    #[arg(long)]
    pub to: Option<String>,
}

/// `bench` flags.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Concurrent clients, each with one request outstanding.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// How long to run, e.g. 10s or 500ms (ignored with --ops).
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// Stop after this many operations instead of after --duration.
    #[arg(long)]
    pub ops: Option<u64>,
    /// Size of each secret's ciphertext in bytes.
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Operation to measure: add (add-secret), get (linearizable read), delete.
    #[arg(long, default_value = "add")]
    pub op: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap_or_else(|error| panic!("{args:?}: {error}"))
    }

    #[test]
    fn config_and_json_are_accepted_before_and_after_the_subcommand() {
        for args in [
            &["vault-cli", "--config", "c.toml", "--json", "list"][..],
            &["vault-cli", "list", "--config", "c.toml", "--json"][..],
            &["vault-cli", "--json", "list", "--config", "c.toml"][..],
        ] {
            let cli = parse(args);
            assert_eq!(cli.config.as_deref(), Some(std::path::Path::new("c.toml")));
            assert!(cli.json, "{args:?}");
            assert!(matches!(cli.command, Command::List), "{args:?}");
        }
    }

    #[test]
    fn node_run_takes_its_node_config_before_or_after() {
        for args in [
            &["vault-cli", "node", "run", "--config", "n/node.toml"][..],
            &["vault-cli", "--config", "n/node.toml", "node", "run"][..],
        ] {
            let cli = parse(args);
            assert_eq!(
                cli.config.as_deref(),
                Some(std::path::Path::new("n/node.toml"))
            );
            assert!(matches!(cli.command, Command::Node(NodeCommand::Run(_))));
        }
    }

    #[test]
    fn node_run_takes_a_log_format() {
        let cli = parse(&["vault-cli", "node", "run", "--log-format", "json"]);
        let Command::Node(NodeCommand::Run(run)) = cli.command else {
            panic!("not node run");
        };
        assert_eq!(run.log_format, Some(crate::config::node::LogFormat::Json));
        assert!(Cli::try_parse_from(["vault-cli", "node", "run", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
