//! One simulation run per seed: a faulty phase, then healing and a liveness
//! phase, then the linearizability check of the whole client history.

use super::abstract_log::mix;
use super::cluster::{Cluster, StepFailure};
use super::faults::FaultMix;
use super::linearizability;
use super::network::NetworkFaults;
use super::trace::Trace;
use super::workload::Workload;
use consensus::raft::PlantedBugs;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt;

/// Steps allowed after healing for a leader to be elected and a command
/// invoked after the healing to be answered.
pub(crate) const LIVENESS_STEPS: u64 = 3000;

/// Seeds `cargo test` runs by default (CI): about a minute of the two
/// cores in the test profile. Soak runs set `RAFT_SIM_SEEDS`.
const DEFAULT_SEEDS: u64 = 6000;

/// A long run prints a progress line every this many seeds of a part.
const PROGRESS_EVERY: u64 = 25_000;

/// Spare node ids that membership changes may add.
const SPARES: u64 = 2;

/// What to run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunOptions {
    /// The seed: it alone decides everything that happens.
    pub(crate) seed: u64,
    /// Steps of the faulty phase.
    pub(crate) steps: u64,
    /// Protocol bugs to plant in every core.
    pub(crate) planted_bugs: PlantedBugs,
    /// Print the trace.
    pub(crate) trace: bool,
    /// Voters at the start; by default 3, 5 or 7 by the seed.
    pub(crate) voters: Option<u64>,
    /// Overrides the per-run probability that the nemesis crashes a
    /// new leader (see `nemesis.rs`).
    pub(crate) leader_crash_probability: Option<f64>,
}

/// Figures of a successful run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunReport {
    /// Client operations answered.
    pub(crate) answered: usize,
    /// Steps run in total.
    pub(crate) steps: u64,
    /// A digest of the whole client history (times, operations, outcomes):
    /// equal digests mean the same run.
    pub(crate) fingerprint: u64,
}

/// A failed run: everything needed to understand and replay it.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    /// The seed that failed.
    pub(crate) seed: u64,
    /// Voters at the start.
    pub(crate) cluster_size: u64,
    /// The step of the violation (or the end of the run).
    pub(crate) step: u64,
    /// The property violated.
    pub(crate) invariant: String,
    /// Details.
    pub(crate) detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "simulation seed {} ({} nodes) failed at step {}: {} violated: {}",
            self.seed, self.cluster_size, self.step, self.invariant, self.detail
        )
    }
}

/// Runs one seed to the end.
pub(crate) fn run_seed(options: RunOptions) -> Result<RunReport, Failure> {
    let seed = options.seed;
    let cluster_size = options.voters.unwrap_or([3, 5, 7][(seed % 3) as usize]);
    let fail = |failure: StepFailure| Failure {
        seed,
        cluster_size,
        step: failure.step,
        invariant: format!(
            "{} (Raft {})",
            failure.violation.invariant, failure.violation.section
        ),
        detail: failure.violation.detail,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let clients = rng.gen_range(2..=5);
    let faults = NetworkFaults::random(&mut rng);
    let mut cluster = Cluster::new(seed, rng, cluster_size, SPARES, Workload::new(clients));
    cluster.trace = Trace::new(options.trace);
    cluster.planted_bugs = options.planted_bugs;
    cluster.wipe_voters = true;
    cluster.app.answer_by_index_only = options.planted_bugs.answer_by_index_only;
    cluster.fault_mix = FaultMix::random(&mut cluster.rng);
    if let Some(probability) = options.leader_crash_probability {
        cluster.leader_crash_probability = probability;
    }
    cluster.network.set_faults(faults);
    cluster.trace.line(
        0,
        format_args!("Seed {seed}: {cluster_size} voters, {clients} clients, {faults:?}"),
    );
    cluster.bootstrap(cluster_size).map_err(fail)?;
    for _ in 0..options.steps {
        cluster.step(true).map_err(fail)?;
    }
    cluster.heal_all().map_err(fail)?;
    cluster.app.start_liveness();
    let deadline = cluster.now + LIVENESS_STEPS;
    while cluster.leader().is_none() || cluster.app.answered_since_heal == 0 {
        if cluster.now >= deadline {
            return Err(Failure {
                seed,
                cluster_size,
                step: cluster.now,
                invariant: "liveness after healing".into(),
                detail: format!(
                    "no leader with a newly answered command within {LIVENESS_STEPS} steps \
                     (leader: {:?})",
                    cluster.leader()
                ),
            });
        }
        cluster.step(false).map_err(fail)?;
    }
    let steps = cluster.now;
    let answered = cluster.app.history.completed_count();
    let history = std::mem::take(&mut cluster.app.history).close();
    let fingerprint = history.iter().fold(0, |state, operation| {
        let text = format!("{operation:?}");
        text.bytes()
            .fold(state, |state, byte| mix(state, u64::from(byte)))
    });
    linearizability::check(&history).map_err(|error| Failure {
        seed,
        cluster_size,
        step: steps,
        invariant: "linearizability of the client history".into(),
        detail: error.to_string(),
    })?;
    Ok(RunReport {
        answered,
        steps,
        fingerprint,
    })
}

/// The seeds to run and how, from the environment: `RAFT_SIM_SEEDS`
/// (default 2000), `RAFT_SIM_SEED_START` (default 0), `RAFT_SIM_STEPS`
/// (default 2000), `RAFT_SIM_TRACE=1` to print traces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeedPlan {
    pub(crate) start: u64,
    pub(crate) count: u64,
    pub(crate) steps: u64,
    pub(crate) trace: bool,
}

