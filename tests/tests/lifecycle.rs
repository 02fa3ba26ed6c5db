//! Cluster lifecycle (SPEC §13): a node that lost its data never comes
//! back as its old self. `cluster init` writes each node's initial Raft
//! state; `node run` refuses a data directory without one unless the node
//! is a joiner (`join = true`).

use std::path::Path;
use std::time::{Duration, Instant};
use vault_tests::{files_under, TestCluster};

fn other_than(excluded: usize, size: usize) -> usize {
    (1..=size)
        .find(|node| *node != excluded)
        .expect("another node")
}

/// The refusal is one sentence on stderr that names the node and its data
/// directory and says what to do.
fn assert_refusal(stderr: &str, node: usize, data_dir: &Path) {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("holds no Raft state"))
        .collect();
    assert_eq!(lines.len(), 1, "one refusal sentence expected:\n{stderr}");
    let sentence = lines[0];
    for needed in [
        format!("data directory {}", data_dir.display()),
        format!("vault-cli member remove node{node}"),
        "lost its data or was never initialised".to_string(),
        "add it back as a new member".to_string(),
    ] {
        assert!(
            sentence.contains(&needed),
            "{needed:?} missing from: {sentence}"
        );
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The bug this guards against: a follower whose data directory was wiped
/// used to come back as a fresh term-1 voter, able to vote with forgotten
/// state. Now it refuses to start, and the other two keep serving.
#[test]
fn a_wiped_follower_refuses_to_start_and_the_cluster_keeps_serving() {
    let mut cluster = TestCluster::start(3);
    let leader = cluster.wait_for_leader();
    cluster.add_secret("kept", "me", "pw-kept");
    let follower = other_than(leader, 3);
    cluster.wait_for_applied(2);
    let status = cluster
        .stop_node(follower)
        .expect("the follower was running");
    assert!(status.success(), "SIGTERM exit: {status:?}");

    let data_dir = cluster.node_dir(follower).join("data");
    std::fs::remove_dir_all(&data_dir).expect("wipe the follower's data directory");
    let started = Instant::now();
    let refused = cluster.run_node_to_exit(follower, &[]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "refusing took long"
    );
    assert_eq!(
        refused.code, 1,
        "node run on a wiped directory: {refused:?}"
    );
    assert_refusal(&refused.stderr, follower, &data_dir);
    assert!(
        !data_dir.exists(),
        "the refused node recreated its data directory"
    );

    let secret = cluster.cli(&["get-secret", "kept"]).expect_ok().json();
    assert_eq!(secret["password"], "pw-kept");
    cluster.add_secret("after", "me", "pw-after");
    let secret = cluster.cli(&["get-secret", "after"]).expect_ok().json();
    assert_eq!(secret["password"], "pw-after");
}

/// A data directory that is missing, or present and empty (a node never
/// initialised, a replaced disk), is refused before anything is written.
#[test]
fn a_node_without_raft_state_refuses_to_start_and_writes_nothing() {
    let cluster = TestCluster::init(3);
    let missing = cluster.node_dir(1).join("data");
    std::fs::remove_dir_all(&missing).expect("remove node1's data directory");
    let empty = cluster.node_dir(2).join("data");
    std::fs::remove_dir_all(&empty).expect("remove node2's data directory");
    std::fs::create_dir(&empty).expect("create an empty data directory");

    let refused = cluster.run_node_to_exit(1, &[]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert_refusal(&refused.stderr, 1, &missing);
    assert!(!missing.exists(), "node1 recreated its data directory");

    let refused = cluster.run_node_to_exit(2, &[("VAULT_JOIN", "false")]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert_refusal(&refused.stderr, 2, &empty);
    assert!(
        files_under(&empty).is_empty(),
        "node2 wrote into its data directory"
    );
}

/// A wiped voter started as a joiner (`VAULT_JOIN=true`) runs, but with a
/// new incarnation: the others never count it as the voter it was, so it
/// cannot disturb the cluster (no new term, same leader) while the
/// cluster keeps serving. (Promoting it back is `member add`, not here.)
#[test]
fn a_wiped_voter_started_as_a_joiner_runs_without_disturbing_the_cluster() {
    let mut cluster = TestCluster::start(3);
    let leader = cluster.wait_for_leader();
    cluster.add_secret("kept", "me", "pw-kept");
    let term = leader_term(&cluster, leader);
    let follower = other_than(leader, 3);
    cluster
        .stop_node(follower)
        .expect("the follower was running");
    std::fs::remove_dir_all(cluster.node_dir(follower).join("data")).expect("wipe");

    cluster.set_node_env(follower, "VAULT_JOIN", "true");
    let log_before = cluster.node_log(follower).len();
    cluster.start_node(follower);
    // Several election timeouts (500 to 1000 ms by default).
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        cluster.exited(follower),
        None,
        "the joiner exited:\n{}",
        cluster.node_log(follower)
    );
    let log = cluster.node_log(follower)[log_before..].to_string();
    assert!(log.contains("starts as a new member"), "{log}");
    let raft_dir = cluster.node_dir(follower).join("data").join("raft");
    assert!(
        !files_under(&raft_dir).is_empty(),
        "the joiner persisted nothing"
    );

    // Clients of the two members that kept their data (the joiner knows
    // nothing to serve).
    let members: Vec<usize> = (1..=3).filter(|node| *node != follower).collect();
    let admin = vault_tests::ClientIdentity::dir("admin");
    let config = cluster.write_client_config("members.toml", &admin, &members, None);
    let add = ["add-secret", "after", "--password-stdin"];
    cluster.cli_as(&config, &add, Some("pw-after")).expect_ok();
    for (name, password) in [("kept", "pw-kept"), ("after", "pw-after")] {
        let secret = cluster
            .cli_as(&config, &["get-secret", name], None)
            .expect_ok()
            .json();
        assert_eq!(secret["password"], password);
    }
    assert_eq!(leader_term(&cluster, leader), term, "the term moved");
    assert_eq!(cluster.exited(follower), None, "the joiner exited");
}

/// The term node `leader` reports, once it reports itself as the leader.
fn leader_term(cluster: &TestCluster, leader: usize) -> u64 {
    cluster.eventually("the leader reports its term", || {
        let status = cluster.status()?;
        let node = status["nodes"]
            .as_array()?
            .iter()
            .find(|node| node["id"] == format!("node{leader}"))?
            .clone();
        (node["role"] == "leader").then(|| node["term"].as_u64())?
    })
}

/// A peer whose host name does not resolve at start-up (a host not up yet)
/// is resolved again in the background; it stops neither node from
/// starting, and the two that can reach each other form a quorum.
#[test]
fn a_peer_host_that_does_not_resolve_stops_no_one() {
    let mut cluster = TestCluster::init(3);
    // `.invalid` never resolves (RFC 6761).
    let third = cluster.node_address(3);
    let (_, port) = third.rsplit_once(':').expect("host:port");
    let peers = format!(
        "node1={},node2={},node3=node3.invalid:{port}",
        cluster.node_address(1),
        cluster.node_address(2),
    );
    for node in [1, 2] {
        cluster.set_node_env(node, "VAULT_PEERS", &peers);
        cluster.start_node(node);
    }
    cluster.eventually("a write commits on the two nodes that resolve", || {
        let result =
            cluster.cli_with_input(&["add-secret", "early", "--password-stdin"], Some("pw"));
        (result.code == 0).then_some(())
    });
    for node in [1, 2] {
        assert!(cluster.is_running(node), "node{node} stopped");
        let log = cluster.node_log(node);
        assert!(
            log.contains("does not resolve yet"),
            "node{node} did not say why node3 is missing:\n{log}"
        );
    }
}
