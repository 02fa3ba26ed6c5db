//! Two-phase-commit deletes (SPEC §6) on real `vault-cli` processes.
//!
//! Every check goes through the command line. "Gone on every node" is
//! checked with `get-secret --stale` against each node alone, through a
//! client configuration that names only that node.

use serde_json::Value;
use std::path::PathBuf;
use vault_tests::TestCluster;

/// Exit codes of SPEC §8.
const NOT_FOUND: i32 = 3;
const CONFLICT: i32 = 4;
const ABORTED: i32 = 5;

/// A started cluster whose client uses a cheap KDF; `env` sets node
/// variables as (node, name, value) before the nodes start.
fn cluster(size: usize, env: &[(usize, &str, &str)]) -> TestCluster {
    let mut cluster = TestCluster::init(size);
    let config = cluster.client_config();
    let mut text = std::fs::read_to_string(&config).expect("read client.toml");
    if !text.contains("[kdf]") {
        text.push_str("\n[kdf]\nmemory_kib = 1024\niterations = 1\n");
        std::fs::write(&config, text).expect("write client.toml");
    }
    for (node, name, value) in env {
        cluster.set_node_env(*node, name, value);
    }
    for node in 1..=size {
        cluster.start_node(node);
    }
    cluster.wait_for_leader();
    cluster
}

