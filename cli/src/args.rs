//! The command line of SPEC §8, a stable contract: names, flags and JSON
//! shapes here change only with the specification.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// A replicated password vault: runs nodes, makes certificates, and is the client.
#[derive(Debug, Parser)]
#[command(
    name = "vault-cli",
    version,
    about,
    long_about = None,
    after_help = "Start here: `vault-cli cluster up --dir demo` runs a local 5-node cluster; then\n  export VAULT_CONFIG=$PWD/demo/client.toml\n  vault-cli add-secret github --username me --generate\n  vault-cli get-secret github"
)]
pub struct Cli {
    /// Configuration file, before or after the subcommand: the client's
    /// (default: $VAULT_CONFIG, then ./client.toml), or for `node run` the
    /// node's node.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print one JSON document instead of text (before or after the subcommand).
    #[arg(long, global = true)]
    pub json: bool,

    /// Read the passphrase from this file instead of $VAULT_PASSPHRASE or a
    /// prompt. Also accepted after the subcommands that use a passphrase.
    #[arg(long, value_name = "FILE")]
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
    /// List your secrets, or with --shared those shared with you.
    List(ListArgs),
    /// List the versions kept of a secret.
    History(HistoryArgs),
    /// Store the secrets of a password-manager export (csv or Bitwarden json).
    Import(ImportArgs),
    /// Write every secret of yours, decrypted, as csv or json.
    Export(ExportArgs),
    /// Let another client identity read one of your secrets.
    Share(ShareArgs),
    /// Take back another identity's read access and re-key the secret.
    Unshare(ShareArgs),
    /// Show your identity, whether it is an admin, and your key's fingerprint.
    Whoami(PassphraseArgs),
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
    /// Back up the replicated state, check a backup, restore one into a
    /// new cluster.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// A replicated key-value store on the same bus (the second plug-in):
    /// run its nodes from the cluster's node configs, put, get, cas.
    #[command(subcommand)]
    Kv(KvCommand),
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

/// `vault-cli kv ...`: keys and values are unsigned 64-bit numbers; a key
/// never written holds 0.
#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Run a key-value node (`kv node run --config DIR/nodeK/node.toml`):
    /// the node's address, peers and certificates, with its own Raft log
    /// and database under the data directory's `kv/`.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Set KEY to VALUE.
    Put {
        /// The key.
        key: u64,
        /// The value.
        value: u64,
    },
    /// Read KEY (linearizable unless --stale).
    Get {
        /// The key.
        key: u64,
        /// Answer from the node's own state, without asking the leader.
        #[arg(long)]
        stale: bool,
    },
    /// Set KEY to NEW if it holds EXPECTED; exit code 4 if it does not.
    Cas {
        /// The key.
        key: u64,
        /// The value KEY must hold.
        expected: u64,
        /// The value written if it does.
        new: u64,
    },
}

/// `vault-cli snapshot ...` (SPEC §14).
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Write a consistent copy of the replicated state (ciphertext only) at
    /// a committed index to FILE, atomically (admin only).
    Save {
        /// The backup file to write (replaced atomically if it exists).
        file: PathBuf,
    },
    /// Verify a backup file completely and print what it holds.
    Inspect {
        /// The backup file.
        file: PathBuf,
    },
    /// Write a new cluster's directories (as `cluster init` does) with
    /// every node seeded with the backup's state.
    Restore(SnapshotRestoreArgs),
}

