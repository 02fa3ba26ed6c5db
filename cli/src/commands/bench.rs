//! `vault-cli bench`: closed-loop load with concurrent clients.
//!
//! Each of `--clients` tasks has its own connection and one request
//! outstanding at a time, like etcd's benchmark tool. Every task talks to
//! the leader (found with `status` first), so the figures measure the
//! replication path rather than follower forwarding. Every client connects
//! (QUIC and TLS handshakes) before the clock starts. Secrets are random
//! bytes of `--size` (already "ciphertext": the benchmark measures the
//! cluster, not Argon2 on the client). Latency is recorded per operation in
//! an HDR histogram.

use crate::args::BenchArgs;
use crate::exit::Failure;
use crate::session::Session;
use anyhow::{Context as _, Result};
use certs::Credentials;
use hdrhistogram::Histogram;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vault::client::VaultClient;
use vault::protocol::{Request, Response, SealedSecret};

/// Handshakes the benchmark has in progress at once, well under a node's
/// budget for handshakes in progress (consensus/src/transport/admission.rs).
const CONNECTING_AT_ONCE: usize = 16;

/// What one benchmark run is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Add,
    Get,
    Delete,
}

/// Runs the benchmark and prints the figures.
pub async fn run(session: &Session, args: &BenchArgs) -> Result<()> {
    let operation = match args.op.as_str() {
        "add" | "add-secret" => Operation::Add,
        "get" | "get-secret" => Operation::Get,
        "delete" => Operation::Delete,
        other => {
            return Err(Failure::new(
                crate::exit::ExitCode::Usage,
                format!("unknown --op {other:?}: use add, get or delete"),
            )
            .into())
        }
    };
    if args.clients == 0 {
        return Err(
            Failure::new(crate::exit::ExitCode::Usage, "--clients must be at least 1").into(),
        );
    }
    let duration = parse_duration(&args.duration)?;
    let leader_index = find_leader(session).await;
    let run_id: u32 = rand::random();
    let clients = connect_clients(session, args.clients, leader_index)?;
    // Handshakes happen before the clock starts: with 256 clients they took
    // seconds of CPU and put every first request in the tail.
    // A few at a time: a node admits a bounded number of handshakes in
    // progress (SPEC §9) and refuses the rest, as it should a flood.
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(clients.iter().map(|client| client.connect()))
        .buffer_unordered(CONNECTING_AT_ONCE)
        .try_collect::<Vec<()>>()
        .await
        .map_err(Failure::from)?;
    if operation != Operation::Add {
        prepare(&clients, run_id, args, operation, duration).await?;
    }
    let budget = args.ops.map(|ops| Arc::new(AtomicU64::new(ops)));
    let started = Instant::now();
    let deadline = started + duration;
    let progress = show_progress(session.json, args.ops, budget.clone(), started, duration);
    let mut tasks = Vec::new();
    for (task, client) in clients.iter().enumerate() {
        let client = client.clone();
        let budget = budget.clone();
        let size = args.size;
        tasks.push(tokio::spawn(async move {
            worker(client, task, run_id, size, operation, budget, deadline).await
        }));
    }
    let mut histogram = new_histogram();
    let mut errors = 0u64;
    for task in tasks {
        let (samples, failed) = task.await.context("a benchmark task panicked")?;
        histogram
            .add(&samples)
            .context("merging latency histograms")?;
        errors += failed;
    }
    let seconds = started.elapsed().as_secs_f64();
    progress.abort();
    // Once aborted the task is dropped, and its bar cleared, before the
    // figures are printed.
    let _ = progress.await;
    // Each close waits out its connection's draining period (~3 round
    // trips); one after another that was most of a short run's time.
    futures::future::join_all(clients.iter().map(|client| client.close())).await;
    report(session.json, &histogram, seconds, errors);
    Ok(())
}

