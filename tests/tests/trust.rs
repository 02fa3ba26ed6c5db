//! SPEC §4 "The client trusts no node", through real `vault-cli` processes
//! and a real cluster: a wrong passphrase publishes nothing, passphrase
//! sources are not guessed, a recipient's key is pinned, `unshare` re-keys,
//! and secret fields need not be on the command line.
//!
//! Where a test plays a node that misbehaves (keeps serving an old wrapped
//! key) or a user who resets their key, it speaks to the cluster through
//! the client library with that user's own certificate.

use std::path::Path;
use std::time::Duration;
use vault::crypto::{fingerprint, KdfParams, Keyring, Passphrase};
use vault::protocol::{IdentityRecord, Request, Response, SecretRecord};
use vault_tests::{run_cli_full, CliResult, TestCluster, PASSPHRASE};

/// Runs a client command as `config` with `passphrase` in the environment.
fn as_user(config: &Path, passphrase: &str, args: &[&str], input: Option<&str>) -> CliResult {
    let config = config.to_string_lossy();
    let mut full = vec!["--config", config.as_ref()];
    full.extend_from_slice(args);
    full.push("--json");
    run_cli_full(&full, &[("VAULT_PASSPHRASE", passphrase)], input)
}

fn add(cluster: &TestCluster, config: &Path, name: &str, password: &str) {
    cluster
        .cli_as(
            config,
            &["add-secret", name, "--password-stdin"],
            Some(password),
        )
        .expect_ok();
}

/// A client-library connection presenting the certificate of `client`.
fn library_client(cluster: &TestCluster, client: &str) -> vault::client::VaultClient {
    let dir = cluster.dir.path();
    let credentials = certs::Credentials::load(
        &dir.join("ca/ca.crt"),
        &dir.join(client).join("client.crt"),
        &dir.join(client).join("client.key"),
    )
    .expect("client credentials");
    let nodes = (1..=cluster.size)
        .map(|node| {
            let id: consensus::raft::NodeId = format!("node{node}").parse().expect("node id");
            let address = consensus::transport::PeerAddress {
                address: cluster.node_address(node).parse().expect("socket address"),
                server_name: "127.0.0.1".into(),
            };
            (id, address)
        })
        .collect();
    vault::client::VaultClient::new(credentials, nodes, Duration::from_secs(10))
}

/// Sends `requests` as `client` and returns the replies.
fn call_as(
    cluster: &TestCluster,
    client: &str,
    requests: Vec<Request>,
) -> Vec<vault::protocol::Reply> {
    let connection = library_client(cluster, client);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut replies = Vec::new();
        for request in requests {
            replies.push(connection.call(request).await);
        }
        connection.close().await;
        replies
    })
}

fn published(cluster: &TestCluster, asker: &str, identity: &str) -> IdentityRecord {
    let lookup = Request::PublicKey {
        identity: identity.into(),
        stale: false,
    };
    match call_as(cluster, asker, vec![lookup]).remove(0) {
        Ok(Response::PublicKey { record, .. }) => record,
        other => panic!("{identity} has a published record: {other:?}"),
    }
}

fn secret(reply: vault::protocol::Reply) -> SecretRecord {
    match reply {
        Ok(Response::Secret(record)) => record,
        other => panic!("expected a secret, got {other:?}"),
    }
}

#[test]
fn a_wrong_passphrase_is_reported_and_republishes_nothing() {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    let alice = cluster.add_client("alice");
    let bob = cluster.add_client("bob");
    let who = cluster.cli_as(&bob, &["whoami"], None).expect_ok().json();
    add(&cluster, &alice, "before", "pw-before");
    cluster
        .cli_as(&alice, &["share", "before", "--with", "bob"], None)
        .expect_ok();
    let record = published(&cluster, "bob", "client:bob");

    // Bob mistypes his passphrase reading the share, then adding a secret.
    let typo = "correct horse battery stapel";
    let read = as_user(
        &bob,
        typo,
        &["get-secret", "before", "--owner", "alice"],
        None,
    );
    assert_eq!(read.code, 1, "{read:?}");
    assert!(read.stderr.contains("wrong passphrase"), "{read:?}");
    assert!(!read.stdout.contains("pw-before"), "{read:?}");
    let write = as_user(
        &bob,
        typo,
        &["add-secret", "mine", "--password-stdin"],
        Some("x"),
    );
    assert_eq!(write.code, 1, "{write:?}");
    assert!(write.stderr.contains("wrong passphrase"), "{write:?}");
    let whoami = as_user(&bob, typo, &["whoami"], None);
    assert_eq!(whoami.code, 1, "{whoami:?}");

    // Nothing was published or sealed: same record, no secret...
    assert_eq!(published(&cluster, "bob", "client:bob"), record);
    let listing = cluster.cli_as(&bob, &["list"], None).expect_ok().json();
    assert_eq!(listing["secrets"].as_array().map(Vec::len), Some(0));
    // ...so what alice shares afterwards is wrapped for bob's real key.
    add(&cluster, &alice, "after", "pw-after");
    let shared = cluster
        .cli_as(&alice, &["share", "after", "--with", "bob"], None)
        .expect_ok()
        .json();
    assert_eq!(shared["fingerprint"], who["fingerprint"]);
    let read = cluster
        .cli_as(&bob, &["get-secret", "after", "--owner", "alice"], None)
        .expect_ok()
        .json();
    assert_eq!(read["password"], "pw-after");
}

