//! The measurement's machinery: every node's status sampled from inside
//! its namespace, the closed-loop workload, fault windows and the report.

use super::{first_then_others, library_client, unique_run, write, ALL, CLIENT_TIMEOUT};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use vault_tests::netns::HostCluster;

// ---------------------------------------------------------------------------
// Status of every node, asked from inside its own namespace (over loopback,
// which no fault touches), all nodes at once.
// ---------------------------------------------------------------------------

/// What one node says about itself.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) role: String,
    pub(crate) term: u64,
    pub(crate) applied: u64,
}

/// Every node's row (`None`: it did not answer) at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) at: Instant,
    rows: BTreeMap<usize, Option<Row>>,
}

impl Sample {
    /// The node that says it leads, with its row (the highest term if two
    /// overlap for a moment).
    pub(crate) fn leader(&self) -> Option<(usize, &Row)> {
        self.rows
            .iter()
            .filter_map(|(node, row)| Some((*node, row.as_ref()?)))
            .filter(|(_, row)| row.role == "leader")
            .max_by_key(|(_, row)| row.term)
    }

    pub(crate) fn row(&self, node: usize) -> Option<&Row> {
        self.rows.get(&node).and_then(Option::as_ref)
    }
}

/// Asks every node for its status in parallel; keeps the election-safety
/// record (at most one leader per term) across samples.
pub(crate) struct Sampler {
    configs: Vec<(usize, String, PathBuf)>,
    leaders_by_term: BTreeMap<u64, BTreeSet<usize>>,
}

impl Sampler {
    pub(crate) fn new(cluster: &HostCluster) -> Self {
        let configs = ALL
            .into_iter()
            .map(|node| {
                let config =
                    cluster.client_config(&format!("sample-node{node}.toml"), &[node], Some(3));
                (node, cluster.network.namespace(node), config)
            })
            .collect();
        Sampler {
            configs,
            leaders_by_term: BTreeMap::new(),
        }
    }

    pub(crate) fn sample(&mut self) -> Sample {
        let rows: BTreeMap<usize, Option<Row>> = std::thread::scope(|scope| {
            let asks: Vec<_> = self
                .configs
                .iter()
                .map(|(node, namespace, config)| {
                    scope.spawn(move || (*node, status_row(namespace, config)))
                })
                .collect();
            asks.into_iter()
                .map(|ask| ask.join().expect("status thread"))
                .collect()
        });
        for (node, row) in &rows {
            if let Some(row) = row.as_ref().filter(|row| row.role == "leader") {
                let leaders = self.leaders_by_term.entry(row.term).or_default();
                leaders.insert(*node);
                assert!(
                    leaders.len() <= 1,
                    "split brain: leaders {leaders:?} in term {}",
                    row.term
                );
            }
        }
        Sample {
            at: Instant::now(),
            rows,
        }
    }

    /// Samples until `duration` has passed since `start`.
    pub(crate) fn sample_until(&mut self, start: Instant, duration: Duration) -> Vec<Sample> {
        let mut samples = Vec::new();
        while start.elapsed() < duration {
            samples.push(self.sample());
            std::thread::sleep(Duration::from_millis(50));
        }
        samples
    }
}

fn status_row(namespace: &str, config: &std::path::Path) -> Option<Row> {
    let config = config.to_string_lossy();
    let result = vault_tests::run_cli_wrapped(
        &["ip", "netns", "exec", namespace],
        &["--config", config.as_ref(), "status", "--json"],
        &[],
        None,
    );
    if result.code != 0 {
        return None;
    }
    let row: Value = result.json()["nodes"].as_array()?.first()?.clone();
    (row["reachable"] == Value::Bool(true)).then_some(())?;
    Some(Row {
        role: row["role"].as_str()?.to_string(),
        term: row["term"].as_u64()?,
        applied: row["applied_index"].as_u64()?,
    })
}

/// Whether `node` has caught up in `now`: its applied index has reached
/// what the leader had applied at `before`, the previous sample (under
/// load the leader moves on while we ask, so equality is not the test).
fn caught_up(before: &Sample, now: &Sample, node: usize) -> bool {
    match (before.leader(), now.row(node)) {
        (Some((leader, _)), _) if leader == node => true,
        (Some((_, leader_row)), Some(row)) => row.applied >= leader_row.applied,
        _ => false,
    }
}

