//! Several hosts on one machine: one Linux network namespace per node, on
//! a bridge, with real IP addresses (SPEC §10).
//!
//! A [`Network`] is a bridge in the root namespace with an address of its
//! own (so clients can run from the root namespace) and, per host, a
//! namespace joined to the bridge by a veth pair. Host k has the address
//! `10.213.X.k`, the bridge `10.213.X.254`, for an X that no interface of
//! this machine uses yet. Every name carries this process's id and a
//! counter, so parallel runs and parallel tests never share a namespace,
//! an interface or a subnet.
//!
//! A partition detaches a host's veth from the bridge
//! ([`Network::isolate`]): the host can no longer reach or be reached by
//! anyone, but its own namespace still reaches it, so a client started
//! there ([`HostCluster::cli_in`]) meets a node that is up and answers but
//! has no quorum. Only `ip` (iproute2) is needed.
//!
//! Everything is removed on drop, panics included: node processes first,
//! then the veths, namespaces and the bridge. Nothing outside these
//! namespaces and this bridge is ever touched.

use crate::process::{eventually_explained, run_cli_wrapped, vault_cli, CliResult, PASSPHRASE};
use crate::ClientIdentity;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The UDP port every node listens on; each host has its own address.
pub const NODE_PORT: u16 = 7001;

