//! The disk under a real node: a full disk refuses writes and heals by
//! itself, damage inside the log refuses to start, files are owner-only,
//! and a second process on the same data directory is refused (SPEC §9).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use vault_tests::tmpfs::{copy_tree, Tmpfs};
use vault_tests::TestCluster;

/// The message a client sees when the node's disk refuses writes.
const DISK_REFUSAL: &str = "cannot write to its disk";

fn add(cluster: &TestCluster, name: &str, password: &str) -> vault_tests::CliResult {
    cluster.cli_with_input(
        &["add-secret", name, "--username", "u", "--password-stdin"],
        Some(password),
    )
}

fn password_of(cluster: &TestCluster, name: &str, extra: &[&str]) -> Option<String> {
    let mut args = vec!["get-secret", name];
    args.extend_from_slice(extra);
    let result = cluster.cli(&args);
    (result.code == 0).then(|| result.json()["password"].as_str().unwrap_or("").to_string())
}

/// A one-node cluster whose data directory is on a 24 MiB tmpfs: filled
/// to the last byte with a ballast file, the node refuses writes with a
/// clear error, still serves reads (linearizable and stale), says so in
/// `status` and its log, and does not exit; once the ballast is deleted
/// it takes writes again by itself, and every acknowledged write is there.
/// Here the free-space reserve refuses before any log write fails.
#[test]
fn a_full_disk_refuses_writes_serves_reads_and_heals_by_itself() {
    full_disk(
        "a_full_disk_refuses_writes_serves_reads_and_heals_by_itself",
        2,
        "free disk space",
        "refuses new writes",
        true,
    );
}

/// The same without a reserve: a write itself fails with ENOSPC (the
/// SQLite file, or the log). The failed write is held unacknowledged and
/// retried (the log writer, or the apply worker for SQLITE_FULL), the node
/// refuses later writes meanwhile, and heals once the space is back.
#[test]
fn a_log_write_failing_on_a_full_disk_is_held_and_retried_not_fatal() {
    full_disk(
        "a_log_write_failing_on_a_full_disk_is_held_and_retried_not_fatal",
        0,
        "disk is full",
        "retries by itself",
        false,
    );
}

/// `linearizable`: whether linearizable reads must work while full. They
/// need the state machine to apply up to the read index, which waits while
/// SQLite itself is full; stale reads never wait.
fn full_disk(test: &str, reserve_mib: u32, reason: &str, logged_once: &str, linearizable: bool) {
    let disk = match Tmpfs::mount(24) {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("SKIPPED {test}: {why} (run as root to test a really full disk)");
            return;
        }
    };
    // Declared after the tmpfs: dropped (its node killed) before unmounting.
    let mut cluster = TestCluster::init(1);
    let data_dir = disk.path().join("data");
    copy_tree(&cluster.node_dir(1).join("data"), &data_dir);
    cluster.set_node_env(1, "VAULT_DATA_DIR", &data_dir.to_string_lossy());
    cluster.set_node_env(1, "VAULT_RAFT_MIN_FREE_MB", &reserve_mib.to_string());
    cluster.start_node(1);
    cluster.wait_for_leader();
    let mut acknowledged = Vec::new();
    for index in 0..5 {
        let name = format!("before-{index}");
        add(&cluster, &name, &format!("pw-{name}")).expect_ok();
        acknowledged.push(name);
    }

    let ballast = disk.fill("ballast");
    let refused = cluster.eventually("a write refused for lack of disk space", || {
        let result = add(&cluster, "while-full", "pw-while-full");
        match result.code {
            0 => {
                // Taken before the node looked at its disk again.
                acknowledged.push("while-full".to_string());
                None
            }
            _ if result.stderr.contains(DISK_REFUSAL) => Some(result.stderr),
            _ => None,
        }
    });
    assert!(refused.contains(reason), "{refused}");
    // Refused at once, every time, while the disk stays full.
    let again = add(&cluster, "still-full", "pw");
    assert_ne!(again.code, 0);
    assert!(
        again.stderr.contains(DISK_REFUSAL),
        "{}\n{}",
        again.stderr,
        cluster.log_tails(30)
    );

    for name in &acknowledged {
        let expected = format!("pw-{name}");
        if linearizable {
            assert_eq!(
                password_of(&cluster, name, &[]).as_deref(),
                Some(&*expected)
            );
        }
        assert_eq!(
            password_of(&cluster, name, &["--stale"]).as_deref(),
            Some(&*expected)
        );
    }
    let status = cluster.status().expect("status while the disk is full");
    let refusal = status["nodes"][0]["writes_refused"].as_str().unwrap_or("");
    assert!(refusal.contains(reason), "{status}");
    assert!(
        cluster.exited(1).is_none(),
        "the node exited on a full disk"
    );
    let log = cluster.node_log(1);
    // Once per mechanism that refused (the reserve, the log writer, the
    // state machine), not once per request.
    let times = log.matches(logged_once).count();
    assert!(
        (1..=2).contains(&times),
        "the refusal is logged {times} times, not once:\n{log}"
    );

    std::fs::remove_file(&ballast).expect("delete the ballast");
    cluster.eventually("writes accepted again once space is back", || {
        (add(&cluster, "after", "pw-after").code == 0).then_some(())
    });
    acknowledged.push("after".to_string());
    for name in &acknowledged {
        let expected = format!("pw-{name}");
        assert_eq!(
            password_of(&cluster, name, &[]).as_deref(),
            Some(&*expected)
        );
    }
    let status = cluster.status().expect("status");
    assert!(status["nodes"][0]["writes_refused"].is_null(), "{status}");
    assert!(cluster.node_log(1).contains("accepts writes again"));
    assert!(cluster.exited(1).is_none());
}