/// Lag of `node` over a window, from its samples: the first moment it
/// had caught up (relative to `start`), the longest stretch it was behind,
/// the most entries it trailed the leader by, its longest replication
/// delay, whether it was behind at the end, and each second's lag.
pub(crate) fn lag_report(start: Instant, samples: &[Sample], node: usize) -> String {
    let mut first_current = None;
    // The first sample at which its applied index moved at all: once its
    // connections are back, replication resumes even while it trails.
    let mut first_progress = None;
    let mut behind_since: Option<Instant> = None;
    let mut longest = (Duration::ZERO, Duration::ZERO);
    let mut close_stretch = |since: Instant, until: Instant| {
        if until - since > longest.0 {
            longest = (until - since, since - start);
        }
    };
    for pair in samples.windows(2) {
        let (before, now) = (&pair[0], &pair[1]);
        if let (Some(was), Some(is)) = (before.row(node), now.row(node)) {
            if is.applied > was.applied {
                first_progress.get_or_insert(now.at - start);
            }
        }
        if caught_up(before, now, node) {
            first_current.get_or_insert(now.at - start);
            if let Some(since) = behind_since.take() {
                close_stretch(since, now.at);
            }
        } else {
            behind_since.get_or_insert(before.at);
        }
    }
    let end = match behind_since {
        Some(since) => {
            close_stretch(since, samples.last().map_or(start, |sample| sample.at));
            format!("BEHIND at the end (since +{:.1} s)", secs(since - start))
        }
        None => "current at the end".into(),
    };
    let lags: Vec<(Instant, Option<Lag>)> = (0..samples.len())
        .map(|index| (samples[index].at, lag_at(samples, index, node, start)))
        .collect();
    let most_entries = lags
        .iter()
        .filter_map(|(_, lag)| Some((*lag)?.entries))
        .max();
    let most_delay = lags
        .iter()
        .filter_map(|(_, lag)| *lag)
        .max_by_key(|lag| lag.delay)
        .map_or("?".into(), |lag| lag.show_delay());
    let mut each_second: Vec<String> = Vec::new();
    for (at, lag) in &lags {
        let second = (*at - start).as_secs() as usize;
        if second >= each_second.len() {
            each_second.resize(second, "-".into());
            each_second.push(lag.map_or("?".into(), |lag| {
                format!("{}/{}", lag.entries, lag.show_delay())
            }));
        }
    }
    let first = first_current.map_or("never caught up".into(), |at| {
        format!("caught up at +{:.1} s", secs(at))
    });
    let progress = first_progress.map_or("never applied anything".into(), |at| {
        format!("first applied an entry at +{:.1} s", secs(at))
    });
    format!(
        "node{node}: {progress}; {first}; longest behind {:.1} s (from +{:.1} s); at most {} entries and {most_delay} behind; {end}\n    node{node} behind the leader (entries/delay), each second: {}",
        secs(longest.0),
        secs(longest.1),
        most_entries.unwrap_or(0),
        each_second.join(" "),
    )
}

/// How far `node` trails the leader at one sample.
#[derive(Clone, Copy)]
struct Lag {
    entries: u64,
    /// How long ago the leader had applied what `node` has now.
    delay: Duration,
    /// The leader had more at every sample of the window: `delay` is only
    /// the time since the window started, a lower bound.
    at_least: bool,
}

impl Lag {
    fn show_delay(&self) -> String {
        let bound = if self.at_least { ">" } else { "" };
        format!("{bound}{:.1}s", secs(self.delay))
    }
}

/// `node`'s [`Lag`] at sample `index` of a window that began at `start`.
fn lag_at(samples: &[Sample], index: usize, node: usize, start: Instant) -> Option<Lag> {
    let now = &samples[index];
    let applied = now.row(node)?.applied;
    let entries = now.leader()?.1.applied.saturating_sub(applied);
    let since = samples[..=index].iter().rev().find(|sample| {
        sample
            .leader()
            .is_some_and(|(_, leader)| leader.applied <= applied)
    });
    Some(Lag {
        entries,
        delay: now.at - since.map_or(start, |sample| sample.at),
        at_least: since.is_none(),
    })
}

/// Seconds, for printing.
pub(crate) fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

// ---------------------------------------------------------------------------
// The workload: closed-loop clients, each one write outstanding.
// ---------------------------------------------------------------------------

/// One finished operation.
pub(crate) struct Outcome {
    finished: Instant,
    latency: Duration,
    error: Option<String>,
}

