//! `vault-cli kv ...` on real key-value nodes: the command line of the
//! bus's second plug-in, its `--json` documents and exit codes.

use vault_tests::TestCluster;

/// Three `vault-cli kv node run` processes on the directories of `cluster init`.
fn start_kv_cluster() -> TestCluster {
    let mut cluster = TestCluster::init(3);
    cluster.set_node_command(&["kv", "node", "run"]);
    for node in 1..=3 {
        cluster.start_node(node);
    }
    cluster
}

/// `kv put`, `kv get` and `kv cas` through the command line, `--json`.
#[test]
fn kv_commands_put_get_and_swap() {
    let cluster = start_kv_cluster();
    let put = cluster.cli(&["kv", "put", "7", "41"]).expect_ok().json();
    assert_eq!(put, serde_json::json!({ "key": 7, "value": 41 }));
    let get = cluster.cli(&["kv", "get", "7"]).expect_ok().json();
    assert_eq!(get, serde_json::json!({ "key": 7, "value": 41 }));
    let swapped = cluster
        .cli(&["kv", "cas", "7", "41", "42"])
        .expect_ok()
        .json();
    assert_eq!(
        swapped,
        serde_json::json!({ "key": 7, "swapped": true, "current": 41 })
    );
    // A wrong expectation changes nothing and exits with 4 (conflict).
    let refused = cluster.cli(&["kv", "cas", "7", "41", "43"]);
    assert_eq!(refused.code, 4, "{refused:?}");
    assert_eq!(
        refused.json(),
        serde_json::json!({ "key": 7, "swapped": false, "current": 42 })
    );
    let unwritten = cluster
        .cli(&["kv", "get", "8", "--stale"])
        .expect_ok()
        .json();
    assert_eq!(unwritten, serde_json::json!({ "key": 8, "value": 0 }));
}