#[test]
fn the_salt_is_random_and_published_with_a_real_cost() {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    let alice = cluster.add_client("alice");
    let bob = cluster.add_client("bob");
    // The same passphrase for two identities: different salts, keys.
    cluster.cli_as(&alice, &["whoami"], None).expect_ok();
    cluster.cli_as(&bob, &["whoami"], None).expect_ok();
    let first = published(&cluster, "alice", "client:alice");
    let second = published(&cluster, "alice", "client:bob");
    assert_ne!(first.salt, second.salt);
    assert_ne!(first.public_key, second.public_key);
    assert!(first.kdf.check(KdfParams::MINIMUM).is_ok(), "{first:?}");
}

#[test]
fn both_passphrase_sources_are_a_usage_error() {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    let file = cluster.dir.path().join("passphrase.txt");
    std::fs::write(&file, format!("{PASSPHRASE}\n")).expect("write passphrase file");
    let config = cluster.client_config();
    let file_arg = file.to_string_lossy();
    let result = as_user(
        &config,
        PASSPHRASE,
        &["--passphrase-file", &file_arg, "whoami"],
        None,
    );
    assert_eq!(result.code, 2, "{result:?}");
    assert!(result.stderr.contains("VAULT_PASSPHRASE"), "{result:?}");
    assert!(result.stderr.contains("--passphrase-file"), "{result:?}");
    // Either one alone works.
    cluster.cli(&["whoami"]).expect_ok();
    let config_arg = config.to_string_lossy();
    let from_file = run_cli_full(
        &[
            "--config",
            &config_arg,
            "--passphrase-file",
            &file_arg,
            "whoami",
            "--json",
        ],
        &[],
        None,
    )
    .expect_ok()
    .json();
    assert_eq!(from_file["identity"], "admin:admin");
    assert_eq!(from_file["admin"], true);
}

#[test]
fn a_changed_recipient_key_is_refused_unless_confirmed() {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    let alice = cluster.add_client("alice");
    let bob = cluster.add_client("bob");
    let bob_before = cluster.cli_as(&bob, &["whoami"], None).expect_ok().json();
    add(&cluster, &alice, "wifi", "pw-1");
    add(&cluster, &alice, "bank", "pw-2");
    let shared = cluster
        .cli_as(&alice, &["share", "wifi", "--with", "bob"], None)
        .expect_ok()
        .json();
    assert_eq!(shared["fingerprint"], bob_before["fingerprint"]);
    let pins = cluster.dir.path().join("alice.pins.toml");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&pins).expect("pin file").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Bob's key changes (here: bob resets his identity with a new
    // passphrase; a node substituting a key looks the same to alice).
    let reset = Keyring::create(
        "client:bob",
        &Passphrase::new("a new passphrase".into()),
        KdfParams::MINIMUM,
    )
    .expect("keys");
    let publish = Request::PublishKey {
        record: reset.record(),
        replace: true,
    };
    let reply = call_as(&cluster, "bob", vec![publish]).remove(0);
    assert_eq!(reply, Ok(Response::KeyPublished));
    let new_fingerprint = fingerprint(&reset.public_key());

    let refused = cluster.cli_as(&alice, &["share", "bank", "--with", "bob"], None);
    assert_eq!(refused.code, 4, "{refused:?}");
    assert!(refused.stderr.contains("changed"), "{refused:?}");
    assert!(refused.stderr.contains(&new_fingerprint), "{refused:?}");
    let grants = call_as(
        &cluster,
        "alice",
        vec![Request::Grants {
            name: "bank".into(),
        }],
    );
    assert!(
        matches!(&grants[0], Ok(Response::Grants { grantees, .. }) if grantees.is_empty()),
        "{grants:?}"
    );
    // Confirming another fingerprint is refused too.
    let wrong = cluster.cli_as(
        &alice,
        &[
            "share",
            "bank",
            "--with",
            "bob",
            "--accept-key",
            "0000-0000",
        ],
        None,
    );
    assert_eq!(wrong.code, 4, "{wrong:?}");
    let accepted = cluster
        .cli_as(
            &alice,
            &[
                "share",
                "bank",
                "--with",
                "bob",
                "--accept-key",
                &new_fingerprint,
            ],
            None,
        )
        .expect_ok()
        .json();
    assert_eq!(accepted["fingerprint"], new_fingerprint.as_str());
    let read = as_user(
        &bob,
        "a new passphrase",
        &["get-secret", "bank", "--owner", "alice"],
        None,
    )
    .expect_ok()
    .json();
    assert_eq!(read["password"], "pw-2");
}