/// `clients` tasks, each with its own client (all nodes, `first` tried
/// first, as `vault-cli bench` pins the leader) writing fresh secrets one
/// after another until stopped.
pub(crate) struct Workload {
    runtime: tokio::runtime::Runtime,
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    pub(crate) fn start(cluster: &HostCluster, clients: usize, first: usize) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let run = unique_run();
        let mut tasks = Vec::new();
        for task in 0..clients {
            let client = library_client(cluster, &first_then_others(first), CLIENT_TIMEOUT);
            runtime
                .block_on(client.connect())
                .expect("connect a workload client");
            let (stop, outcomes, run) = (stop.clone(), outcomes.clone(), run.clone());
            tasks.push(runtime.spawn(async move {
                let mut sequence = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let reply = client
                        .call(write(format!("avail-{run}-{task}-{sequence}")))
                        .await;
                    sequence += 1;
                    let outcome = Outcome {
                        finished: Instant::now(),
                        latency: started.elapsed(),
                        error: reply.err().map(|error| error.to_string()),
                    };
                    outcomes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(outcome);
                }
                client.close().await;
            }));
        }
        Workload {
            runtime,
            stop,
            outcomes,
            tasks,
        }
    }

    /// Stops every client (each finishes its operation in progress) and
    /// returns every outcome.
    pub(crate) fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            self.runtime.block_on(task).expect("workload task");
        }
        std::mem::take(&mut *self.outcomes.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

// ---------------------------------------------------------------------------
// Fault windows and their report.
// ---------------------------------------------------------------------------

/// One stretch of the measurement under one condition.
pub(crate) struct Window {
    pub(crate) name: String,
    pub(crate) start: Instant,
    pub(crate) end: Instant,
    /// Lines about what happened (elections, catch-up), printed under it.
    pub(crate) notes: Vec<String>,
    /// From when throughput is compared with the normal window's, if not
    /// from the start (the deaf-leader window: once a new leader exists).
    pub(crate) compare_from: Option<Instant>,
}

impl Window {
    pub(crate) fn run(
        name: String,
        sampler: &mut Sampler,
        length: Duration,
    ) -> (Self, Vec<Sample>) {
        let start = Instant::now();
        let samples = sampler.sample_until(start, length);
        let window = Window {
            name,
            start,
            end: Instant::now(),
            notes: Vec::new(),
            compare_from: None,
        };
        (window, samples)
    }
}

/// Successful operations per second of `outcomes` finished in `from..to`.
fn rate(outcomes: &[Outcome], from: Instant, to: Instant) -> f64 {
    let ok = outcomes
        .iter()
        .filter(|outcome| outcome.error.is_none() && (from..to).contains(&outcome.finished))
        .count();
    ok as f64 / secs(to - from).max(f64::EPSILON)
}

pub(crate) fn print_report(windows: &[Window], outcomes: &[Outcome]) {
    let normal = windows
        .first()
        .map_or(0.0, |window| rate(outcomes, window.start, window.end));
    println!(
        "\n{:<28} {:>6} {:>6} {:>8} {:>7} {:>7} {:>8}",
        "window", "secs", "ok", "ops/s", "errors", "p50 ms", "max ms"
    );
    for window in windows {
        let inside: Vec<&Outcome> = outcomes
            .iter()
            .filter(|outcome| (window.start..window.end).contains(&outcome.finished))
            .collect();
        let mut latencies: Vec<Duration> = inside
            .iter()
            .filter(|outcome| outcome.error.is_none())
            .map(|outcome| outcome.latency)
            .collect();
        latencies.sort();
        let errors = inside.len() - latencies.len();
        let length = window.end - window.start;
        let millis = |at: Option<&Duration>| at.map_or(0, Duration::as_millis);
        println!(
            "{:<28} {:>6.1} {:>6} {:>8.1} {:>7} {:>7} {:>8}",
            window.name,
            secs(length),
            latencies.len(),
            latencies.len() as f64 / secs(length),
            errors,
            millis(latencies.get(latencies.len() / 2)),
            millis(latencies.last()),
        );
        let per_second: Vec<String> = (0..length.as_secs_f64().ceil() as u64)
            .map(|second| {
                let from = window.start + Duration::from_secs(second);
                let to = (from + Duration::from_secs(1)).min(window.end);
                let in_second = inside
                    .iter()
                    .filter(|outcome| (from..to).contains(&outcome.finished));
                let (ok, failed): (Vec<&&Outcome>, Vec<&&Outcome>) =
                    in_second.partition(|outcome| outcome.error.is_none());
                match failed.len() {
                    0 => ok.len().to_string(),
                    errors => format!("{}+{errors}e", ok.len()),
                }
            })
            .collect();
        println!("    ok per second: {}", per_second.join(" "));
        for note in &window.notes {
            println!("    {note}");
        }
        if let Some(from) = window.compare_from {
            let after = rate(outcomes, from, window.end);
            println!(
                "    from +{:.1} s to the end: {after:.1} ops/s = {:.0} % of normal",
                secs(from - window.start),
                100.0 * after / normal.max(f64::EPSILON)
            );
        }
        if let Some(error) = inside.iter().find_map(|outcome| outcome.error.as_ref()) {
            println!("    first error: {error}");
        }
    }
}

/// The loss percentages of `AVAIL_LOSS` (default 30).
pub(crate) fn loss_percents() -> Vec<u32> {
    std::env::var("AVAIL_LOSS")
        .unwrap_or_else(|_| "30".into())
        .split(',')
        .map(|percent| {
            percent
                .trim()
                .parse()
                .expect("AVAIL_LOSS: percentages, e.g. 20,30,40")
        })
        .collect()
}

pub(crate) fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |text| text.parse().expect(name))
}
