//! Elections and graceful shutdown of real `vault-cli node run` processes.

use serde_json::Value;
use vault_tests::{node_number, TestCluster};

/// Every node of a fresh cluster reports the same leader, exactly one node
/// calls itself leader, and all are in the same term.
fn elects_one_agreed_leader(size: usize) {
    let cluster = TestCluster::start(size);
    let leader = cluster.wait_for_leader();
    let status = cluster.status().expect("status after the election");
    let nodes = status["nodes"].as_array().expect("nodes array");
    assert_eq!(nodes.len(), size, "{status}");
    let leaders: Vec<usize> = nodes
        .iter()
        .filter(|node| node["role"] == "leader")
        .filter_map(|node| node_number(node["id"].as_str()?))
        .collect();
    assert_eq!(leaders, vec![leader], "exactly one leader: {status}");
    let terms: Vec<&Value> = nodes.iter().map(|node| &node["term"]).collect();
    assert!(
        terms.iter().all(|term| *term == terms[0]),
        "one term: {status}"
    );
    for node in nodes {
        assert_eq!(node["reachable"], true, "{status}");
        assert_eq!(
            node["leader"],
            format!("node{leader}"),
            "every node names the leader: {status}"
        );
    }
}

#[test]
fn three_nodes_elect_one_leader_they_all_agree_on() {
    elects_one_agreed_leader(3);
}

#[test]
fn five_nodes_elect_one_leader_they_all_agree_on() {
    elects_one_agreed_leader(5);
}

#[test]
fn sigterm_stops_a_node_cleanly_and_it_restarts_with_its_data() {
    let mut cluster = TestCluster::start(3);
    let leader = cluster.wait_for_leader();
    cluster.add_secret("graceful", "me", "pw-graceful");
    let node = if leader == 1 { 2 } else { 1 };
    let status = cluster.stop_node(node).expect("node was running");
    assert!(status.success(), "SIGTERM exit status: {status:?}");
    let log = cluster.node_log(node);
    assert!(
        log.contains(&format!("Node node{node} stopped cleanly")),
        "node{node} log lacks the clean stop line:\n{log}"
    );
    cluster.start_node(node);
    cluster.wait_for_leader();
    let applied = cluster.wait_for_applied(1);
    assert!(applied >= 1);
    let secret = cluster.cli(&["get-secret", "graceful"]).expect_ok().json();
    assert_eq!(secret["password"], "pw-graceful");
}