impl SeedPlan {
    /// Reads the plan of the Raft simulation from the environment.
    pub(crate) fn from_env() -> SeedPlan {
        SeedPlan::from_env_with("RAFT_SIM", DEFAULT_SEEDS, 2000)
    }

    /// Reads `{prefix}_SEEDS`, `{prefix}_SEED_START`, `{prefix}_STEPS` and
    /// `{prefix}_TRACE` (`1` to print traces), with these defaults.
    pub(crate) fn from_env_with(prefix: &str, seeds: u64, steps: u64) -> SeedPlan {
        let number = |name: &str, default: u64| {
            std::env::var(format!("{prefix}_{name}"))
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(default)
        };
        SeedPlan {
            start: number("SEED_START", 0),
            count: number("SEEDS", seeds),
            steps: number("STEPS", steps).max(1),
            trace: std::env::var(format!("{prefix}_TRACE")).is_ok_and(|value| value == "1"),
        }
    }

    /// The seeds of part `part` of `parts` (the test functions split the
    /// seeds so that both cores work).
    pub(crate) fn seeds(&self, part: u64, parts: u64) -> impl Iterator<Item = u64> {
        (self.start..self.start.saturating_add(self.count)).filter(move |seed| seed % parts == part)
    }
}

/// Runs part `part` of the planned seeds; panics with the first failure.
pub(crate) fn run_part(part: u64, parts: u64) {
    let plan = SeedPlan::from_env();
    let started = std::time::Instant::now();
    let (mut runs, mut answered, mut steps) = (0u64, 0usize, 0u64);
    for seed in plan.seeds(part, parts) {
        let options = RunOptions {
            seed,
            steps: plan.steps,
            planted_bugs: PlantedBugs::default(),
            trace: plan.trace,
            voters: None,
            leader_crash_probability: None,
        };
        match run_seed(options) {
            Ok(report) => {
                runs += 1;
                answered += report.answered;
                steps += report.steps;
                if runs % PROGRESS_EVERY == 0 {
                    eprintln!(
                        "simulation part {part}/{parts}: {runs} seeds passed, last {seed}, {:.0}s",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            Err(failure) => panic!(
                "{failure}\nreplay: RAFT_SIM_SEED_START={} RAFT_SIM_SEEDS=1 RAFT_SIM_TRACE=1 \
                 cargo test -p sim simulate_seeds -- --nocapture",
                failure.seed
            ),
        }
    }
    println!(
        "simulation part {part}/{parts}: {runs} seeds, {steps} steps, {answered} client operations answered, {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seed replays exactly: the same seed gives the same history, and a
    /// different seed a different one.
    #[test]
    fn a_seed_replays_exactly() {
        let options = |seed| RunOptions {
            seed,
            steps: 1000,
            planted_bugs: PlantedBugs::default(),
            trace: false,
            voters: None,
            leader_crash_probability: None,
        };
        let first = run_seed(options(42)).map(|report| (report.steps, report.fingerprint));
        let again = run_seed(options(42)).map(|report| (report.steps, report.fingerprint));
        let other = run_seed(options(43)).map(|report| (report.steps, report.fingerprint));
        assert!(first.is_ok());
        assert_eq!(first.as_ref().ok(), again.as_ref().ok());
        assert_ne!(first.ok(), other.ok());
    }
}
