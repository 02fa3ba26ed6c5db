//! Authorization between client identities, mTLS refusals through real
//! processes, and that nodes only ever store ciphertext.

use std::path::Path;
use std::time::Duration;
use vault_tests::{files_containing, files_under, run_cli, ClientIdentity, TestCluster};

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[test]
fn a_stranger_cannot_read_or_list_admin_secrets_nor_run_status() {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    cluster.add_secret("github", "me", "admin-only");
    let alice = cluster.add_client("alice");

    // Secrets live in per-owner namespaces: alice has no "github" of her own.
    let own = cluster.cli_as(&alice, &["get-secret", "github"], None);
    assert_eq!(own.code, 3, "{own:?}");
    assert!(!own.stdout.contains("admin-only") && !own.stderr.contains("admin-only"));
    // Asking for admin's secret by owner: refused (not shared with her).
    let theirs = cluster.cli_as(
        &alice,
        &["get-secret", "github", "--owner", "admin:admin"],
        None,
    );
    assert_eq!(theirs.code, 7, "{theirs:?}");
    // The same answer whether or not the secret exists, so nothing leaks.
    let absent = cluster.cli_as(
        &alice,
        &["get-secret", "nothing", "--owner", "admin:admin"],
        None,
    );
    assert_eq!(absent.code, 7, "{absent:?}");
    let list = cluster.cli_as(&alice, &["list"], None).expect_ok().json();
    assert_eq!(list, serde_json::json!({"secrets": []}));
    let status = cluster.cli_as(&alice, &["status"], None);
    assert_eq!(status.code, 7, "status by a non-admin: {status:?}");
    let transfer = cluster.cli_as(&alice, &["transfer-leader"], None);
    assert_eq!(
        transfer.code, 7,
        "transfer-leader by a non-admin: {transfer:?}"
    );

    // Alice's own secrets are invisible to admin's list.
    cluster
        .cli_as(
            &alice,
            &["add-secret", "diary", "--password-stdin"],
            Some("alice-pw"),
        )
        .expect_ok();
    let admin_list = cluster.cli(&["list"]).expect_ok().json();
    assert_eq!(admin_list["secrets"].as_array().map(Vec::len), Some(1));
    assert_eq!(admin_list["secrets"][0]["name"], "github");
}

#[test]
fn share_and_unshare_between_two_clients() {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    let alice = cluster.add_client("alice");
    let bob = cluster.add_client("bob");
    cluster
        .cli_as(
            &alice,
            &[
                "add-secret",
                "wifi",
                "--username",
                "home",
                "--password-stdin",
            ],
            Some("wifi-pw-1"),
        )
        .expect_ok();

    // Bob has published no public key yet (that happens on his first write),
    // so there is nothing to wrap the secret's key for.
    let early = cluster.cli_as(&alice, &["share", "wifi", "--with", "bob"], None);
    assert_eq!(early.code, 3, "{early:?}");
    assert!(early.stderr.contains("public key"), "{early:?}");

    cluster
        .cli_as(
            &bob,
            &["add-secret", "own", "--password-stdin"],
            Some("bob-pw"),
        )
        .expect_ok();
    let before = cluster.cli_as(&bob, &["get-secret", "wifi", "--owner", "alice"], None);
    assert_eq!(before.code, 7, "{before:?}");

    cluster
        .cli_as(&alice, &["share", "wifi", "--with", "bob"], None)
        .expect_ok();
    let shared = cluster
        .cli_as(
            &bob,
            &["get-secret", "wifi", "--owner", "client:alice"],
            None,
        )
        .expect_ok()
        .json();
    assert_eq!(shared["password"], "wifi-pw-1");
    assert_eq!(shared["username"], "home");
    // Sharing grants reading only: bob's list shows his own secrets.
    let bob_list = cluster.cli_as(&bob, &["list"], None).expect_ok().json();
    assert_eq!(bob_list["secrets"].as_array().map(Vec::len), Some(1));

    // An update keeps the data key, so the share follows the new version.
    cluster
        .cli_as(
            &alice,
            &["add-secret", "wifi", "--password-stdin", "--update"],
            Some("wifi-pw-2"),
        )
        .expect_ok();
    let shared = cluster
        .cli_as(&bob, &["get-secret", "wifi", "--owner", "alice"], None)
        .expect_ok()
        .json();
    assert_eq!(shared["password"], "wifi-pw-2");
    assert_eq!(shared["version"], 2);

    cluster
        .cli_as(&alice, &["unshare", "wifi", "--with", "bob"], None)
        .expect_ok();
    let after = cluster.cli_as(&bob, &["get-secret", "wifi", "--owner", "alice"], None);
    assert_eq!(after.code, 7, "{after:?}");
}

