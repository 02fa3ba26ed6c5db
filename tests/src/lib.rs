//! Support for black-box tests that start real `vault-cli` processes.
//!
//! A [`TestCluster`] is a directory made by `vault-cli cluster init` on
//! loopback ports that were free when it was made, plus one real
//! `vault-cli node run` process per node. Tests talk to it only through the
//! command line (`vault-cli --config client.toml --json ...`), exactly as a
//! user would. Every process is killed when the cluster is dropped, and the
//! directory is removed, so a failing test leaves nothing behind.

use serde_json::Value;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Upper bound for anything a test waits for; only there to catch hangs.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// The passphrase every test client uses.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// Path of the `vault-cli` binary of this workspace, built on first use if
/// the test runner did not build it already.
pub fn vault_cli() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // The test executable lives in target/<profile>/deps/.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable inside target/<profile>/deps");
        let binary = profile_dir.join("vault-cli");
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "vault-cli", "--bin", "vault-cli"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build for vault-cli");
        assert!(status.success(), "building vault-cli failed");
        assert!(binary.exists(), "no vault-cli at {}", binary.display());
        binary
    })
}

/// `count` consecutive loopback UDP ports that are free right now.
pub fn free_port_range(count: u16) -> u16 {
    let seed = std::process::id() as u64 ^ now_nanos();
    for attempt in 0..500u64 {
        let base =
            20_000 + ((seed.wrapping_mul(6364136223846793005) + attempt * 7919) % 40_000) as u16;
        let sockets: Vec<_> = (0..count)
            .map_while(|offset| UdpSocket::bind(("127.0.0.1", base + offset)).ok())
            .collect();
        if sockets.len() == count as usize {
            return base;
        }
    }
    panic!("no {count} consecutive free UDP ports on loopback");
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0)
}

/// The result of one `vault-cli` client command.
#[derive(Debug)]
pub struct CliResult {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliResult {
    fn from_output(output: Output) -> Self {
        CliResult {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Standard output parsed as the one JSON document `--json` promises.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {self:?}"))
    }

    /// Panics with the whole result unless the command succeeded.
    pub fn expect_ok(self) -> Self {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        self
    }
}

/// A local cluster of real `vault-cli node run` processes.
pub struct TestCluster {
    /// The cluster directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// Number of nodes.
    pub size: usize,
    nodes: Vec<Option<Child>>,
    /// Extra environment for node processes, per node (1-based index - 1).
    node_env: Vec<Vec<(String, String)>>,
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
        let dir = tempfile::Builder::new()
            .prefix("vault-test-")
            .tempdir()
            .expect("temp dir");
        let base = free_port_range(size as u16);
        let output = Command::new(vault_cli())
            .args(["cluster", "init", "--dir"])
            .arg(dir.path())
            .args(["--nodes", &size.to_string(), "--host", "127.0.0.1"])
            .args(["--base-port", &base.to_string()])
            .output()
            .expect("run cluster init");
        CliResult::from_output(output).expect_ok();
        TestCluster {
            dir,
            size,
            nodes: (0..size).map(|_| None).collect(),
            node_env: vec![Vec::new(); size],
        }
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
            .args(["node", "run", "--config"])
            .arg(self.node_dir(node).join("node.toml"))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
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

    /// Whether node `node` is running (started and not killed).
    pub fn is_running(&self, node: usize) -> bool {
        self.nodes[node - 1].is_some()
    }

    /// Runs a client command (`--config client.toml --json` added) and returns its result.
    pub fn cli(&self, args: &[&str]) -> CliResult {
        self.cli_with_input(args, None)
    }

    /// Like [`TestCluster::cli`], with `input` on standard input.
    pub fn cli_with_input(&self, args: &[&str], input: Option<&str>) -> CliResult {
        self.cli_as(&self.client_config(), args, input)
    }

    /// Runs a client command with another client configuration file.
    pub fn cli_as(&self, config: &Path, args: &[&str], input: Option<&str>) -> CliResult {
        use std::io::Write;
        let mut child = Command::new(vault_cli())
            .arg("--config")
            .arg(config)
            .args(args)
            .arg("--json")
            .env("VAULT_PASSPHRASE", PASSPHRASE)
            .env_remove("VAULT_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vault-cli");
        if let Some(mut stdin) = child.stdin.take() {
            if let Some(text) = input {
                stdin.write_all(text.as_bytes()).expect("write stdin");
            }
        }
        let output = wait_with_guard(child);
        CliResult::from_output(output)
    }

    /// `status --json` as parsed JSON.
    pub fn status(&self) -> Option<Value> {
        let result = self.cli(&["status"]);
        (result.code == 0).then(|| result.json())
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
            "no agreed leader within {HANG_GUARD:?}; status: {:?}",
            self.status()
        );
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
    pub fn eventually<T>(&self, what: &str, mut attempt: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + HANG_GUARD;
        while Instant::now() < deadline {
            if let Some(value) = attempt() {
                return value;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{what}: not reached within {HANG_GUARD:?}");
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

fn wait_with_guard(child: Child) -> Output {
    // Collect output on a thread so a chatty child can never fill its pipe
    // and block while we wait; kill it if it outlives the hang guard.
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    let output = match receiver.recv_timeout(HANG_GUARD) {
        Ok(output) => output,
        Err(_) => {
            // SAFETY: kill(2) on our own child, which has not been reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            receiver
                .recv()
                .expect("output thread ends once the child dies")
        }
    };
    output.expect("collect vault-cli output")
}
