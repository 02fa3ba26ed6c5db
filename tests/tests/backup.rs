//! Backup and restore (SPEC §14, §8): `snapshot save` from a running
//! cluster, `snapshot inspect`, `snapshot restore` into a new cluster that
//! starts with every secret, and the refusals: damaged files (nothing is
//! written), a directory that is not empty, a client identity (exit 7).

use serde_json::Value;
use std::path::{Path, PathBuf};
use vault_tests::{run_cli, ClientIdentity, TestCluster};

/// `(name, username, password)` of the secrets the tests store.
fn secrets(count: usize) -> Vec<(String, String, String)> {
    (1..=count)
        .map(|k| {
            (
                format!("site-{k}"),
                format!("user-{k}"),
                format!("pw-{k}-{}", k * 7919),
            )
        })
        .collect()
}

/// A running 3-node cluster holding `count` secrets (and one of them
/// updated to version 2).
fn cluster_with(count: usize) -> (TestCluster, Vec<(String, String, String)>) {
    let cluster = TestCluster::start(3);
    cluster.wait_for_leader();
    let mut stored = secrets(count);
    for (name, username, password) in &stored {
        cluster.add_secret(name, username, password);
    }
    let updated = "pw-1-updated".to_string();
    cluster
        .cli_with_input(
            &[
                "add-secret",
                &stored[0].0,
                "--update",
                "--username",
                &stored[0].1,
                "--password-stdin",
            ],
            Some(&updated),
        )
        .expect_ok();
    stored[0].2 = updated;
    (cluster, stored)
}

fn save(cluster: &TestCluster, file: &Path) -> Value {
    cluster
        .cli(&["snapshot", "save", &file.to_string_lossy()])
        .expect_ok()
        .json()
}

fn inspect(file: &Path) -> vault_tests::CliResult {
    run_cli(&["snapshot", "inspect", &file.to_string_lossy(), "--json"])
}

/// The one error sentence on stderr.
fn error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error:"))
        .collect();
    assert_eq!(lines.len(), 1, "one error sentence expected:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0].to_string()
}

#[test]
fn a_saved_backup_restores_into_a_new_cluster_that_serves_every_secret_to_the_old_certificate() {
    let (old, stored) = cluster_with(12);
    let applied_before = old.wait_for_applied(1);
    let file = old.dir.path().join("backup.snap");
    let saved = save(&old, &file);
    assert_eq!(saved["file"], file.to_string_lossy().as_ref());
    assert_eq!(saved["secrets"], 12, "{saved}");
    let index = saved["index"].as_u64().expect("index");
    assert!(
        index >= applied_before,
        "{saved}: taken before index {applied_before}"
    );
    assert!(saved["term"].as_u64().expect("term") >= 1, "{saved}");
    let length = std::fs::metadata(&file).expect("the backup file").len();
    assert_eq!(saved["bytes"], length, "{saved}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the backup is readable by others");
    }
    // Ciphertext only: no password of any secret appears in the file.
    let bytes = std::fs::read(&file).unwrap();
    for (_, _, password) in &stored {
        assert!(
            !bytes
                .windows(password.len())
                .any(|window| window == password.as_bytes()),
            "{password} in plain text in the backup"
        );
    }

    let inspected = inspect(&file).expect_ok().json();
    assert_eq!(inspected, saved, "inspect and save disagree");

    let old_ca = old.dir.path().join("ca");
    let mut new = TestCluster::restore(3, &file, Some(&old_ca));
    assert_eq!(
        std::fs::read(new.dir.path().join("ca/ca.crt")).unwrap(),
        std::fs::read(old_ca.join("ca.crt")).unwrap(),
        "--ca must reuse the old CA"
    );
    for node in 1..=3 {
        new.start_node(node);
    }
    new.wait_for_leader();
    // The state machine starts at the backup's index, as in the old cluster.
    let applied = new.wait_for_applied(index);
    assert!(
        applied >= index,
        "restored nodes applied {applied} < {index}"
    );

    // The old cluster's admin certificate, unchanged (copied, since the old
    // cluster's directory goes with it), reads every secret.
    let kept = new.dir.path().join("old-admin");
    std::fs::create_dir(&kept).unwrap();
    for file in ["client.crt", "client.key"] {
        std::fs::copy(old.dir.path().join("admin").join(file), kept.join(file)).unwrap();
    }
    let old_identity = ClientIdentity {
        ca: "ca/ca.crt".into(),
        cert: "old-admin/client.crt".into(),
        key: "old-admin/client.key".into(),
    };
    let old_config = new.write_client_config("old-admin.toml", &old_identity, &[1, 2, 3], None);
    // The old cluster is gone: the new one alone must answer.
    drop(old);
    for (name, username, password) in &stored {
        let secret = new
            .cli_as(&old_config, &["get-secret", name], None)
            .expect_ok()
            .json();
        assert_eq!(secret["password"], password.as_str(), "{name}");
        assert_eq!(secret["username"], username.as_str(), "{name}");
    }
    let first = new
        .cli_as(&old_config, &["get-secret", &stored[0].0], None)
        .expect_ok()
        .json();
    assert_eq!(first["version"], 2, "the update's version survives");
    // And the restored cluster takes writes.
    new.cli_as(
        &old_config,
        &["add-secret", "after-restore", "--password-stdin"],
        Some("pw-after"),
    )
    .expect_ok();
    let listed = new.cli_as(&old_config, &["list"], None).expect_ok().json();
    assert_eq!(
        listed["secrets"].as_array().map(Vec::len),
        Some(13),
        "{listed}"
    );
}