/// Why namespace tests cannot run here, or `None` if they can: they need
/// root and the `ip` command, and the kernel must let us make namespaces.
pub fn missing_requirements() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root and iproute2 (ip) for network namespaces; not root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("needs root and iproute2 (ip) for network namespaces; no `ip` command".into());
    }
    let probe = format!("vault-probe-{}-{}", std::process::id(), next_counter());
    match Command::new("ip").args(["netns", "add", &probe]).output() {
        Ok(output) if output.status.success() => {
            let _ = Command::new("ip").args(["netns", "del", &probe]).output();
            None
        }
        Ok(output) => Some(format!(
            "needs network namespaces, and `ip netns add` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(error) => Some(format!("cannot run `ip netns add`: {error}")),
    }
}

/// Prints `SKIPPED: <reason>` so that it shows even when the test harness
/// captures output (it writes to the process's stderr, not through
/// `eprintln!`, which the harness captures for passing tests).
pub fn report_skip(test: &str, reason: &str) {
    let banner = "*".repeat(72);
    let _ = writeln!(
        std::io::stderr(),
        "\n{banner}\nSKIPPED {test}: {reason}\n{banner}"
    );
}

fn next_counter() -> u32 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Runs `ip args...`; panics with its stderr if it fails (setup only).
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run ip {args:?}: {error}"));
    assert!(
        output.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Runs `ip args...` during cleanup: failures are reported, never fatal.
fn ip_quietly(args: &[&str]) -> bool {
    match Command::new("ip").args(args).output() {
        Ok(output) if output.status.success() => true,
        Ok(output) => {
            let _ = writeln!(
                std::io::stderr(),
                "cleanup: ip {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            );
            false
        }
        Err(_) => false,
    }
}

/// One host: a namespace with `eth0` at `ip`, joined to the bridge by the
/// root-side veth `veth`.
#[derive(Debug, Clone)]
struct Host {
    namespace: String,
    veth: String,
    ip: String,
}

/// A bridge and one namespace per host; removed on drop.
#[derive(Debug)]
pub struct Network {
    tag: String,
    bridge: String,
    subnet: String,
    /// Host k (1-based) at index k - 1; `None` for a number not added.
    hosts: Vec<Option<Host>>,
}

impl Network {
    /// Creates the bridge and hosts `1..=count`.
    pub fn create(count: usize) -> Self {
        let pid = std::process::id();
        let counter = next_counter();
        let subnet = free_subnet(pid, counter);
        let mut network = Network {
            tag: format!("{pid}-{counter}"),
            // Interface names have at most 15 bytes: "vb" + pid (at most 7
            // digits) + counter.
            bridge: format!("vb{pid}c{counter}"),
            subnet,
            hosts: Vec::new(),
        };
        // From here on a panic drops `network`, which removes whatever
        // part of the setup exists.
        ip(&["link", "add", &network.bridge, "type", "bridge"]);
        let bridge_address = format!("{}.254/24", network.subnet);
        ip(&["addr", "add", &bridge_address, "dev", &network.bridge]);
        ip(&["link", "set", &network.bridge, "up"]);
        for host in 1..=count {
            network.add_host(host);
        }
        network
    }

    /// Adds host `host` (1-based): its namespace, with `lo` and `eth0` up,
    /// `eth0` at [`Network::ip`] and wired to the bridge.
    pub fn add_host(&mut self, host: usize) {
        assert!((1..=250).contains(&host), "host numbers are 1..=250");
        if self.hosts.len() < host {
            self.hosts.resize(host, None);
        }
        assert!(self.hosts[host - 1].is_none(), "host {host} exists already");
        let namespace = format!("vault-mh-{}-n{host}", self.tag);
        let veth = format!("{}n{host}", self.bridge.replacen("vb", "vh", 1));
        let ip_address = format!("{}.{host}", self.subnet);
        ip(&["netns", "add", &namespace]);
        self.hosts[host - 1] = Some(Host {
            namespace: namespace.clone(),
            veth: veth.clone(),
            ip: ip_address.clone(),
        });
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &namespace,
        ]);
        ip(&["link", "set", &veth, "master", &self.bridge, "up"]);
        let address = format!("{ip_address}/24");
        ip(&["-n", &namespace, "addr", "add", &address, "dev", "eth0"]);
        ip(&["-n", &namespace, "link", "set", "eth0", "up"]);
        ip(&["-n", &namespace, "link", "set", "lo", "up"]);
    }

    fn host(&self, host: usize) -> &Host {
        self.hosts
            .get(host.wrapping_sub(1))
            .and_then(Option::as_ref)
            .unwrap_or_else(|| panic!("no host {host} in this network"))
    }

    /// The IP address of host `host`.
    pub fn ip(&self, host: usize) -> String {
        self.host(host).ip.clone()
    }

    /// The namespace of host `host`.
    pub fn namespace(&self, host: usize) -> String {
        self.host(host).namespace.clone()
    }

    /// Cuts host `host` off from every other host and the root namespace
    /// (its veth leaves the bridge). Inside its namespace it stays up.
    pub fn isolate(&self, host: usize) {
        ip(&["link", "set", &self.host(host).veth, "nomaster"]);
    }

    /// Undoes [`Network::isolate`].
    pub fn heal(&self, host: usize) {
        ip(&["link", "set", &self.host(host).veth, "master", &self.bridge]);
    }

    /// Makes every datagram reach host `host` on its own: the root-side
    /// veth, the last hop into the host, gets `gso_max_segs 1`, so the
    /// kernel splits a batch sent with UDP segmentation offload (quinn
    /// sends several datagrams as one) before it enters the host's
    /// namespace. Without this a filter there sees, and drops, whole
    /// batches: random loss would come in bursts no real network makes.
    /// Stays so until the network goes.
    pub fn unbatch_inbound(&self, host: usize) {
        ip(&[
            "link",
            "set",
            "dev",
            &self.host(host).veth,
            "gso_max_segs",
            "1",
        ]);
    }
}

/// `10.213.X` for an X that no interface here has an address in and no
/// route of the root namespace names, starting from one derived from the
/// process id so parallel runs spread out. A subnet in use elsewhere
/// could make a test's packets reach something that is not ours.
fn free_subnet(pid: u32, counter: u32) -> String {
    let show = |args: &[&str]| {
        let output = Command::new("ip")
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("cannot run ip {args:?}: {error}"));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let addresses = show(&["-o", "-4", "addr", "show"]);
    let routes = show(&["-4", "route", "show", "table", "all"]);
    let start = pid.wrapping_mul(2_654_435_761).wrapping_add(counter * 37) % 250;
    (0..250)
        .map(|step| (start + step) % 250 + 1)
        .map(|x| format!("10.213.{x}"))
        .find(|subnet| {
            let prefix = format!("{subnet}.");
            !addresses.contains(&format!(" {prefix}")) && !routes.contains(&prefix)
        })
        .expect("a free 10.213.X.0/24 subnet")
}

impl Drop for Network {
    fn drop(&mut self) {
        for host in self.hosts.iter().flatten() {
            // Processes left in our own namespaces (a wrapper that outlived
            // its node, say) are ours: stop them so the namespace can go.
            if let Ok(output) = Command::new("ip")
                .args(["netns", "pids", &host.namespace])
                .output()
            {
                for pid in String::from_utf8_lossy(&output.stdout)
                    .split_whitespace()
                    .filter_map(|pid| pid.parse::<libc::pid_t>().ok())
                {
                    // SAFETY: kill(2) has no memory-safety preconditions;
                    // the pid is in a namespace only this test created.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
            // Deleting the root-side veth removes its peer at once;
            // namespace deletion alone is asynchronous.
            ip_quietly(&["link", "del", &host.veth]);
            ip_quietly(&["netns", "del", &host.namespace]);
        }
        ip_quietly(&["link", "del", &self.bridge]);
    }
}

/// A cluster made by `vault-cli cluster init --hosts IP1,IP2,...`, one
/// real `vault-cli node run` per namespace. Nodes are killed on drop,
/// before the network and the directory go.
pub struct HostCluster {
    nodes: Vec<Option<Child>>,
    /// The namespaces and the bridge.
    pub network: Network,
    /// The cluster directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// Every leader seen, by term, across every status taken: the
    /// election-safety record (at most one leader per term).
    leaders_by_term: std::cell::RefCell<BTreeMap<u64, BTreeSet<String>>>,
}

impl HostCluster {
    /// Makes `count` hosts, initialises the cluster for their addresses
    /// and starts every node in its namespace.
    pub fn start(count: usize) -> Self {
        let network = Network::create(count);
        let dir = tempfile::Builder::new()
            .prefix("vault-multihost-")
            .tempdir()
            .expect("temp dir");
        let hosts: Vec<String> = (1..=count).map(|host| network.ip(host)).collect();
        let init = run_cli_wrapped(
            &[],
            &[
                "cluster",
                "init",
                "--dir",
                &dir.path().to_string_lossy(),
                "--hosts",
                &hosts.join(","),
                "--base-port",
                &NODE_PORT.to_string(),
            ],
            &[],
            None,
        );
        init.expect_ok();
        let mut cluster = HostCluster {
            nodes: Vec::new(),
            network,
            dir,
            leaders_by_term: Default::default(),
        };
        for host in 1..=count {
            cluster.start_node(host);
        }
        cluster
    }

    /// The directory of node `node`.
    pub fn node_dir(&self, node: usize) -> PathBuf {
        self.dir.path().join(format!("node{node}"))
    }

    /// `ip:port` of node `node`.
    pub fn node_address(&self, node: usize) -> String {
        format!("{}:{NODE_PORT}", self.network.ip(node))
    }

    /// Starts node `node` in its namespace; output goes to its node.log.
    pub fn start_node(&mut self, node: usize) {
        if self.nodes.len() < node {
            self.nodes.resize_with(node, || None);
        }
        assert!(self.nodes[node - 1].is_none(), "node{node} already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.node_dir(node).join("node.log"))
            .expect("open node log");
        // `ip netns exec` execs the command in place, so the child is the
        // node itself and killing it stops the node.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.network.namespace(node)])
            .arg(vault_cli())
            .args(["node", "run", "--config"])
            .arg(self.node_dir(node).join("node.toml"))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn node in its namespace");
        self.nodes[node - 1] = Some(child);
    }

    /// Kills node `node` (SIGKILL) and reaps it.
    pub fn kill_node(&mut self, node: usize) {
        if let Some(mut child) = self.nodes.get_mut(node - 1).and_then(Option::take) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Writes `DIR/<file_name>`: an admin client configuration listing
    /// only `nodes`, with cheap key derivation and an optional timeout.
    pub fn client_config(&self, file_name: &str, nodes: &[usize], timeout: Option<u64>) -> PathBuf {
        let identity = ClientIdentity::dir("admin");
        let mut text = format!(
            "ca = {:?}\ncert = {:?}\nkey = {:?}\n",
            identity.ca, identity.cert, identity.key
        );
        if let Some(seconds) = timeout {
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

    /// Runs a client command from the root namespace with `config`
    /// (`--json` added).
    pub fn cli(&self, config: &Path, args: &[&str], input: Option<&str>) -> CliResult {
        self.run_client(&[], config, args, input)
    }

    /// Runs a client command inside host `host`'s namespace: the one place
    /// an isolated node can still be reached from.
    pub fn cli_in(
        &self,
        host: usize,
        config: &Path,
        args: &[&str],
        input: Option<&str>,
    ) -> CliResult {
        let namespace = self.network.namespace(host);
        self.run_client(&["ip", "netns", "exec", &namespace], config, args, input)
    }

    fn run_client(
        &self,
        wrapper: &[&str],
        config: &Path,
        args: &[&str],
        input: Option<&str>,
    ) -> CliResult {
        let config = config.to_string_lossy();
        let mut full = vec!["--config", config.as_ref()];
        full.extend_from_slice(args);
        full.push("--json");
        run_cli_wrapped(wrapper, &full, &[("VAULT_PASSPHRASE", PASSPHRASE)], input)
    }

    /// Stores a secret from the root namespace through `config`; panics
    /// unless the cluster acknowledges it.
    pub fn add_secret(&self, config: &Path, name: &str, password: &str) {
        self.cli(
            config,
            &["add-secret", name, "--username", "u", "--password-stdin"],
            Some(password),
        )
        .expect_ok();
    }

    /// Node `node`'s own `status` row, asked from inside its namespace
    /// (so it answers even when isolated), or `None` if it does not answer.
    /// Every leader seen is recorded for [`HostCluster::assert_one_leader_per_term`].
    pub fn node_status(&self, node: usize) -> Option<Value> {
        let config = self.client_config(&format!("status-node{node}.toml"), &[node], Some(3));
        let result = self.cli_in(node, &config, &["status"], None);
        if result.code != 0 {
            return None;
        }
        let row = result.json()["nodes"].as_array()?.first()?.clone();
        if row["reachable"] != Value::Bool(true) {
            return None;
        }
        if row["role"] == "leader" {
            let term = row["term"].as_u64()?;
            let id = row["id"].as_str()?.to_string();
            let mut seen = self.leaders_by_term.borrow_mut();
            let leaders = seen.entry(term).or_default();
            leaders.insert(id);
            assert!(
                leaders.len() <= 1,
                "split brain: two leaders in term {term}: {leaders:?}"
            );
        }
        Some(row)
    }

    /// Waits until every node of `members` names the same leader, itself a
    /// member that says it leads, and returns that leader's number.
    pub fn wait_for_leader(&self, members: &[usize]) -> usize {
        self.eventually(&format!("one leader agreed by {members:?}"), || {
            let mut agreed = None;
            for node in members {
                let row = self.node_status(*node)?;
                let leader = crate::node_number(row["leader"].as_str()?)?;
                if *agreed.get_or_insert(leader) != leader {
                    return None;
                }
            }
            let leader = agreed?;
            let says = self.node_status(leader)?;
            (members.contains(&leader) && says["role"] == "leader").then_some(leader)
        })
    }

    /// Panics unless every term in which a leader was seen had only one.
    /// [`HostCluster::node_status`] already panics at the first second
    /// leader; this also returns the record for the test's own checks.
    pub fn assert_one_leader_per_term(&self) -> BTreeMap<u64, String> {
        self.leaders_by_term
            .borrow()
            .iter()
            .map(|(term, leaders)| {
                assert_eq!(leaders.len(), 1, "term {term}: leaders {leaders:?}");
                (*term, leaders.iter().next().cloned().unwrap_or_default())
            })
            .collect()
    }

    /// Repeats `attempt` until it returns `Some`; after the hang guard,
    /// panics with every node's log tail.
    pub fn eventually<T>(&self, what: &str, attempt: impl FnMut() -> Option<T>) -> T {
        eventually_explained(what, attempt, || self.log_tails(20))
    }

    /// The last `lines` lines of every node's log.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut text = String::new();
        for node in 1..=self.nodes.len() {
            let log =
                std::fs::read_to_string(self.node_dir(node).join("node.log")).unwrap_or_default();
            let all: Vec<&str> = log.lines().collect();
            text.push_str(&format!("--- node{node} log (last {lines} lines) ---\n"));
            for line in &all[all.len().saturating_sub(lines)..] {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }
}

impl Drop for HostCluster {
    fn drop(&mut self) {
        for node in 1..=self.nodes.len() {
            self.kill_node(node);
        }
    }
}