#[test]
fn a_wrong_passphrase_cannot_decrypt() {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    cluster.add_secret("github", "me", "pw");
    let config = cluster.client_config();
    let result = vault_tests::run_cli_full(
        &[
            "--config",
            &path_arg(&config),
            "get-secret",
            "github",
            "--json",
        ],
        &[("VAULT_PASSPHRASE", "not the passphrase")],
        None,
    );
    assert_eq!(result.code, 1, "{result:?}");
    let stdout = &result.stdout;
    assert!(stdout.contains("wrong passphrase"), "{stdout}");
    assert!(!stdout.contains("\"pw\""), "{stdout}");
}

#[test]
fn a_client_certificate_from_a_foreign_ca_is_refused() {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    let dir = cluster.dir.path();
    run_cli(&["certs", "ca", "--out", &path_arg(&dir.join("evil-ca"))]).expect_ok();
    run_cli(&[
        "certs",
        "client",
        "--ca",
        &path_arg(&dir.join("evil-ca")),
        "--name",
        "mallory",
        "--admin",
        "--out",
        &path_arg(&dir.join("mallory")),
    ])
    .expect_ok();
    let mallory = cluster.write_client_config(
        "mallory.toml",
        &ClientIdentity::dir("mallory"),
        &[1, 2, 3],
        Some(3),
    );
    for args in [&["list"][..], &["status"], &["get-secret", "x"]] {
        let refused = cluster.cli_as(&mallory, args, None);
        // No node accepts the connection: "unavailable" is what the client
        // can tell (see the ignored test below for the message).
        assert_eq!(refused.code, 6, "{args:?} with a foreign CA: {refused:?}");
        assert!(refused.stderr.starts_with("error: "), "{refused:?}");
    }
    let logs: String = (1..=3).map(|node| cluster.node_log(node)).collect();
    assert!(
        logs.contains("handshake refused"),
        "no node logged the refusal"
    );
    // The nodes keep serving the real clients.
    cluster.add_secret("after", "u", "p");
    cluster.cli(&["get-secret", "after"]).expect_ok();
}

#[test]
fn a_refused_certificate_is_named_in_the_error() {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    let dir = cluster.dir.path();
    run_cli(&["certs", "ca", "--out", &path_arg(&dir.join("evil-ca"))]).expect_ok();
    run_cli(&[
        "certs",
        "client",
        "--ca",
        &path_arg(&dir.join("evil-ca")),
        "--name",
        "mallory",
        "--out",
        &path_arg(&dir.join("mallory")),
    ])
    .expect_ok();
    let mallory = cluster.write_client_config(
        "mallory.toml",
        &ClientIdentity::dir("mallory"),
        &[1, 2, 3],
        Some(3),
    );
    let refused = cluster.cli_as(&mallory, &["list"], None);
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused.stderr.to_lowercase().contains("certificate"),
        "SPEC §9: an unknown certificate gets a clear error; got {:?}",
        refused.stderr
    );
}

#[test]
fn the_cli_refuses_to_present_a_node_certificate() {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    let as_node = cluster.write_client_config(
        "as-node.toml",
        &ClientIdentity {
            ca: "ca/ca.crt".into(),
            cert: "node2/node.crt".into(),
            key: "node2/node.key".into(),
        },
        &[1, 2, 3],
        Some(3),
    );
    let refused = cluster.cli_as(&as_node, &["list"], None);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("node certificate"), "{refused:?}");
}

