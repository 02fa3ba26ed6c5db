//! Support for black-box tests that start real `vault-cli` processes.
//!
//! A [`TestCluster`] is a directory made by `vault-cli cluster init` on
//! loopback ports that were free when it was made, plus one real
//! `vault-cli node run` process per node. Tests talk to it only through the
//! command line (`vault-cli --config client.toml --json ...`), exactly as a
//! user would. Every process is killed when the cluster is dropped, and the
//! directory is removed, so a failing test leaves nothing behind.
//!
//! A [`netns::HostCluster`] is the multi-host variant (SPEC §10): one
//! network namespace per node on a bridge, real IP addresses, and
//! partitions made by taking a host off the bridge. It needs root and `ip`.
//! [`nft::InboundFilter`] adds finer faults inside a host's namespace
//! (deaf to some peers, random inbound loss); those also need `nft`.

#![warn(missing_docs)]

mod files;
mod members;
pub mod netns;
pub mod nft;
mod process;
pub mod tmpfs;
pub mod twopc;
mod writer;

pub use files::{files_containing, files_under};
pub use members::{Member, NodeView};
pub use process::{
    eventually, eventually_explained, free_port_range, run_cli, run_cli_full, run_cli_with_env,
    run_cli_wrapped, vault_cli, CliResult, HANG_GUARD, PASSPHRASE,
};
pub use writer::{BackgroundWriter, Writes};

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A local cluster of real `vault-cli node run` processes.
pub struct TestCluster {
    /// The cluster directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// Number of nodes: the founding ones and those added since
    /// ([`TestCluster::add_node_directory`]), members or not.
    pub size: usize,
    /// Founding node k listens on 127.0.0.1:(base_port + k - 1).
    pub base_port: u16,
    /// The port of every node (1-based index - 1): an added node gets
    /// whatever port was free when it was added.
    ports: Vec<u16>,
    nodes: Vec<Option<Child>>,
    /// Extra environment for node processes, per node (1-based index - 1).
    node_env: Vec<Vec<(String, String)>>,
    /// The subcommand that runs a node: `node run` (the vault), or
    /// `kv node run` for the key-value plug-in.
    node_command: Vec<String>,
}

impl TestCluster {
    /// Initialises a cluster of `size` nodes and starts every node.
    pub fn start(size: usize) -> Self {
        let mut cluster = Self::init(size);
        for node in 1..=size {
            cluster.start_node(node);
        }
        cluster
    }

    /// Initialises a cluster directory without starting any node.
    pub fn init(size: usize) -> Self {
        Self::made_by(size, |dir, base| {
            let mut command = Command::new(vault_cli());
            command
                .args(["cluster", "init", "--dir"])
                .arg(dir)
                .args(["--nodes", &size.to_string(), "--host", "127.0.0.1"])
                .args(["--base-port", &base.to_string()]);
            command
        })
    }

    /// Makes a new cluster directory with `vault-cli snapshot restore
    /// BACKUP` (reusing the CA in `ca` when given) on free loopback ports,
    /// without starting any node.
    pub fn restore(size: usize, backup: &Path, ca: Option<&Path>) -> Self {
        Self::made_by(size, |dir, base| {
            let mut command = Command::new(vault_cli());
            command
                .args(["snapshot", "restore"])
                .arg(backup)
                .arg("--dir")
                .arg(dir)
                .args(["--nodes", &size.to_string(), "--host", "127.0.0.1"])
                .args(["--base-port", &base.to_string()]);
            if let Some(ca) = ca {
                command.arg("--ca").arg(ca);
            }
            command
        })
    }