fn wal_segments(raft_dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(raft_dir)
        .expect("list the Raft directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "wal"))
        .collect();
    segments.sort();
    segments
}

/// A byte flipped in the middle of a follower's WAL segment, with valid
/// records after it, is damage, not a torn tail: `node run` refuses to
/// start and names the file and the offset.
#[test]
fn damage_in_the_middle_of_a_follower_log_refuses_to_start() {
    let mut cluster = TestCluster::start(3);
    let leader = cluster.wait_for_leader();
    for index in 0..20 {
        add(&cluster, &format!("s{index}"), "pw").expect_ok();
    }
    cluster.wait_for_applied(20);
    let follower = (1..=3).find(|node| *node != leader).expect("a follower");
    cluster.stop_node(follower);
    let segment = wal_segments(&cluster.node_dir(follower).join("data/raft"))
        .pop()
        .expect("a WAL segment");
    let mut bytes = std::fs::read(&segment).expect("read the segment");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&segment, &bytes).expect("write the damaged segment");

    let refused = cluster.run_node_to_exit(follower, &[]);
    assert_ne!(refused.code, 0, "a damaged log was accepted");
    assert!(
        refused.stderr.contains(&*segment.to_string_lossy()),
        "the file is named: {}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("offset") && refused.stderr.contains("not a torn tail"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        std::fs::read(&segment).expect("read"),
        bytes,
        "the refused segment is left as it was for the operator"
    );
}

/// A second `node run` on a running node's configuration is refused with
/// one sentence, and the running node is not disturbed.
#[test]
fn a_second_process_on_the_same_data_directory_is_refused() {
    let mut cluster = TestCluster::start(1);
    cluster.wait_for_leader();
    let second = cluster.run_node_to_exit(1, &[]);
    assert_ne!(second.code, 0);
    assert!(
        second.stderr.contains("is in use by another process"),
        "{}",
        second.stderr
    );
    add(&cluster, "still-works", "pw").expect_ok();
    assert!(cluster.exited(1).is_none());
}

/// Every directory `cluster init` and a running node made is 0700 and
/// every file 0600: the node directory, the data directory, WAL segments,
/// snapshots, `vault.db` and its `-wal`/`-shm` files, the lock.
#[test]
fn every_file_of_a_running_node_is_owner_only() {
    let mut cluster = TestCluster::init(1);
    cluster.set_node_env(1, "VAULT_RAFT_SNAPSHOT_EVERY", "5");
    cluster.start_node(1);
    cluster.wait_for_leader();
    for index in 0..30 {
        add(&cluster, &format!("s{index}"), "pw").expect_ok();
    }
    let raft_dir = cluster.node_dir(1).join("data/raft");
    cluster.eventually("a snapshot file", || {
        std::fs::read_dir(&raft_dir)
            .ok()?
            .filter_map(Result::ok)
            .any(|entry| entry.path().extension().is_some_and(|ext| ext == "snap"))
            .then_some(())
    });
    let mut seen = Vec::new();
    let mut pending = vec![cluster.node_dir(1)];
    while let Some(path) = pending.pop() {
        let metadata = std::fs::symlink_metadata(&path).expect("metadata");
        let mode = metadata.mode() & 0o7777;
        if metadata.is_dir() {
            assert_eq!(mode, 0o700, "{} is {mode:04o}", path.display());
            for entry in std::fs::read_dir(&path).expect("list") {
                pending.push(entry.expect("entry").path());
            }
        } else if path.file_name().is_some_and(|name| name == "node.log") {
            // Made by this test harness, not by vault-cli.
        } else {
            assert_eq!(mode, 0o600, "{} is {mode:04o}", path.display());
            seen.push(
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string(),
            );
        }
    }
    for expected in [
        "vault.db",
        "vault.db-wal",
        "vault.db-shm",
        "LOCK",
        "node.key",
        "node.toml",
    ] {
        assert!(
            seen.iter().any(|name| name == expected),
            "no {expected} in {seen:?}"
        );
    }
    assert!(seen.iter().any(|name| name.ends_with(".wal")), "{seen:?}");
    assert!(seen.iter().any(|name| name.ends_with(".snap")), "{seen:?}");
}
