//! The skeleton every seeded simulation shares, written once: which seeds
//! to run (from the environment), a test part's loop over its seeds with
//! progress lines, totals and the replay command of the first failure, the
//! teeth loop that must find a planted bug within a bounded number of
//! seeds, the fingerprint of a run and the check that a seed replays
//! exactly.
//!
//! A simulation plugs in by implementing [`Simulation`]: the Raft one
//! (`run.rs`, [`crate::run::RaftSimulation`]) and the 2PC one
//! (`twopc/run.rs`). Each keeps only what is its own: how one seed runs,
//! what its report counts and what its summary prints.

use crate::abstract_log::mix;
use std::fmt;
use std::time::Instant;

/// A long run prints a progress line every this many seeds of a part.
const PROGRESS_EVERY: u64 = 25_000;

/// Seeds of the teeth tests start here, far from the default range, so
/// that they are not the same runs as the bug-free ones.
pub(crate) const TEETH_FIRST_SEED: u64 = 1_000_000;

/// One kind of seeded simulation run, as the harness drives it.
pub(crate) trait Simulation {
    /// What one run needs: its seed, steps, planted bugs, trace switch.
    type Options: Copy;
    /// Figures of one successful run.
    type Report;
    /// Sums of the reports of one test part.
    type Totals: Default;

    /// Prefix of the environment variables: `{PREFIX}_SEEDS`,
    /// `{PREFIX}_SEED_START`, `{PREFIX}_STEPS`, `{PREFIX}_TRACE`.
    const ENV_PREFIX: &'static str;
    /// Seeds run by default (CI).
    const DEFAULT_SEEDS: u64;
    /// Steps of the faulty phase by default.
    const DEFAULT_STEPS: u64;
    /// The test-name filter that selects this simulation's seed tests.
    const TEST_FILTER: &'static str;
    /// The simulation's name in progress and summary lines.
    const NAME: &'static str;

    /// The options of a bug-free run of `seed`, as `plan` asks.
    fn options(seed: u64, plan: &SeedPlan) -> Self::Options;
    /// `options` with the trace printed.
    fn traced(options: Self::Options) -> Self::Options;
    /// Runs one seed to the end.
    fn run_seed(options: Self::Options) -> Result<Self::Report, Failure>;
    /// The steps a run took and the digest of what happened in it: equal
    /// pairs mean the same run.
    fn fingerprint(report: &Self::Report) -> (u64, u64);
    /// Adds one run's report to the totals of its part.
    fn add(totals: &mut Self::Totals, report: &Self::Report);
    /// The figures of a part's summary line (after "N seeds, ").
    fn figures(totals: &Self::Totals) -> String;
    /// Prints what the summary line leaves out, and panics if the part
    /// missed a coverage goal (`runs` seeds passed). Nothing by default.
    fn details(_totals: &Self::Totals, _runs: u64) {}
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

/// The seeds to run and how, from the environment: `{PREFIX}_SEEDS`,
/// `{PREFIX}_SEED_START` (default 0), `{PREFIX}_STEPS`, `{PREFIX}_TRACE=1`
/// to print traces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeedPlan {
    /// The first seed.
    pub(crate) start: u64,
    /// How many seeds, over all parts.
    pub(crate) count: u64,
    /// Steps of the faulty phase of each run.
    pub(crate) steps: u64,
    /// Print every run's trace.
    pub(crate) trace: bool,
}