/// Writes `bytes` to `dir/name` and returns the path.
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn damaged_backups_non_admins_and_non_empty_directories_are_refused_and_nothing_is_written() {
    let (cluster, _) = cluster_with(3);
    let scratch = tempfile::tempdir().unwrap();

    // A client identity may not save (exit 7), and no file appears.
    let alice = cluster.add_client("alice");
    let refused_file = scratch.path().join("alice.snap");
    let refused = cluster.cli_as(
        &alice,
        &["snapshot", "save", &refused_file.to_string_lossy()],
        None,
    );
    assert_eq!(refused.code, 7, "a client saving a snapshot: {refused:?}");
    assert!(!refused_file.exists(), "a refused save wrote a file");

    let good = scratch.path().join("good.snap");
    save(&cluster, &good);
    let bytes = std::fs::read(&good).unwrap();
    let truncated = write_file(scratch.path(), "truncated.snap", &bytes[..bytes.len() - 7]);
    let mut flipped_bytes = bytes.clone();
    let middle = bytes.len() / 2;
    flipped_bytes[middle] ^= 0x10;
    let flipped = write_file(scratch.path(), "flipped.snap", &flipped_bytes);
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"\n");
    let trailing = write_file(scratch.path(), "trailing.snap", &longer);
    let foreign = write_file(scratch.path(), "foreign.snap", b"{\"not\": \"a backup\"}");

    for (file, why) in [
        (&truncated, "truncated"),
        (&flipped, "corrupt"),
        (&trailing, "trailing bytes"),
        (&foreign, "not a vault backup"),
    ] {
        let inspected = inspect(file);
        assert_eq!(
            inspected.code,
            1,
            "inspect {}: {inspected:?}",
            file.display()
        );
        let sentence = error_line(&inspected.stderr);
        assert!(sentence.contains(why), "{why:?} missing: {sentence}");

        let target = scratch.path().join(format!("restored-{why}"));
        let restored = run_cli(&[
            "snapshot",
            "restore",
            &file.to_string_lossy(),
            "--dir",
            &target.to_string_lossy(),
            "--base-port",
            "27901",
        ]);
        assert_eq!(restored.code, 1, "restore {}: {restored:?}", file.display());
        let sentence = error_line(&restored.stderr);
        assert!(sentence.contains(why), "{why:?} missing: {sentence}");
        assert!(
            !target.exists(),
            "a refused restore created {}",
            target.display()
        );
    }

    // A directory that holds anything is refused (exit 4) and left as it was.
    let occupied = scratch.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("keep.txt"), b"mine").unwrap();
    let restored = run_cli(&[
        "snapshot",
        "restore",
        &good.to_string_lossy(),
        "--dir",
        &occupied.to_string_lossy(),
    ]);
    assert_eq!(
        restored.code, 4,
        "restore into a non-empty directory: {restored:?}"
    );
    error_line(&restored.stderr);
    let names: Vec<_> = std::fs::read_dir(&occupied)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("keep.txt")]);

    // Without --ca a fresh CA is made, and every node directory is written
    // as `cluster init` writes one, seeded with the snapshot.
    let fresh = scratch.path().join("fresh");
    run_cli(&[
        "snapshot",
        "restore",
        &good.to_string_lossy(),
        "--dir",
        &fresh.to_string_lossy(),
        "--nodes",
        "5",
        "--base-port",
        "27911",
    ])
    .expect_ok();
    assert_ne!(
        std::fs::read(fresh.join("ca/ca.crt")).unwrap(),
        std::fs::read(cluster.dir.path().join("ca/ca.crt")).unwrap(),
        "without --ca the CA must be new"
    );
    for node in 1..=5 {
        let node_dir = fresh.join(format!("node{node}"));
        for file in ["node.toml", "node.crt", "node.key", "ca.crt"] {
            assert!(
                node_dir.join(file).exists(),
                "{}/{file}",
                node_dir.display()
            );
        }
        let raft: Vec<String> = std::fs::read_dir(node_dir.join("data/raft"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            raft.iter().any(|name| name.starts_with("snapshot-")),
            "node{node} has no seeded snapshot: {raft:?}"
        );
    }
    assert!(fresh.join("client.toml").exists());
}