/// `snapshot restore` flags.
#[derive(Debug, Args)]
pub struct SnapshotRestoreArgs {
    /// The backup file (verified completely before anything is written).
    pub file: PathBuf,
    /// Directory to create the new cluster in (missing or empty).
    #[arg(long)]
    pub dir: PathBuf,
    /// Number of nodes (default 3, or the number of --hosts).
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
    /// Reuse the CA in this directory (ca.crt and ca.key, e.g. the old
    /// cluster's DIR/ca), so existing client certificates keep working;
    /// without it a fresh CA is made.
    #[arg(long, value_name = "CA_DIR")]
    pub ca: Option<PathBuf>,
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
    #[arg(long, value_parser = node_count)]
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

/// The most nodes one `cluster init` makes: Raft clusters are 3 to 7
/// voters; more is a typo, not a cluster.
pub const MAX_NODES: usize = 99;

/// `--nodes N` with N from 1 to [`MAX_NODES`] (clap reports anything else
/// as a usage error, exit 2).
fn node_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(count @ 1..=MAX_NODES) => Ok(count),
        Ok(count) => Err(format!("a cluster has 1 to {MAX_NODES} nodes, not {count}")),
        Err(_) => Err(format!("{text:?} is not a number of nodes")),
    }
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
    #[arg(long, default_value_t = 5, value_parser = node_count)]
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
    #[arg(long, conflicts_with = "generate")]
    pub password_stdin: bool,
    /// Make the password here from the operating system's randomness
    /// (printed once after it is stored).
    #[arg(long)]
    pub generate: bool,
    /// Length of a generated password.
    #[arg(long, default_value_t = 24, requires = "generate")]
    pub length: usize,
    /// Letters and digits only in a generated password.
    #[arg(long, requires = "generate")]
    pub no_symbols: bool,
    /// Store the next version of an existing secret; the fields not given
    /// are kept.
    #[arg(long)]
    pub update: bool,
    /// The passphrase source.
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
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
    /// Read this older version (see `history NAME`) instead of the current one.
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
    /// The passphrase source.
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

/// `--passphrase-file` after a subcommand that uses the passphrase.
#[derive(Debug, Args, Default)]
pub struct PassphraseArgs {
    /// Read the passphrase from this file instead of $VAULT_PASSPHRASE or a prompt.
    #[arg(long = "passphrase-file", id = "passphrase_file", value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// `list` flags.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// List the secrets others shared with you (owner, name, version).
    #[arg(long)]
    pub shared: bool,
}

/// `history` flags.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The secret's name.
    pub name: String,
    /// A secret another identity shared with you (NAME means client:NAME;
    /// write admin:NAME for an admin identity).
    #[arg(long)]
    pub owner: Option<String>,
}

/// The file formats of `import`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    /// Columns name,url,username,password,note, with a header line.
    Csv,
    /// A Bitwarden unencrypted JSON export (login items).
    BitwardenJson,
}

/// The file formats of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Columns name,url,username,password,note, with a header line.
    Csv,
    /// `{"secrets":[{"name","username","password","url","note","version"}]}`.
    Json,
}

/// `import` flags.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file to read.
    pub file: PathBuf,
    /// Its format.
    #[arg(long, value_enum)]
    pub format: ImportFormat,
    /// The passphrase source.
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
}

/// `export` flags.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The format to write.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Write here (created with mode 0600, never overwritten) instead of
    /// standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The passphrase source.
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
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
    /// The passphrase source.
    #[command(flatten)]
    pub passphrase: PassphraseArgs,
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
            assert!(matches!(cli.command, Command::List(_)), "{args:?}");
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
    fn a_node_count_of_zero_or_too_many_is_a_usage_error() {
        for count in ["0", "100", "x"] {
            let error = Cli::try_parse_from([
                "vault-cli",
                "cluster",
                "init",
                "--dir",
                "d",
                "--nodes",
                count,
            ])
            .expect_err(count);
            assert_eq!(error.exit_code(), 2, "{count}: {error}");
        }
        parse(&["vault-cli", "cluster", "init", "--dir", "d", "--nodes", "3"]);
    }

    #[test]
    fn passphrase_file_goes_before_or_after_the_commands_that_use_it_only() {
        let before = parse(&["vault-cli", "--passphrase-file", "p", "whoami"]);
        assert_eq!(
            before.passphrase_file.as_deref(),
            Some(std::path::Path::new("p"))
        );
        let after = parse(&["vault-cli", "whoami", "--passphrase-file", "p"]);
        let Command::Whoami(args) = after.command else {
            panic!("not whoami");
        };
        assert_eq!(args.file.as_deref(), Some(std::path::Path::new("p")));
        for args in [
            &["vault-cli", "node", "run", "--passphrase-file", "p"][..],
            &["vault-cli", "status", "--passphrase-file", "p"][..],
        ] {
            let error = Cli::try_parse_from(args).expect_err("offered where it does nothing");
            assert_eq!(error.exit_code(), 2, "{args:?}");
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