#[test]
fn a_node_refuses_client_requests_signed_by_a_node_certificate() {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    let dir = cluster.dir.path();
    let credentials = certs::Credentials::load(
        &dir.join("ca/ca.crt"),
        &dir.join("node2/node.crt"),
        &dir.join("node2/node.key"),
    )
    .expect("node2 credentials");
    let nodes = (1..=3)
        .map(|node| {
            let id: consensus::raft::NodeId = format!("node{node}").parse().expect("node id");
            let address = consensus::transport::PeerAddress {
                address: cluster.node_address(node).parse().expect("socket address"),
                server_name: "127.0.0.1".into(),
            };
            (id, address)
        })
        .collect();
    let client = vault::client::VaultClient::new(credentials, nodes, Duration::from_secs(10));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let replies = runtime.block_on(async {
        let list = client
            .call(vault::protocol::Request::List { stale: false })
            .await;
        let status = client.call(vault::protocol::Request::Status).await;
        client.close().await;
        (list, status)
    });
    for reply in [&replies.0, &replies.1] {
        assert!(
            matches!(reply, Err(vault::protocol::VaultError::PermissionDenied(_))),
            "a node certificate acting as a client: {reply:?}"
        );
    }
    cluster.cli(&["list"]).expect_ok();
}

#[test]
fn node_files_never_hold_plaintext_even_after_snapshots() {
    let mut cluster = TestCluster::init(3);
    for node in 1..=3 {
        cluster.set_node_env(node, "VAULT_RAFT_SNAPSHOT_EVERY", "20");
    }
    for node in 1..=3 {
        cluster.start_node(node);
    }
    cluster.wait_for_leader();
    let planted = [
        "Pl41nPassw0rd-7c1e",
        "plain-user-4f2a",
        "https://plain-url-9d3b.example",
        "plain-note-e8a0",
    ];
    let add = |name: &str| {
        cluster
            .cli_with_input(
                &[
                    "add-secret",
                    name,
                    "--username",
                    planted[1],
                    "--url",
                    planted[2],
                    "--note",
                    planted[3],
                    "--password-stdin",
                ],
                Some(planted[0]),
            )
            .expect_ok();
    };
    add("first");
    scan_for_plaintext(&cluster, &planted);
    for round in 0..30 {
        add(&format!("secret-{round}"));
    }
    let applied = cluster.wait_for_applied(31);
    assert!(applied >= 31);
    let snapshots: Vec<_> = (1..=3)
        .flat_map(|node| files_under(&cluster.node_dir(node).join("data")))
        .filter(|path| path.to_string_lossy().ends_with(".snap"))
        .collect();
    assert!(
        !snapshots.is_empty(),
        "VAULT_RAFT_SNAPSHOT_EVERY=20 made no snapshot"
    );
    // Make sure SQLite has checkpointed nothing in plaintext either: stop
    // one node cleanly so its WAL is folded into the database file.
    cluster.stop_node(3);
    scan_for_plaintext(&cluster, &planted);
    let secret = cluster.cli(&["get-secret", "secret-29"]).expect_ok().json();
    assert_eq!(secret["password"], planted[0]);
}

fn scan_for_plaintext(cluster: &TestCluster, planted: &[&str]) {
    let mut scanned = 0;
    for node in 1..=cluster.size {
        let data = cluster.node_dir(node).join("data");
        scanned += files_under(&data).len();
        let log = cluster.node_log(node);
        for text in planted {
            let found = files_containing(&data, text.as_bytes());
            assert!(found.is_empty(), "plaintext {text:?} found in {found:?}");
            assert!(
                !log.contains(text),
                "plaintext {text:?} in node{node}'s log"
            );
        }
    }
    assert!(scanned > 0, "no files under the data directories");
}
