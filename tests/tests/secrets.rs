//! add-secret / get-secret / list through the real CLI, via the leader and
//! via a follower.

use vault_tests::{ClientIdentity, TestCluster};

#[test]
fn add_get_list_update_and_missing_names() {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();

    let added = cluster
        .cli_with_input(
            &[
                "add-secret",
                "github",
                "--username",
                "me",
                "--url",
                "https://github.com",
                "--note",
                "work account",
                "--password-stdin",
            ],
            Some("s3cret\n"),
        )
        .expect_ok()
        .json();
    assert_eq!(added["name"], "github");
    assert_eq!(added["version"], 1);

    let secret = cluster.cli(&["get-secret", "github"]).expect_ok().json();
    assert_eq!(secret["name"], "github");
    assert_eq!(secret["username"], "me");
    assert_eq!(secret["password"], "s3cret", "trailing newline is dropped");
    assert_eq!(secret["url"], "https://github.com");
    assert_eq!(secret["note"], "work account");
    assert_eq!(secret["version"], 1);

    let field = cluster
        .cli(&["get-secret", "github", "--field", "password"])
        .expect_ok()
        .json();
    assert_eq!(field["password"], "s3cret");

    cluster.add_secret("aws", "root", "hunter2");
    let list = cluster.cli(&["list"]).expect_ok().json();
    assert_eq!(
        list,
        serde_json::json!({"secrets": [
            {"name": "aws", "version": 1},
            {"name": "github", "version": 1},
        ]})
    );

    let again =
        cluster.cli_with_input(&["add-secret", "github", "--password-stdin"], Some("other"));
    assert_eq!(again.code, 4, "adding an existing name: {again:?}");
    assert!(again.stderr.contains("already exists"), "{again:?}");
    let unchanged = cluster.cli(&["get-secret", "github"]).expect_ok().json();
    assert_eq!(
        unchanged["password"], "s3cret",
        "a refused add changes nothing"
    );

    let updated = cluster
        .cli_with_input(
            &[
                "add-secret",
                "github",
                "--username",
                "me2",
                "--password-stdin",
                "--update",
            ],
            Some("n3w"),
        )
        .expect_ok()
        .json();
    assert_eq!(updated["version"], 2);
    let secret = cluster.cli(&["get-secret", "github"]).expect_ok().json();
    assert_eq!(secret["password"], "n3w");
    assert_eq!(secret["username"], "me2");
    assert_eq!(secret["version"], 2);

    let missing = cluster.cli(&["get-secret", "no-such-secret"]);
    assert_eq!(missing.code, 3, "{missing:?}");
    assert_eq!(missing.json()["code"], 3);
    assert!(missing.stderr.contains("no-such-secret"), "{missing:?}");

    let update_missing = cluster.cli_with_input(
        &["add-secret", "never-added", "--password-stdin", "--update"],
        Some("x"),
    );
    assert_eq!(update_missing.code, 3, "{update_missing:?}");
}

#[test]
fn a_follower_serves_writes_and_reads_and_stale_reads_after_catching_up() {
    let cluster = TestCluster::start(3);
    let leader = cluster.wait_for_leader();
    let follower = (1..=3).find(|node| *node != leader).expect("a follower");
    let admin = ClientIdentity::dir("admin");
    let via_follower = cluster.write_client_config("follower.toml", &admin, &[follower], None);
    let via_leader = cluster.write_client_config("leader.toml", &admin, &[leader], None);

    // A write sent to the follower is forwarded to the leader.
    let added = cluster
        .cli_as(
            &via_follower,
            &["add-secret", "mail", "--username", "m", "--password-stdin"],
            Some("pw-mail"),
        )
        .expect_ok()
        .json();
    assert_eq!(added["version"], 1);
    let read = cluster
        .cli_as(&via_follower, &["get-secret", "mail"], None)
        .expect_ok()
        .json();
    assert_eq!(read["password"], "pw-mail");
    let read = cluster
        .cli_as(&via_leader, &["get-secret", "mail"], None)
        .expect_ok()
        .json();
    assert_eq!(read["password"], "pw-mail");
    let list = cluster
        .cli_as(&via_follower, &["list"], None)
        .expect_ok()
        .json();
    assert_eq!(list["secrets"][0]["name"], "mail");

    // A write through the leader, then a stale read on the follower once it
    // has applied everything the leader committed.
    cluster
        .cli_as(
            &via_leader,
            &["add-secret", "bank", "--password-stdin"],
            Some("pw-bank"),
        )
        .expect_ok();
    let status = cluster.status().expect("status");
    let commit = status["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["id"] == format!("node{leader}")))
        .and_then(|node| node["commit_index"].as_u64())
        .expect("leader commit index");
    cluster.eventually("the follower applies the leader's commit index", || {
        let indexes = cluster.applied_indexes()?;
        indexes
            .iter()
            .any(|(node, applied)| *node == follower && *applied >= commit)
            .then_some(())
    });
    let stale = cluster
        .cli_as(&via_follower, &["get-secret", "bank", "--stale"], None)
        .expect_ok()
        .json();
    assert_eq!(stale["password"], "pw-bank");
    assert_eq!(stale["version"], 1);
}