impl SeedPlan {
    /// Reads the plan of simulation `S` from the environment.
    pub(crate) fn of<S: Simulation>() -> SeedPlan {
        SeedPlan::from_env_with(S::ENV_PREFIX, S::DEFAULT_SEEDS, S::DEFAULT_STEPS)
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

/// Runs part `part` of `parts` of the planned seeds of `S`; prints a
/// progress line every [`PROGRESS_EVERY`] seeds and a summary at the end;
/// panics with the first failure and the command that replays it.
pub(crate) fn run_part<S: Simulation>(part: u64, parts: u64) {
    let plan = SeedPlan::of::<S>();
    let started = Instant::now();
    let mut totals = S::Totals::default();
    let mut runs = 0u64;
    for seed in plan.seeds(part, parts) {
        match S::run_seed(S::options(seed, &plan)) {
            Ok(report) => {
                runs += 1;
                S::add(&mut totals, &report);
                if runs.is_multiple_of(PROGRESS_EVERY) {
                    eprintln!(
                        "{} part {part}/{parts}: {runs} seeds passed, last {seed}, {:.0}s",
                        S::NAME,
                        started.elapsed().as_secs_f64()
                    );
                }
            }
            Err(failure) => panic!(
                "{failure}\nreplay: {prefix}_SEED_START={} {prefix}_SEEDS=1 {prefix}_STEPS={} \
                 {prefix}_TRACE=1 cargo test -p sim {} -- --nocapture",
                failure.seed,
                plan.steps,
                S::TEST_FILTER,
                prefix = S::ENV_PREFIX,
            ),
        }
    }
    println!(
        "{} part {part}/{parts}: {runs} seeds, {}, {:.1}s",
        S::NAME,
        S::figures(&totals),
        started.elapsed().as_secs_f64()
    );
    S::details(&totals, runs);
}

/// A teeth test: a bug planted through `options`, which the simulation
/// must report within `max_seeds` seeds from [`TEETH_FIRST_SEED`].
pub(crate) struct Teeth<'a, S: Simulation> {
    /// The test function, for the replay command.
    pub(crate) test: &'a str,
    /// What is planted, in words.
    pub(crate) bug: &'a str,
    /// The properties (separated by `|`) one of which the violation must
    /// be of; another would mean the bug broke something unexpected or the
    /// harness reports false alarms. `None`: any violation counts.
    pub(crate) caught_by: Option<&'a str>,
    /// Seeds tried before declaring that the harness missed the bug.
    pub(crate) max_seeds: u64,
    /// The options of the run of a seed, with the bug planted.
    pub(crate) options: &'a dyn Fn(u64) -> S::Options,
}

impl<S: Simulation> Teeth<'_, S> {
    /// Runs seeds until one fails; prints and returns how many it took
    /// (`{PREFIX}_TRACE=1` replays the failing seed with its trace).
    /// Panics if no seed fails, or if one fails in another way than
    /// `caught_by` says.
    pub(crate) fn seeds_to_find(&self) -> u64 {
        let trace = SeedPlan::from_env_with(S::ENV_PREFIX, 0, 0).trace;
        for tried in 1..=self.max_seeds {
            let options = (self.options)(TEETH_FIRST_SEED + tried - 1);
            let Err(failure) = S::run_seed(options) else {
                continue;
            };
            println!(
                "planted bug `{}` found after {tried} seed(s): {failure}",
                self.bug
            );
            if let Some(caught_by) = self.caught_by {
                assert!(
                    caught_by
                        .split('|')
                        .any(|property| failure.invariant.contains(property)),
                    "expected a violation of `{caught_by}`, got: {failure}"
                );
            }
            println!(
                "replay: {}_TRACE=1 cargo test -p sim {} -- --nocapture",
                S::ENV_PREFIX,
                self.test
            );
            if trace {
                let _ = S::run_seed(S::traced(options));
            }
            return tried;
        }
        panic!(
            "planted bug `{}` not found in {} seeds: the simulation lacks teeth",
            self.bug, self.max_seeds
        );
    }
}

/// A digest of `text` (a run's history or final state): equal digests
/// mean the same run.
pub(crate) fn fingerprint(text: &str) -> u64 {
    text.bytes()
        .fold(0, |state, byte| mix(state, u64::from(byte)))
}

/// Asserts that a seed replays exactly: `seed` run twice gives the same
/// steps and fingerprint, and `other` gives different ones.
pub(crate) fn assert_replays_exactly<S: Simulation>(
    options: impl Fn(u64) -> S::Options,
    seed: u64,
    other: u64,
) {
    let run = |seed| S::run_seed(options(seed)).map(|report| S::fingerprint(&report));
    let (first, again, different) = (run(seed), run(seed), run(other));
    assert!(first.is_ok(), "{first:?}");
    assert_eq!(first.as_ref().ok(), again.as_ref().ok());
    assert_ne!(first.ok(), different.ok());
}

/// Declares the `#[test]` functions that split the default seeds of a
/// simulation over `PARTS` parts, one function per part, so that the test
/// harness runs them on every core. The names stay literal, so the soak
/// commands can select them (`cargo test -p sim simulate_seeds`).
macro_rules! seed_tests {
    ($simulation:ty, $parts:expr, $($name:ident = $part:expr),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::harness::run_part::<$simulation>($part, $parts);
            }
        )+
    };
}
pub(crate) use seed_tests;