/// A client configuration next to client.toml that talks to node `node` only.
fn node_client(cluster: &TestCluster, node: usize) -> PathBuf {
    let text = std::fs::read_to_string(cluster.client_config()).expect("read client.toml");
    let mut out = String::new();
    let mut in_nodes = false;
    for line in text.lines() {
        if line.starts_with('[') {
            in_nodes = line.trim() == "[nodes]";
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if in_nodes && !line.trim().is_empty() && !line.starts_with(&format!("node{node} ")) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let path = cluster.dir.path().join(format!("client-node{node}.toml"));
    std::fs::write(&path, out).expect("write per-node client config");
    path
}

fn add(cluster: &TestCluster, name: &str, update: bool) -> i32 {
    let mut args = vec!["add-secret", name, "--password-stdin"];
    if update {
        args.push("--update");
    }
    cluster.cli_with_input(&args, Some("hunter2\n")).code
}

/// `get-secret --stale` on node `node` alone: its exit code.
fn stale_read(cluster: &TestCluster, node: usize, name: &str) -> i32 {
    let config = node_client(cluster, node);
    cluster
        .cli_as(&config, &["get-secret", name, "--stale"], None)
        .code
}

/// Waits until every running node answers `expected` for a stale read.
fn converges(cluster: &TestCluster, name: &str, expected: i32) {
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

fn node_log(cluster: &TestCluster, node: usize) -> String {
    std::fs::read_to_string(cluster.node_dir(node).join("node.log")).unwrap_or_default()
}

/// The delete report: the first JSON document on stdout (on an abort the
/// CLI prints the report, then the error document).
fn report(result: &vault_tests::CliResult) -> Value {
    let first = result.stdout.lines().next().unwrap_or_default();
    serde_json::from_str(first).unwrap_or_else(|error| panic!("not JSON ({error}): {result:?}"))
}

fn votes(report: &Value) -> Vec<(String, String)> {
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

#[test]
fn all_commit_deletes_the_secret_on_every_node() {
    let cluster = cluster(3, &[]);
    assert_eq!(add(&cluster, "mail", false), 0);
    converges(&cluster, "mail", 0);

    let result = cluster.cli(&["delete", "mail"]).expect_ok();
    let report = result.json();
    assert_eq!(report["decision"], "commit", "{report}");
    assert_eq!(
        votes(&report),
        vec![
            ("node1".to_string(), "commit".to_string()),
            ("node2".to_string(), "commit".to_string()),
            ("node3".to_string(), "commit".to_string()),
        ]
    );
    assert_eq!(
        report["acked"],
        serde_json::json!(["node1", "node2", "node3"])
    );
    // Acked means applied: every node already lost the secret.
    for node in 1..=3 {
        assert_eq!(stale_read(&cluster, node, "mail"), NOT_FOUND, "node{node}");
    }
    let tx = report["tx"].as_str().expect("tx id");
    let coordinator_logs: String = (1..=3).map(|node| node_log(&cluster, node)).collect();
    assert!(coordinator_logs.contains(&format!("Coordinator decision for tx {tx}: GLOBAL_COMMIT")));
    assert!(coordinator_logs.contains("sends RPC Vote to Phase Participant-Vote of Node node3"));
    assert!(
        coordinator_logs.contains("sends RPC Decide to Phase Participant-Decision of Node node2")
    );

    // Deleting it again: there is nothing to delete.
    assert_eq!(cluster.cli(&["delete", "mail"]).code, NOT_FOUND);
}

#[test]
fn a_node_with_the_abort_policy_aborts_and_the_secret_stays() {
    let cluster = cluster(3, &[(3, "VAULT_VOTE", "abort")]);
    assert_eq!(add(&cluster, "mail", false), 0);

    let result = cluster.cli(&["delete", "mail"]);
    assert_eq!(result.code, ABORTED, "{result:?}");
    let report = report(&result);
    assert_eq!(report["decision"], "abort");
    assert_eq!(report["votes"]["node3"], "abort");
    assert_eq!(report["votes"]["node1"], "commit");
    assert!(node_log(&cluster, 3).contains("vote policy is abort"));
    converges(&cluster, "mail", 0);
    // The abort released every lock: an update goes through.
    assert_eq!(add(&cluster, "mail", true), 0);
}

#[test]
fn a_node_down_makes_the_delete_abort_and_it_catches_up_later() {
    let mut cluster = cluster(3, &[]);
    assert_eq!(add(&cluster, "mail", false), 0);
    converges(&cluster, "mail", 0);
    let leader = cluster.wait_for_leader();
    let down = if leader == 3 { 2 } else { 3 };
    cluster.kill_node(down);

    let result = cluster.cli(&["delete", "mail"]);
    assert_eq!(result.code, ABORTED, "{result:?}");
    let report = report(&result);
    assert_eq!(report["votes"][format!("node{down}")], "abort", "{report}");
    converges(&cluster, "mail", 0);

    cluster.start_node(down);
    converges(&cluster, "mail", 0);
    // With every node back, the delete commits.
    let report = cluster.cli(&["delete", "mail"]).expect_ok().json();
    assert_eq!(report["decision"], "commit");
    converges(&cluster, "mail", NOT_FOUND);
}

/// The pid of node `node`'s process, found by its unique config path.
fn node_pid(cluster: &TestCluster, node: usize) -> libc::pid_t {
    let config = cluster.node_dir(node).join("node.toml");
    let needle = config.to_string_lossy().into_owned();
    let entries = std::fs::read_dir("/proc").expect("read /proc");
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<libc::pid_t>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|byte| *byte == 0)
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect();
        if args.contains(&needle) && args.iter().any(|arg| arg == "run") {
            return pid;
        }
    }
    panic!("no running process for node{node}");
}

fn signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) on a child process of this test, found by its own
    // unique configuration path.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// The coordinator crashes after the participants prepared and before any
/// decision: a frozen participant (SIGSTOP) keeps the coordinator waiting
/// for its vote (long vote timeout), the coordinator is killed, and the
/// prepared participants ask the leader after the decision timeout, which
/// logs GLOBAL_ABORT. Five nodes, so three keep a quorum.
#[test]
fn a_coordinator_crash_before_the_decision_is_aborted_by_recovery() {
    let env: Vec<(usize, &str, &str)> = (1..=5)
        .flat_map(|node| {
            [
                (node, "VAULT_TWOPC_VOTE_TIMEOUT_MS", "600000"),
                (node, "VAULT_TWOPC_DECISION_TIMEOUT_MS", "2000"),
            ]
        })
        .collect();
    let mut cluster = cluster(5, &env);
    assert_eq!(add(&cluster, "mail", false), 0);
    converges(&cluster, "mail", 0);
    let leader = cluster.wait_for_leader();
    let coordinator = if leader == 1 { 2 } else { 1 };
    let frozen = (1..=5)
        .rev()
        .find(|node| *node != leader && *node != coordinator)
        .expect("a fifth node");
    let frozen_pid = node_pid(&cluster, frozen);
    signal(frozen_pid, libc::SIGSTOP);

    let client = node_client(&cluster, coordinator);
    let outcome = std::thread::scope(|scope| {
        let delete = scope.spawn(|| cluster.cli_as(&client, &["delete", "mail"], None));
        let prepared: Vec<usize> = (1..=5).filter(|node| *node != frozen).collect();
        cluster.eventually("every live participant voted commit", || {
            prepared
                .iter()
                .all(|node| {
                    node_log(&cluster, *node).contains(&format!(
                        "Phase Participant-Vote of Node node{node} sends RPC Vote to Phase Coordinator of Node node{coordinator}"
                    ))
                })
                .then_some(())
        });
        // The coordinator cannot decide before the frozen node's vote or
        // the 10-minute vote timeout: it dies undecided.
        let pid = node_pid(&cluster, coordinator);
        signal(pid, libc::SIGKILL);
        delete.join().expect("delete thread")
    });
    assert_ne!(
        outcome.code, 0,
        "the delete cannot have succeeded: {outcome:?}"
    );
    cluster.kill_node(coordinator);

    let running: Vec<usize> = (1..=5)
        .filter(|node| *node != frozen && *node != coordinator)
        .collect();
    cluster.eventually(
        "a leader logged GLOBAL_ABORT for the orphaned transaction",
        || {
            running
                .iter()
                .any(|node| {
                    node_log(&cluster, *node).contains("proposes GLOBAL_ABORT for undecided tx")
                })
                .then_some(())
        },
    );
    // The lock is released: an update of the secret is accepted (asked of
    // the leader alone: the client would spend its whole timeout on the
    // dead coordinator's address first).
    let live = node_client(&cluster, running[0]);
    cluster.eventually("an update is accepted once recovery aborted", || {
        let update = cluster.cli_as(
            &live,
            &["add-secret", "mail", "--password-stdin", "--update"],
            Some("new\n"),
        );
        (update.code == 0).then_some(())
    });
    signal(frozen_pid, libc::SIGCONT);
    cluster.start_node(coordinator);
    converges(&cluster, "mail", 0);
    let report = cluster.cli(&["delete", "mail"]).expect_ok().json();
    assert_eq!(report["decision"], "commit");
    converges(&cluster, "mail", NOT_FOUND);
}

#[test]
fn a_concurrent_delete_and_update_agree_on_every_node() {
    let cluster = cluster(3, &[]);
    for round in 0..3 {
        let name = format!("race{round}");
        assert_eq!(add(&cluster, &name, false), 0);
        let (delete, update) = std::thread::scope(|scope| {
            let delete = scope.spawn(|| cluster.cli(&["delete", &name]));
            let update = scope.spawn(|| add(&cluster, &name, true));
            (
                delete.join().expect("delete thread"),
                update.join().expect("update thread"),
            )
        });
        assert!(
            [0, NOT_FOUND, CONFLICT].contains(&update),
            "update exit {update}"
        );
        match delete.code {
            0 => converges(&cluster, &name, NOT_FOUND),
            CONFLICT | ABORTED => converges(&cluster, &name, 0),
            other => panic!("delete exit {other}: {delete:?}"),
        }
    }
}

#[test]
fn two_concurrent_deletes_commit_at_most_once() {
    let cluster = cluster(3, &[]);
    assert_eq!(add(&cluster, "twice", false), 0);
    converges(&cluster, "twice", 0);
    let first = node_client(&cluster, 1);
    let second = node_client(&cluster, 2);
    let (one, two) = std::thread::scope(|scope| {
        let one = scope.spawn(|| cluster.cli_as(&first, &["delete", "twice"], None));
        let two = scope.spawn(|| cluster.cli_as(&second, &["delete", "twice"], None));
        (
            one.join().expect("first delete"),
            two.join().expect("second delete"),
        )
    });
    let commits = [&one, &two]
        .iter()
        .filter(|result| result.code == 0)
        .count();
    assert!(commits <= 1, "both deletes committed: {one:?} {two:?}");
    for result in [&one, &two] {
        assert!(
            [0, NOT_FOUND, ABORTED].contains(&result.code),
            "unexpected exit: {result:?}"
        );
    }
    if commits == 1 {
        converges(&cluster, "twice", NOT_FOUND);
    } else {
        // Each locked a different participant first and both aborted: the
        // secret is intact, unlocked, and a lone delete commits.
        converges(&cluster, "twice", 0);
        cluster.cli(&["delete", "twice"]).expect_ok();
        converges(&cluster, "twice", NOT_FOUND);
    }
}
