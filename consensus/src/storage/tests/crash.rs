//! Durability under concurrency and under `kill -9`.

use super::FileFactory;
use crate::storage::conformance::{entries, entry, StoreFactory};
use crate::storage::{FileStore, FileStoreOptions, LogStore, LogWriter, StorageError, WriteBatch};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

/// Assigns consecutive indexes under a lock and submits, so the writer sees
/// batches in index order; waits for durability outside the lock, so many
/// batches are in flight at once.
async fn append_one(writer: &LogWriter, next_index: &tokio::sync::Mutex<u64>) -> u64 {
    let (index, durable) = {
        let mut next = next_index.lock().await;
        let index = *next;
        *next += 1;
        let batch = WriteBatch {
            entries: vec![entry(index, 1)],
            ..WriteBatch::default()
        };
        (index, writer.submit(batch).await.expect("submit"))
    };
    durable.await.expect("durable");
    index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_share_syncs_and_keep_order() {
    const TASKS: u64 = 64;
    const PER_TASK: u64 = 20;
    let mut factory = FileFactory::new(4096);
    let (store, _) = factory.open().expect("open");
    let writer = LogWriter::spawn(store).expect("spawn");
    let next_index = Arc::new(tokio::sync::Mutex::new(1));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let writer = writer.clone();
        let next_index = next_index.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..PER_TASK {
                append_one(&writer, &next_index).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let stats = writer.stats();
    assert_eq!(stats.batches, TASKS * PER_TASK);
    assert!(
        stats.groups >= 1 && stats.groups <= stats.batches,
        "{stats:?}"
    );
    writer.close().await.expect("close");
    let (_, recovered) = factory.open().expect("reopen");
    assert_eq!(recovered.entries, entries(1..=TASKS * PER_TASK, 1));
}

const CHILD_DIR: &str = "CONSENSUS_STORAGE_KILL_CHILD_DIR";
const KILL_AFTER: u64 = 300;

/// In the child process: append forever through a [`LogWriter`] with several
/// concurrent appenders, printing each index once it is acknowledged.
fn child_appends_until_killed(dir: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let (store, _) = FileStore::open(
            dir,
            FileStoreOptions {
                segment_size: 2048,
                ..FileStoreOptions::default()
            },
        )
        .expect("open");
        let writer = LogWriter::spawn(store).expect("spawn");
        let next_index = Arc::new(tokio::sync::Mutex::new(1));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let writer = writer.clone();
            let next_index = next_index.clone();
            tasks.push(tokio::spawn(async move {
                // Bounded so that an orphaned child cannot run forever.
                for _ in 0..100_000 {
                    let index = append_one(&writer, &next_index).await;
                    println!("ACKNOWLEDGED={index}");
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}

/// SPEC §3: acknowledged entries survive `kill -9`. A child process (this
/// test binary, re-run) appends until it is killed mid-stream; every entry
/// it acknowledged must be there after recovery, in order, without holes.
#[test]
fn entries_acknowledged_before_kill_9_survive() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child_appends_until_killed(&dir);
        return;
    }
    let mut factory = FileFactory::new(2048);
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "storage::tests::crash::entries_acknowledged_before_kill_9_survive",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, factory.dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut highest_acknowledged = 0;
    // The pipe stays open until the child is dead, so that it is killed
    // mid-write rather than failing on a closed stdout.
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("child output");
        // libtest prints its "test ... " prefix on the first line.
        if let Some(index) = line.split("ACKNOWLEDGED=").nth(1) {
            highest_acknowledged = highest_acknowledged.max(index.parse().expect("index"));
            if highest_acknowledged >= KILL_AFTER {
                break;
            }
        }
    }
    child.kill().expect("kill -9 the child"); // SIGKILL on Unix
    child.wait().expect("reap the child");
    drop(lines);
    assert!(
        highest_acknowledged >= KILL_AFTER,
        "the child stopped early"
    );
    let (_, recovered) = factory.open().expect("recover");
    let last = recovered.entries.last().map_or(0, |entry| entry.index);
    assert!(
        last >= highest_acknowledged,
        "lost acknowledged entries: {last} < {highest_acknowledged}"
    );
    assert_eq!(recovered.entries, entries(1..=last, 1));
}

const IO_CHILD_DIR: &str = "CONSENSUS_STORAGE_IO_FAILURE_CHILD_DIR";

/// In the child process: cap the file size (`RLIMIT_FSIZE`) so that the
/// kernel fails a write part-way, as a full disk does, then append until it
/// happens and report what was acknowledged.
fn child_appends_until_the_disk_refuses(dir: &str) {
    let (mut store, _) = FileStore::open(dir, FileStoreOptions::default()).expect("open");
    // SAFETY: plain libc calls on this process, with valid arguments; no
    // memory is shared. Ignoring SIGXFSZ turns the limit into EFBIG errors.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: 4096,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    let mut index = 0;
    let error = loop {
        let batch = WriteBatch {
            entries: vec![entry(index + 1, 1), entry(index + 2, 1)],
            ..WriteBatch::default()
        };
        match store.write(&[batch]) {
            Ok(()) => index += 2,
            Err(error) => break error,
        }
        assert!(index < 10_000, "the file size limit never hit");
    };
    assert!(matches!(error, StorageError::Io { .. }), "{error:?}");
    let again = store.write(&[WriteBatch::default()]);
    assert!(matches!(again, Err(StorageError::Poisoned(_))), "{again:?}");
    println!("ACKNOWLEDGED={index}");
}

/// SPEC §9: a write the disk refuses is an error returned to the caller,
/// never a panic; the store then refuses further writes, and reopening
/// recovers every acknowledged entry.
#[test]
fn a_refused_write_is_an_error_and_recovery_keeps_what_was_acknowledged() {
    if let Ok(dir) = std::env::var(IO_CHILD_DIR) {
        child_appends_until_the_disk_refuses(&dir);
        return;
    }
    let mut factory = FileFactory::new(FileStoreOptions::default().segment_size);
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "storage::tests::crash::a_refused_write_is_an_error_and_recovery_keeps_what_was_acknowledged",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(IO_CHILD_DIR, factory.dir.path())
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let acknowledged: u64 = stdout
        .lines()
        .find_map(|line| line.split("ACKNOWLEDGED=").nth(1))
        .unwrap_or_else(|| panic!("the child did not report: {stdout}"))
        .parse()
        .expect("a count");
    assert!(acknowledged > 0);
    let (_, recovered) = factory.open().expect("recover");
    let last = recovered.entries.last().map_or(0, |entry| entry.index);
    assert!(
        last >= acknowledged,
        "lost acknowledged entries: {last} < {acknowledged}"
    );
    assert_eq!(recovered.entries, entries(1..=last, 1));
}

#[test]
fn full_disk_errors_are_recognisable() {
    let full = StorageError::io("appending", std::io::Error::from_raw_os_error(libc::ENOSPC));
    assert!(full.is_disk_full());
    assert!(!full.is_rejected_batch());
    let other = StorageError::io("appending", std::io::Error::from_raw_os_error(libc::EIO));
    assert!(!other.is_disk_full());
}