#[test]
fn unshare_rekeys_so_a_former_recipient_cannot_read_later_versions() {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    let alice = cluster.add_client("alice");
    let bob = cluster.add_client("bob");
    let carol = cluster.add_client("carol");
    cluster.cli_as(&bob, &["whoami"], None).expect_ok();
    cluster.cli_as(&carol, &["whoami"], None).expect_ok();
    add(&cluster, &alice, "wifi", "pw-1");
    for grantee in ["bob", "carol"] {
        cluster
            .cli_as(&alice, &["share", "wifi", "--with", grantee], None)
            .expect_ok();
    }
    // What bob (or a node colluding with him) keeps: his wrapped key.
    let read = || Request::GetSecret {
        owner: Some("client:alice".into()),
        name: "wifi".into(),
        stale: false,
    };
    let kept = secret(call_as(&cluster, "bob", vec![read()]).remove(0));
    let unshared = cluster
        .cli_as(&alice, &["unshare", "wifi", "--with", "bob"], None)
        .expect_ok()
        .json();
    assert_eq!(unshared["version"], 2);
    assert_eq!(unshared["regranted"], 1);
    cluster
        .cli_as(
            &alice,
            &["add-secret", "wifi", "--password-stdin", "--update"],
            Some("pw-3"),
        )
        .expect_ok();
    // Carol, re-wrapped, reads the new version; bob is refused by the node.
    let by_carol = cluster
        .cli_as(&carol, &["get-secret", "wifi", "--owner", "alice"], None)
        .expect_ok()
        .json();
    assert_eq!(by_carol["password"], "pw-3");
    assert_eq!(by_carol["version"], 3);
    let by_bob = cluster.cli_as(&bob, &["get-secret", "wifi", "--owner", "alice"], None);
    assert_eq!(by_bob.code, 7, "{by_bob:?}");

    // A node that kept serving bob his old wrapped key with the new
    // version gives him nothing: the data key changed.
    let own = Request::GetSecret {
        owner: None,
        name: "wifi".into(),
        stale: false,
    };
    let current = secret(call_as(&cluster, "alice", vec![own]).remove(0));
    let bob_keys = Keyring::unlock(
        "client:bob",
        &Passphrase::new(PASSPHRASE.into()),
        &published(&cluster, "bob", "client:bob"),
        KdfParams::MINIMUM,
    )
    .expect("bob unlocks");
    let alice_key = published(&cluster, "bob", "client:alice").public_key;
    assert!(
        bob_keys.open(&kept, Some(alice_key)).is_ok(),
        "control: v1 opens"
    );
    let replayed = SecretRecord {
        wrapped_key: kept.wrapped_key.clone(),
        ..current
    };
    assert!(
        bob_keys.open(&replayed, Some(alice_key)).is_err(),
        "bob's old key opened version {}",
        replayed.version
    );
}

#[test]
fn secret_fields_can_come_from_stdin_instead_of_the_command_line() {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    cluster
        .cli_with_input(
            &["add-secret", "mail", "--note", "-"],
            Some("a note\nover two lines\n"),
        )
        .expect_ok();
    let read = cluster.cli(&["get-secret", "mail"]).expect_ok().json();
    assert_eq!(read["note"], "a note\nover two lines");
    assert_eq!(read["password"], serde_json::Value::Null);
    // Standard input carries one value: two fields from it is a usage error.
    let both = cluster.cli_with_input(
        &["add-secret", "bank", "--username", "-", "--password-stdin"],
        Some("x"),
    );
    assert_eq!(both.code, 2, "{both:?}");
    assert_eq!(cluster.cli(&["get-secret", "bank"]).code, 3);
}
