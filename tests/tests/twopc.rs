//! Deletes by two-phase commit (SPEC §6) through the real CLI: every node
//! votes commit, or one node's policy forces an abort and nothing is lost.

use vault_tests::TestCluster;

#[test]
#[ignore = "not on this base yet: the server answers delete with 'Delete is not served by this node' (2PC not wired into vault/src/server/handler.rs)"]
fn delete_commits_on_every_node_and_a_forced_abort_keeps_the_secret() {
    let mut cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    cluster.add_secret("doomed", "u", "pw-doomed");
    cluster.add_secret("kept", "u", "pw-kept");

    let deleted = cluster.cli(&["delete", "doomed"]).expect_ok().json();
    assert_eq!(deleted["decision"], "commit", "{deleted}");
    for node in 1..=3 {
        assert_eq!(
            deleted["votes"][format!("node{node}")],
            "commit",
            "{deleted}"
        );
    }
    assert!(
        deleted["tx"].is_string() || deleted["tx"].is_number(),
        "{deleted}"
    );
    let gone = cluster.cli(&["get-secret", "doomed"]);
    assert_eq!(gone.code, 3, "{gone:?}");
    let again = cluster.cli(&["delete", "doomed"]);
    assert_eq!(again.code, 3, "deleting a missing secret: {again:?}");

    // node3's operator forces aborts: the delete must not happen anywhere.
    let stopped = cluster.stop_node(3).expect("node3 was running");
    assert!(stopped.success(), "{stopped:?}");
    cluster.set_node_env(3, "VAULT_VOTE", "abort");
    cluster.start_node(3);
    cluster.wait_for_leader();
    cluster.wait_for_applied(1);
    let aborted = cluster.cli(&["delete", "kept"]);
    assert_eq!(aborted.code, 5, "{aborted:?}");
    let report = aborted.json();
    assert_eq!(report["decision"], "abort", "{report}");
    assert_eq!(report["votes"]["node3"], "abort", "{report}");
    let kept = cluster.cli(&["get-secret", "kept"]).expect_ok().json();
    assert_eq!(kept["password"], "pw-kept");
    // The abort released every lock: the secret can still be updated.
    cluster
        .cli_with_input(
            &["add-secret", "kept", "--password-stdin", "--update"],
            Some("pw-2"),
        )
        .expect_ok();
}
