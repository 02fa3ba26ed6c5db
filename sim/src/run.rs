//! One Raft simulation run per seed: a faulty phase, then healing and a
//! liveness phase, then the linearizability check of the whole client
//! history. [`RaftSimulation`] plugs it into the shared harness.

use super::cluster::{Cluster, StepFailure};
use super::faults::FaultMix;
use super::harness::{fingerprint, Failure, SeedPlan, Simulation};
use super::linearizability;
use super::network::NetworkFaults;
use super::trace::Trace;
use super::workload::Workload;
use consensus::raft::PlantedBugs;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Steps allowed after healing for a leader to be elected and a command
/// invoked after the healing to be answered.
pub(crate) const LIVENESS_STEPS: u64 = 3000;

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
    let text: String = history
        .iter()
        .map(|operation| format!("{operation:?}"))
        .collect();
    let fingerprint = fingerprint(&text);
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

/// The Raft simulation as the harness runs it: the register workload over
/// whole clusters (`RAFT_SIM_*`).
pub(crate) struct RaftSimulation;

/// Sums of the reports of one test part.
#[derive(Debug, Default)]
pub(crate) struct RaftTotals {
    steps: u64,
    answered: usize,
}

impl Simulation for RaftSimulation {
    type Options = RunOptions;
    type Report = RunReport;
    type Totals = RaftTotals;

    const ENV_PREFIX: &'static str = "RAFT_SIM";
    /// About a minute of the two cores in the test profile (CI); soak runs
    /// set `RAFT_SIM_SEEDS`.
    const DEFAULT_SEEDS: u64 = 6000;
    const DEFAULT_STEPS: u64 = 2000;
    const TEST_FILTER: &'static str = "simulate_seeds";
    const NAME: &'static str = "simulation";

    fn options(seed: u64, plan: &SeedPlan) -> RunOptions {
        RunOptions {
            seed,
            steps: plan.steps,
            planted_bugs: PlantedBugs::default(),
            trace: plan.trace,
            voters: None,
            leader_crash_probability: None,
        }
    }

    fn traced(options: RunOptions) -> RunOptions {
        RunOptions {
            trace: true,
            ..options
        }
    }

    fn run_seed(options: RunOptions) -> Result<RunReport, Failure> {
        run_seed(options)
    }

    fn fingerprint(report: &RunReport) -> (u64, u64) {
        (report.steps, report.fingerprint)
    }

    fn add(totals: &mut RaftTotals, report: &RunReport) {
        totals.steps += report.steps;
        totals.answered += report.answered;
    }

    fn figures(totals: &RaftTotals) -> String {
        format!(
            "{} steps, {} client operations answered",
            totals.steps, totals.answered
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::assert_replays_exactly;

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
        assert_replays_exactly::<RaftSimulation>(options, 42, 43);
    }
}