    /// A cluster directory written by the command `make(dir, base_port)`
    /// returns, which must succeed, with node k on base_port + k - 1.
    fn made_by(size: usize, make: impl FnOnce(&Path, u16) -> Command) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vault-test-")
            .tempdir()
            .expect("temp dir");
        let base = free_port_range(size as u16);
        let output = make(dir.path(), base)
            .output()
            .expect("run the command that writes the cluster");
        CliResult::from_output(output).expect_ok();
        let cluster = TestCluster {
            dir,
            size,
            base_port: base,
            ports: (0..size as u16).map(|offset| base + offset).collect(),
            nodes: (0..size).map(|_| None).collect(),
            node_env: vec![Vec::new(); size],
            node_command: vec!["node".into(), "run".into()],
        };
        // Cheap Argon2id (a documented client.toml setting) keeps each
        // command fast; the default costs ~0.25 s per command.
        let all: Vec<usize> = (1..=size).collect();
        cluster.write_client_config("client.toml", &ClientIdentity::dir("admin"), &all, None);
        cluster
    }

    /// `host:port` of node `node` (1-based).
    pub fn node_address(&self, node: usize) -> String {
        format!("127.0.0.1:{}", self.ports[node - 1])
    }

    /// Writes `DIR/<file_name>`: a client configuration presenting
    /// `identity`, listing only `nodes`, with cheap key derivation and an
    /// optional command timeout. Returns its path.
    pub fn write_client_config(
        &self,
        file_name: &str,
        identity: &ClientIdentity,
        nodes: &[usize],
        timeout_secs: Option<u64>,
    ) -> PathBuf {
        let mut text = format!(
            "ca = {:?}\ncert = {:?}\nkey = {:?}\n",
            identity.ca, identity.cert, identity.key
        );
        if let Some(seconds) = timeout_secs {
            text.push_str(&format!("timeout_secs = {seconds}\n"));
        }
        text.push_str("\n[nodes]\n");
        for node in nodes {
            text.push_str(&format!("node{node} = {:?}\n", self.node_address(*node)));
        }
        text.push_str("\n[kdf]\nmemory_kib = 8192\niterations = 1\n");
        let path = self.dir.path().join(file_name);
        std::fs::write(&path, text).expect("write client config");
        path
    }

    /// Issues a client certificate for `name` from the cluster CA into
    /// `DIR/<name>/` and writes `DIR/<name>.toml` listing every node.
    pub fn add_client(&self, name: &str) -> PathBuf {
        let out = self.dir.path().join(name);
        run_cli(&[
            "certs",
            "client",
            "--ca",
            &self.dir.path().join("ca").to_string_lossy(),
            "--name",
            name,
            "--out",
            &out.to_string_lossy(),
        ])
        .expect_ok();
        let all: Vec<usize> = (1..=self.size).collect();
        self.write_client_config(
            &format!("{name}.toml"),
            &ClientIdentity::dir(name),
            &all,
            None,
        )
    }

    /// Runs nodes started from now on with `args` (then `--config
    /// node.toml`) instead of `node run`: `["kv", "node", "run"]` runs the
    /// key-value plug-in on the same node directories.
    pub fn set_node_command(&mut self, args: &[&str]) {
        self.node_command = args.iter().map(|arg| arg.to_string()).collect();
    }

    /// Sets an environment variable for node `node` (1-based) on its next start.
    pub fn set_node_env(&mut self, node: usize, name: &str, value: &str) {
        self.node_env[node - 1].push((name.to_string(), value.to_string()));
    }

    /// The directory of node `node` (1-based).
    pub fn node_dir(&self, node: usize) -> PathBuf {
        self.dir.path().join(format!("node{node}"))
    }

    /// The client configuration file written by `cluster init`.
    pub fn client_config(&self) -> PathBuf {
        self.dir.path().join("client.toml")
    }

    /// Starts node `node` (1-based); its output is appended to node.log.
    pub fn start_node(&mut self, node: usize) {
        assert!(self.nodes[node - 1].is_none(), "node{node} already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.node_dir(node).join("node.log"))
            .expect("open node log");
        let mut command = Command::new(vault_cli());
        command
            .args(&self.node_command)
            .arg("--config")
            .arg(self.node_dir(node).join("node.toml"))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            // Plain text logs: tracing-subscriber honours NO_COLOR.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        for (name, value) in &self.node_env[node - 1] {
            command.env(name, value);
        }
        self.nodes[node - 1] = Some(command.spawn().expect("spawn node"));
    }

    /// Kills node `node` with SIGKILL, as a crash or power loss would.
    pub fn kill_node(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` to node `node`'s process while other threads may still
    /// use the cluster: SIGSTOP freezes it, SIGCONT resumes it, SIGKILL
    /// crashes it at an exact point (then [`TestCluster::kill_node`] reaps
    /// it). Does nothing if the node is not running.
    pub fn signal_node(&self, node: usize, signal: libc::c_int) {
        if let Some(pid) = self.node_pid(node) {
            // SAFETY: kill(2) on a child we spawned and have not reaped, so
            // the pid cannot have been reused by another process.
            unsafe {
                libc::kill(pid as libc::pid_t, signal);
            }
        }
    }

    /// Stops node `node` with SIGTERM and waits for it to exit.
    pub fn stop_node(&mut self, node: usize) -> Option<std::process::ExitStatus> {
        let mut child = self.nodes[node - 1].take()?;
        // SAFETY: kill(2) on a child we spawned and have not reaped yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + HANG_GUARD;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Runs `vault-cli node run` for node `node` (1-based) in the
    /// foreground, with `env`, and waits for it to exit (under the hang
    /// guard): for a node that is expected to refuse to start.
    pub fn run_node_to_exit(&self, node: usize, env: &[(&str, &str)]) -> CliResult {
        let config = self.node_dir(node).join("node.toml");
        run_cli_with_env(&["node", "run", "--config", &config.to_string_lossy()], env)
    }

    /// The exit status of node `node` if its process has exited by itself
    /// (it is then reaped and no longer running); `None` while it runs.
    pub fn exited(&mut self, node: usize) -> Option<std::process::ExitStatus> {
        let status = self.nodes[node - 1].as_mut()?.try_wait().ok()??;
        self.nodes[node - 1] = None;
        Some(status)
    }

    /// Whether node `node` is running (started and not killed).
    pub fn is_running(&self, node: usize) -> bool {
        self.nodes[node - 1].is_some()
    }

    /// Runs a client command (`--config client.toml --json` added) and returns its result.
    pub fn cli(&self, args: &[&str]) -> CliResult {
        self.cli_with_input(args, None)
    }

    /// Like [`TestCluster::cli`], with `input` on standard input.
    ///
    /// The admin configuration used lists only the nodes that are running:
    /// today a client spends its whole timeout dialling a stopped node that
    /// is listed first instead of trying the next one (see
    /// `faults::a_client_fails_over_when_the_first_listed_node_is_down`).
    /// Tests of what a user with the full client.toml sees use
    /// [`TestCluster::cli_as`] with [`TestCluster::client_config`].
    pub fn cli_with_input(&self, args: &[&str], input: Option<&str>) -> CliResult {
        let running: Vec<usize> = (1..=self.size).filter(|n| self.is_running(*n)).collect();
        let config = if running.len() == self.size {
            self.client_config()
        } else {
            self.write_client_config(
                "running.toml",
                &ClientIdentity::dir("admin"),
                &running,
                None,
            )
        };
        self.cli_as(&config, args, input)
    }

    /// Runs a client command with another client configuration file.
    pub fn cli_as(&self, config: &Path, args: &[&str], input: Option<&str>) -> CliResult {
        let config = config.to_string_lossy();
        let mut full = vec!["--config", config.as_ref()];
        full.extend_from_slice(args);
        full.push("--json");
        run_cli_full(&full, &[("VAULT_PASSPHRASE", PASSPHRASE)], input)
    }

    /// `status --json` as parsed JSON, asking only the running nodes (a
    /// stopped node would make `status` wait out the client timeout).
    pub fn status(&self) -> Option<Value> {
        let running: Vec<usize> = (1..=self.size).filter(|n| self.is_running(*n)).collect();
        let config = self.write_client_config(
            "status.toml",
            &ClientIdentity::dir("admin"),
            &running,
            Some(5),
        );
        let result = self.cli_as(&config, &["status"], None);
        (result.code == 0).then(|| result.json())
    }

    /// `applied_index` of every running node, by 1-based node number, once
    /// every running node answers `status`.
    pub fn applied_indexes(&self) -> Option<Vec<(usize, u64)>> {
        let status = self.status()?;
        let mut indexes = Vec::new();
        for node in status["nodes"].as_array()? {
            if node["reachable"] != Value::Bool(true) {
                return None;
            }
            let number = node_number(node["id"].as_str()?)?;
            indexes.push((number, node["applied_index"].as_u64()?));
        }
        Some(indexes)
    }

    /// Waits until every running node has applied the same index, at least
    /// `at_least`, and returns it.
    pub fn wait_for_applied(&self, at_least: u64) -> u64 {
        self.eventually("every running node applies the same index", || {
            let indexes = self.applied_indexes()?;
            let first = indexes.first()?.1;
            (first >= at_least && indexes.iter().all(|(_, index)| *index == first)).then_some(first)
        })
    }

    /// Stores a secret as the admin client; panics unless it succeeds.
    pub fn add_secret(&self, name: &str, username: &str, password: &str) -> CliResult {
        self.cli_with_input(
            &[
                "add-secret",
                name,
                "--username",
                username,
                "--password-stdin",
            ],
            Some(password),
        )
        .expect_ok()
    }

    /// Everything node `node` has logged so far.
    pub fn node_log(&self, node: usize) -> String {
        std::fs::read_to_string(self.node_dir(node).join("node.log")).unwrap_or_default()
    }

    /// Process id of node `node`, if running.
    pub fn node_pid(&self, node: usize) -> Option<u32> {
        self.nodes[node - 1].as_ref().map(Child::id)
    }

    /// Waits until every running node reports the same leader, and returns
    /// its 1-based node number.
    pub fn wait_for_leader(&self) -> usize {
        let deadline = Instant::now() + HANG_GUARD;
        while Instant::now() < deadline {
            if let Some(leader) = self.agreed_leader() {
                return leader;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "no agreed leader within {HANG_GUARD:?}; status: {:?}\n{}",
            self.status(),
            self.log_tails(20)
        );
    }

    /// The last `lines` lines of every node's log, for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut text = String::new();
        for node in 1..=self.size {
            let log = self.node_log(node);
            let all: Vec<&str> = log.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            text.push_str(&format!("--- node{node} log (last {lines} lines) ---\n"));
            for line in tail {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    fn agreed_leader(&self) -> Option<usize> {
        let status = self.status()?;
        let nodes = status["nodes"].as_array()?;
        let mut leader = None;
        for node in nodes {
            let number = node_number(node["id"].as_str()?)?;
            if !self.is_running(number) {
                continue;
            }
            if node["reachable"] != Value::Bool(true) {
                return None;
            }
            let said = node_number(node["leader"].as_str()?)?;
            if *leader.get_or_insert(said) != said {
                return None;
            }
        }
        leader.filter(|number| self.is_running(*number))
    }

    /// Repeats `attempt` until it returns `Some`, or panics after [`HANG_GUARD`].
    /// On failure the panic message carries every node's log tail.
    pub fn eventually<T>(&self, what: &str, mut attempt: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + HANG_GUARD;
        while Instant::now() < deadline {
            if let Some(value) = attempt() {
                return value;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{what}: not reached within {HANG_GUARD:?}\n{}",
            self.log_tails(20)
        );
    }
}

/// Which certificate a client configuration presents, as paths relative to
/// the cluster directory.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// CA certificate the client trusts.
    pub ca: String,
    /// Certificate presented.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

impl ClientIdentity {
    /// `DIR/<dir>/client.{crt,key}` with the cluster CA, as written by
    /// `cluster init` (admin) and `certs client`.
    pub fn dir(dir: &str) -> Self {
        ClientIdentity {
            ca: "ca/ca.crt".into(),
            cert: format!("{dir}/client.crt"),
            key: format!("{dir}/client.key"),
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in 1..=self.size {
            self.kill_node(node);
        }
    }
}

/// `node3` -> 3.
pub fn node_number(id: &str) -> Option<usize> {
    id.strip_prefix("node")?.parse().ok()
}
