//! Bad input of SPEC §9 through the real CLI: a clear error, nothing lost,
//! and the nodes keep serving.

use std::time::{Duration, Instant};
use vault_tests::{run_cli, ClientIdentity, TestCluster, HANG_GUARD};

#[test]
fn bad_secret_names_are_refused_clearly_and_nothing_is_stored() {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    let long = "a".repeat(257);
    let cases = [
        (long.as_str(), "256 bytes"),
        ("tab\tname", "control characters"),
        ("new\nline", "control characters"),
        ("bell\u{7}", "control characters"),
    ];
    for (name, reason) in cases {
        let refused = cluster.cli_with_input(&["add-secret", name, "--password-stdin"], Some("pw"));
        // Refused before anything is sent, as a usage error (SPEC §8: 2).
        assert_eq!(refused.code, 2, "{name:?}: {refused:?}");
        assert!(refused.stderr.contains(reason), "{name:?}: {refused:?}");
        assert_eq!(
            refused.stderr.trim().lines().count(),
            1,
            "one sentence: {refused:?}"
        );
        assert!(!refused.stderr.contains("panicked"), "{refused:?}");
        let json = refused.json();
        assert_eq!(json["code"], 2);
    }
    let empty = cluster.cli_with_input(&["add-secret", "", "--password-stdin"], Some("pw"));
    assert_eq!(empty.code, 2, "empty name: {empty:?}");

    let list = cluster.cli(&["list"]).expect_ok().json();
    assert_eq!(list, serde_json::json!({"secrets": []}), "nothing stored");

    // The boundary: exactly 256 bytes (multi-byte UTF-8 included) is fine.
    let longest = format!("{}é", "b".repeat(254));
    assert_eq!(longest.len(), 256);
    cluster.add_secret(&longest, "u", "pw-longest");
    let secret = cluster.cli(&["get-secret", &longest]).expect_ok().json();
    assert_eq!(secret["password"], "pw-longest");
}

#[test]
fn node_run_refuses_bad_configs_with_a_clear_message() {
    let cluster = TestCluster::init(3);
    let original =
        std::fs::read_to_string(cluster.node_dir(1).join("node.toml")).expect("node.toml");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a peer that is not a node id",
            original.replace("[peers]\n", "[peers]\nbogus = \"127.0.0.1:1\"\n"),
            "bogus",
        ),
        (
            "this node missing from its peers",
            original.replace("id = \"node1\"", "id = \"node9\""),
            "node9",
        ),
        (
            "not TOML",
            "this is [not toml".to_string(),
            "invalid node config",
        ),
        (
            "an unknown field",
            format!("colour = \"blue\"\n{original}"),
            "colour",
        ),
        (
            "a bad listen address",
            original.replace("listen = \"127.0.0.1:", "listen = \"nowhere:"),
            "listen",
        ),
        (
            "a missing certificate",
            original.replace("cert = \"node.crt\"", "cert = \"missing.crt\""),
            "missing.crt",
        ),
    ];
    for (what, text, expected) in cases {
        let path = cluster.node_dir(1).join("bad.toml");
        std::fs::write(&path, &text).expect("write bad config");
        let started = Instant::now();
        let result = run_cli(&["node", "run", "--config", &path.to_string_lossy()]);
        assert!(started.elapsed() < HANG_GUARD, "{what}: hung");
        assert_ne!(result.code, 0, "{what}: node run accepted it: {result:?}");
        assert_ne!(result.code, -1, "{what}: killed, not refused: {result:?}");
        assert!(
            result.stderr.contains(expected),
            "{what}: message should mention {expected:?}: {}",
            result.stderr
        );
        assert!(!result.stderr.contains("panicked"), "{what}: {result:?}");
    }
    let env_case = run_cli_env_case(&cluster);
    assert_ne!(env_case.code, 0, "{env_case:?}");
    assert!(
        env_case.stderr.contains("VAULT_RAFT_HEARTBEAT_MS"),
        "{env_case:?}"
    );
}

fn run_cli_env_case(cluster: &TestCluster) -> vault_tests::CliResult {
    let config = cluster.node_dir(1).join("node.toml");
    vault_tests::run_cli_with_env(
        &["node", "run", "--config", &config.to_string_lossy()],
        &[("VAULT_RAFT_HEARTBEAT_MS", "fast")],
    )
}

#[test]
fn without_quorum_requests_fail_as_unavailable_within_the_timeout() {
    let mut cluster = TestCluster::start(3);
    let leader = cluster.wait_for_leader();
    cluster.add_secret("kept", "u", "pw");
    let survivor = leader;
    for node in (1..=3).filter(|node| *node != survivor) {
        cluster.kill_node(node);
    }
    let admin = ClientIdentity::dir("admin");
    let only_survivor = cluster.write_client_config("survivor.toml", &admin, &[survivor], Some(3));
    let all_nodes = cluster.write_client_config("all.toml", &admin, &[1, 2, 3], Some(3));
    for config in [&only_survivor, &all_nodes] {
        for (args, input) in [
            (&["add-secret", "lost", "--password-stdin"][..], Some("pw")),
            (&["get-secret", "kept"][..], None),
            (&["list"][..], None),
        ] {
            let started = Instant::now();
            let result = cluster.cli_as(config, args, input);
            let elapsed = started.elapsed();
            assert_eq!(result.code, 6, "{args:?} without quorum: {result:?}");
            assert_eq!(result.json()["code"], 6);
            // Generous: the timeout is 3 s; this only catches "waits forever".
            assert!(
                elapsed < Duration::from_secs(20),
                "{args:?} took {elapsed:?} with timeout_secs = 3"
            );
        }
    }
    // Quorum back: the survivor serves again with everything acknowledged.
    // (A write that timed out may or may not have been committed.)
    let other = (1..=3)
        .find(|node| *node != survivor)
        .expect("another node");
    cluster.start_node(other);
    cluster.wait_for_leader();
    let list = cluster.eventually("the survivor serves again", || {
        let result = cluster.cli_as(&only_survivor, &["list"], None);
        (result.code == 0).then(|| result.json())
    });
    let names: Vec<&str> = list["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .filter_map(|secret| secret["name"].as_str())
        .collect();
    assert!(names.contains(&"kept"), "{names:?}");
}
