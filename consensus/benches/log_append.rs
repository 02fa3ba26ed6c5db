//! Throughput of durable log appends, with and without group commit.
//!
//! `cargo bench -p consensus --bench log_append` appends 256-byte entries,
//! one entry per batch, from 1 and from 64 concurrent writers through a
//! [`LogWriter`], and prints appends/s, fdatasyncs/s and latency. The store
//! lives in `LOG_APPEND_DIR` (default: the system temporary directory, which
//! must be a real disk for the figures to mean anything); each run lasts
//! `LOG_APPEND_SECONDS` (default 3).

use consensus::raft::types::{Entry, EntryPayload};
use consensus::storage::{FileStore, FileStoreOptions, LogStore, LogWriter, WriteBatch};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ENTRY_BYTES: usize = 256;

fn batch(index: u64) -> WriteBatch {
    WriteBatch {
        entries: vec![Entry {
            term: 1,
            index,
            payload: EntryPayload::Command(vec![0xab; ENTRY_BYTES]),
        }],
        ..WriteBatch::default()
    }
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("LOG_APPEND_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("a temporary directory for the benchmark")
}

fn duration() -> Duration {
    let seconds = std::env::var("LOG_APPEND_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(seconds)
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    let position = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted.get(position).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// One entry per `write`, on the caller's thread: one fdatasync per append.
fn direct(run_for: Duration) {
    let dir = bench_dir();
    let (mut store, _) = FileStore::open(dir.path(), FileStoreOptions::default()).expect("open");
    let start = Instant::now();
    let mut index = 0;
    while start.elapsed() < run_for {
        index += 1;
        store.write(&[batch(index)]).expect("write");
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "direct, 1 writer:        {:>8.0} appends/s  {:>6.0} fdatasync/s",
        index as f64 / seconds,
        index as f64 / seconds
    );
}

/// `writers` tasks each appending one entry at a time through the group
/// commit thread: indexes are assigned under a lock, durability is awaited
/// outside it, as the Raft runtime does.
async fn grouped(writers: usize, run_for: Duration) {
    let dir = bench_dir();
    let (store, _) = FileStore::open(dir.path(), FileStoreOptions::default()).expect("open");
    let writer = LogWriter::spawn(store).expect("spawn");
    let next_index = Arc::new(tokio::sync::Mutex::new(1u64));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let writer = writer.clone();
        let next_index = next_index.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while start.elapsed() < run_for {
                let submitted = Instant::now();
                let durable = {
                    let mut next = next_index.lock().await;
                    let index = *next;
                    *next += 1;
                    writer.submit(batch(index)).await.expect("submit")
                };
                durable.await.expect("durable");
                latencies.push(submitted.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("writer task"));
    }
    let seconds = start.elapsed().as_secs_f64();
    let stats = writer.stats();
    writer.close().await.expect("close");
    latencies.sort();
    println!(
        "group commit, {writers:>2} writers: {:>8.0} appends/s  {:>6.0} fdatasync/s  {:>5.1} entries/sync  p50 {:.2} ms  p99 {:.2} ms",
        stats.batches as f64 / seconds,
        stats.groups as f64 / seconds,
        stats.batches as f64 / stats.groups.max(1) as f64,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it briefly.
    let run_for = if std::env::args().any(|arg| arg == "--bench") {
        duration()
    } else {
        Duration::from_millis(200)
    };
    println!("256-byte entries, one entry per batch, {run_for:?} per run");
    direct(run_for);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(grouped(1, run_for));
    runtime.block_on(grouped(64, run_for));
}
