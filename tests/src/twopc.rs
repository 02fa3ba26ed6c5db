//! Helpers for the two-phase-commit delete tests (SPEC §6): per-node
//! clients, stale reads per node, log lines, and the "no lock remains"
//! check.
//!
//! "Gone on every node" is checked with `get-secret --stale` against each
//! node alone, through a client configuration that names only that node.

use crate::{CliResult, ClientIdentity, TestCluster, HANG_GUARD};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Exit code of SPEC §8: not found.
pub const NOT_FOUND: i32 = 3;
/// Exit code of SPEC §8: already exists or conflict.
pub const CONFLICT: i32 = 4;
/// Exit code of SPEC §8: the 2PC transaction aborted.
pub const ABORTED: i32 = 5;

/// Initialises a cluster of `size` nodes, sets `env` as (node, name, value)
/// before the nodes start, starts them all and waits for a leader.
pub fn start(size: usize, env: &[(usize, &str, &str)]) -> TestCluster {
    let mut cluster = TestCluster::init(size);
    for (node, name, value) in env {
        cluster.set_node_env(*node, name, value);
    }
    for node in 1..=size {
        cluster.start_node(node);
    }
    cluster.wait_for_leader();
    cluster
}

/// A client configuration that talks to node `node` only (so that node is
/// the delete's coordinator), with the default client timeout.
pub fn node_client(cluster: &TestCluster, node: usize) -> PathBuf {
    node_client_with_timeout(cluster, node, None)
}

/// Like [`node_client`] with a client timeout of `timeout_secs`.
pub fn node_client_with_timeout(
    cluster: &TestCluster,
    node: usize,
    timeout_secs: Option<u64>,
) -> PathBuf {
    cluster.write_client_config(
        &format!("node{node}-only.toml"),
        &ClientIdentity::dir("admin"),
        &[node],
        timeout_secs,
    )
}

/// `add-secret NAME` (`--update` if asked) through the running nodes; its
/// exit code.
pub fn add(cluster: &TestCluster, name: &str, update: bool) -> i32 {
    let mut args = vec!["add-secret", name, "--password-stdin"];
    if update {
        args.push("--update");
    }
    cluster.cli_with_input(&args, Some("hunter2\n")).code
}

/// `delete NAME` with node `node` as the coordinator.
pub fn delete_via(cluster: &TestCluster, node: usize, name: &str) -> CliResult {
    cluster.cli_as(&node_client(cluster, node), &["delete", name], None)
}

/// `get-secret --stale` on node `node` alone: its exit code.
pub fn stale_read(cluster: &TestCluster, node: usize, name: &str) -> i32 {
    let config = node_client(cluster, node);
    cluster
        .cli_as(&config, &["get-secret", name, "--stale"], None)
        .code
}

/// Waits until every running node answers `expected` for a stale read.
pub fn converges(cluster: &TestCluster, name: &str, expected: i32) {
    cluster.eventually(
        &format!("every node reads {name} with exit {expected}"),
        || {
            (1..=cluster.size)
                .filter(|node| cluster.is_running(*node))
                .all(|node| stale_read(cluster, node, name) == expected)
                .then_some(())
        },
    );
}

/// The delete report, checked to be the one JSON document on stdout (also
/// on an abort) with exactly the keys of SPEC §8.
pub fn report(result: &CliResult) -> Value {
    let report = result.json();
    let mut keys: Vec<&str> = report
        .as_object()
        .map(|object| object.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["acked", "decision", "tx", "votes"],
        "delete --json keys: {result:?}"
    );
    report
}

/// The report's votes as sorted (node, vote) pairs.
pub fn votes(report: &Value) -> Vec<(String, String)> {
    report["votes"]
        .as_object()
        .map(|votes| {
            votes
                .iter()
                .map(|(node, vote)| (node.clone(), vote.as_str().unwrap_or("?").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether node `node` logged a line whose message is exactly `message`
/// (tracing prints `<time> <LEVEL> <target>: <message>`).
pub fn logged(cluster: &TestCluster, node: usize, message: &str) -> bool {
    let suffix = format!(": {message}");
    cluster
        .node_log(node)
        .lines()
        .any(|line| line.ends_with(&suffix))
}

/// Waits for node `node` to log a line that `matches` accepts and returns
/// it. Polls every few milliseconds (not the usual 100), because some tests
/// act the moment a line appears, e.g. kill the node.
pub fn wait_for_line(
    cluster: &TestCluster,
    node: usize,
    what: &str,
    matches: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + HANG_GUARD;
    while Instant::now() < deadline {
        if let Some(line) = cluster.node_log(node).lines().find(|line| matches(line)) {
            return line.to_string();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!(
        "node{node} never logged {what} within {HANG_GUARD:?}\n{}",
        cluster.log_tails(20)
    );
}

/// Waits for node `node` to start coordinating a delete of `name` and
/// returns the transaction id (from `Node nodeC coordinates tx T: delete "name" ...`).
pub fn coordinated_tx(cluster: &TestCluster, node: usize, name: &str) -> String {
    let prefix = format!(": Node node{node} coordinates tx ");
    let target = format!(": delete {name:?} at version");
    let line = wait_for_line(cluster, node, &format!("a delete of {name}"), |line| {
        line.contains(&prefix) && line.contains(&target)
    });
    line.split(&prefix)
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("no tx id in {line:?}"))
        .to_string()
}

/// Waits for node `node`, the coordinator of `tx`, to log its decision
/// line and returns the decision (`GLOBAL_COMMIT` or `GLOBAL_ABORT`).
pub fn decision_line(cluster: &TestCluster, node: usize, tx: &str) -> String {
    let prefix = format!(": Coordinator decision for tx {tx}: ");
    let line = wait_for_line(cluster, node, &format!("the decision for {tx}"), |line| {
        line.contains(&prefix)
    });
    line.split(&prefix).nth(1).unwrap_or_default().to_string()
}

/// No node holds a 2PC lock on `name` any more: (re-adding it if it is
/// gone) a delete of it commits with every node voting commit, which needs
/// every node to prepare it, and it is then gone everywhere. Every node
/// must be running.
pub fn assert_no_lock_remains(cluster: &TestCluster, name: &str) {
    assert!(
        (1..=cluster.size).all(|node| cluster.is_running(node)),
        "the lock check needs every node's vote"
    );
    if add(cluster, name, false) != 0 {
        // It exists: then it must be at the same version everywhere.
        converges(cluster, name, 0);
    }
    let result = cluster.cli(&["delete", name]);
    assert_eq!(
        result.code,
        0,
        "a lock remains somewhere: {result:?}\n{}",
        cluster.log_tails(40)
    );
    let report = report(&result);
    assert_eq!(report["decision"], "commit", "{report}");
    let expected: Vec<(String, String)> = (1..=cluster.size)
        .map(|node| (format!("node{node}"), "commit".to_string()))
        .collect();
    assert_eq!(votes(&report), expected, "{report}");
    converges(cluster, name, NOT_FOUND);
}