/// On a terminal (and without `--json`), a bar of operations started (with
/// `--ops`) or of seconds elapsed, redrawn ten times a second off the
/// workers' path; cleared before the figures are printed.
fn show_progress(
    json: bool,
    ops: Option<u64>,
    budget: Option<Arc<AtomicU64>>,
    started: Instant,
    duration: Duration,
) -> tokio::task::JoinHandle<()> {
    let (length, label) = match ops {
        Some(ops) => (ops, "operations"),
        None => (duration.as_secs().max(1), "seconds"),
    };
    let bar = crate::progress::bar(json, length, label);
    tokio::spawn(async move {
        let _clear = ClearOnDrop(bar.clone());
        loop {
            let position = match (&budget, ops) {
                (Some(left), Some(ops)) => ops.saturating_sub(left.load(Ordering::Relaxed)),
                _ => started.elapsed().as_secs(),
            };
            bar.set_position(position.min(length));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Clears a progress bar when its task ends or is aborted.
struct ClearOnDrop(indicatif::ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

fn report(json_output: bool, histogram: &Histogram<u64>, seconds: f64, errors: u64) {
    let ms = |micros: u64| micros as f64 / 1000.0;
    let ops = histogram.len();
    let ops_per_sec = ops as f64 / seconds.max(f64::EPSILON);
    let document = json!({
        "ops": ops,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "ops_per_sec": ops_per_sec.round(),
        "p50_ms": ms(histogram.value_at_quantile(0.50)),
        "p90_ms": ms(histogram.value_at_quantile(0.90)),
        "p99_ms": ms(histogram.value_at_quantile(0.99)),
        "max_ms": ms(histogram.max()),
    });
    let text = format!(
        "{ops} ops in {seconds:.2} s: {ops_per_sec:.0} ops/s; latency ms p50 {} p90 {} p99 {} max {}",
        document["p50_ms"], document["p90_ms"], document["p99_ms"], document["max_ms"]
    );
    crate::render::print(json_output, document, || text);
    if errors > 0 {
        eprintln!("{errors} operations failed and are not counted");
    }
}

fn new_histogram() -> Histogram<u64> {
    // Microseconds from 1 us to 60 s with 3 significant digits; these bounds
    // are valid constants, so construction cannot fail.
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!("valid bounds"))
}

async fn worker(
    client: Arc<VaultClient>,
    task: usize,
    run_id: u32,
    size: usize,
    operation: Operation,
    budget: Option<Arc<AtomicU64>>,
    deadline: Instant,
) -> (Histogram<u64>, u64) {
    let mut histogram = new_histogram();
    let mut failed = 0u64;
    let mut sequence = 0u64;
    loop {
        match &budget {
            Some(budget) => {
                let taken = budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(1)
                });
                if taken.is_err() {
                    break;
                }
            }
            None if Instant::now() >= deadline => break,
            None => {}
        }
        let request = request_for(operation, run_id, task, sequence, size);
        sequence += 1;
        let started = Instant::now();
        let reply = client.call(request).await;
        let micros = started.elapsed().as_micros().max(1) as u64;
        if reply.is_ok() {
            let _ = histogram.record(micros.min(60_000_000));
        } else {
            failed += 1;
        }
    }
    (histogram, failed)
}

fn secret_name(run_id: u32, task: usize, sequence: u64) -> String {
    format!("bench-{run_id:08x}-{task}-{sequence}")
}

fn request_for(
    operation: Operation,
    run_id: u32,
    task: usize,
    sequence: u64,
    size: usize,
) -> Request {
    match operation {
        Operation::Add => Request::AddSecret {
            name: secret_name(run_id, task, sequence),
            sealed: SealedSecret((0..size).map(|_| rand::random::<u8>()).collect()),
            update: false,
            version: 1,
        },
        // Reads cycle over the secrets `prepare` wrote.
        Operation::Get => Request::GetSecret {
            owner: None,
            name: secret_name(run_id, task, sequence % PREPARED_PER_CLIENT),
            stale: false,
        },
        Operation::Delete => Request::Delete {
            name: secret_name(run_id, task, sequence),
        },
    }
}

/// Secrets each client writes before a read benchmark.
const PREPARED_PER_CLIENT: u64 = 16;

/// Writes the secrets a read or delete benchmark needs.
async fn prepare(
    clients: &[Arc<VaultClient>],
    run_id: u32,
    args: &BenchArgs,
    operation: Operation,
    duration: Duration,
) -> Result<()> {
    let per_client = match operation {
        Operation::Get => PREPARED_PER_CLIENT,
        // Enough for the run: deletes are slower than adds.
        _ => args
            .ops
            .map_or(2_000u64.max(duration.as_secs() * 200), |ops| {
                ops / clients.len() as u64 + 1
            }),
    };
    let mut tasks = Vec::new();
    for (task, client) in clients.iter().enumerate() {
        let client = client.clone();
        let size = args.size;
        tasks.push(tokio::spawn(async move {
            for sequence in 0..per_client {
                let request = request_for(Operation::Add, run_id, task, sequence, size);
                client.call(request).await?;
            }
            Ok::<(), vault::protocol::VaultError>(())
        }));
    }
    for task in tasks {
        task.await?.map_err(Failure::from)?;
    }
    Ok(())
}

/// The configured index of the leader, if `status` finds one.
async fn find_leader(session: &Session) -> Option<usize> {
    for (index, (id, _)) in session.client.nodes().iter().enumerate() {
        if let Ok(Response::Status(report)) = session.client.call_node(*id, Request::Status).await {
            if let Some(leader) = report.nodes.first().and_then(|node| node.leader) {
                return session
                    .client
                    .nodes()
                    .iter()
                    .position(|(node, _)| *node == leader)
                    .or(Some(index));
            }
        }
    }
    None
}

fn connect_clients(
    session: &Session,
    count: usize,
    leader: Option<usize>,
) -> Result<Vec<Arc<VaultClient>>> {
    let config = &session.config;
    (0..count)
        .map(|task| {
            let credentials = Credentials::load(&config.ca, &config.cert, &config.key)?;
            let client =
                VaultClient::new(credentials, session.client.nodes().to_vec(), config.timeout);
            client.prefer(leader.unwrap_or(task));
            Ok(Arc::new(client))
        })
        .collect()
}

/// `10s`, `500ms`, `2m`.
fn parse_duration(text: &str) -> Result<Duration> {
    let (number, unit) = text
        .find(|character: char| !character.is_ascii_digit())
        .map_or((text, "s"), |split| text.split_at(split));
    let value: u64 = number.parse().map_err(|_| {
        Failure::new(
            crate::exit::ExitCode::Usage,
            format!("bad duration {text:?}: use e.g. 10s or 500ms"),
        )
    })?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        _ => Err(Failure::new(
            crate::exit::ExitCode::Usage,
            format!("bad duration {text:?}: use e.g. 10s or 500ms"),
        )
        .into()),
    }
}
