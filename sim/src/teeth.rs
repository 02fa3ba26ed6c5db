//! The harness has teeth: with a protocol bug planted in every core (the
//! switches of `Config::planted_bugs`, feature `testing`), the simulation must
//! find a violation within a bounded number of seeds. Each test prints how
//! many seeds it needed.

use super::run::{run_seed, RunOptions, SeedPlan};
use consensus::raft::PlantedBugs;

/// Seeds tried before declaring that the harness missed the bug.
const MAX_SEEDS: u64 = 1000;

/// The teeth runs use the harshest leader churn: every new leader is
/// crashed within 30 steps of its election (restarted a little later), on
/// 3-node clusters. This is the profile under which the Figure 8 history
/// of Raft §5.4.2 (an old-term entry on a majority, overwritten by a
/// later leader) arises in about one seed in a hundred.
const LEADER_CRASH_PROBABILITY: f64 = 1.0;

/// Seeds in these tests start far from the default range so that they are
/// not the same runs as the bug-free ones.
const FIRST_SEED: u64 = 1_000_000;

/// Runs seeds until one fails; prints and returns how many it took.
fn seeds_to_find(test: &str, name: &str, planted_bugs: PlantedBugs) -> u64 {
    seeds_to_find_with(test, name, planted_bugs, Some(LEADER_CRASH_PROBABILITY))
}

/// [`seeds_to_find`] with a leader churn of its own (`None`: the seed's).
fn seeds_to_find_with(
    test: &str,
    name: &str,
    planted_bugs: PlantedBugs,
    leader_crash_probability: Option<f64>,
) -> u64 {
    for tried in 1..=MAX_SEEDS {
        let seed = FIRST_SEED + tried - 1;
        let options = RunOptions {
            seed,
            steps: 2000,
            planted_bugs,
            trace: false,
            voters: Some(3),
            leader_crash_probability,
        };
        if let Err(failure) = run_seed(options) {
            println!("planted bug `{name}` found after {tried} seed(s): {failure}");
            println!("replay: RAFT_SIM_TRACE=1 cargo test -p sim teeth::{test} -- --nocapture");
            if SeedPlan::from_env().trace {
                // Replay the failing seed, this time with its trace.
                let _ = run_seed(RunOptions {
                    trace: true,
                    ..options
                });
            }
            return tried;
        }
    }
    panic!("planted bug `{name}` not found in {MAX_SEEDS} seeds: the simulation lacks teeth");
}

#[test]
fn finds_votes_without_the_up_to_date_check() {
    let bugs = PlantedBugs {
        skip_up_to_date_check: true,
        ..PlantedBugs::default()
    };
    seeds_to_find(
        "finds_votes_without_the_up_to_date_check",
        "skip the up-to-date vote rule (§5.4.1)",
        bugs,
    );
}

#[test]
fn finds_commits_of_previous_terms_by_counting() {
    let bugs = PlantedBugs {
        commit_previous_term_by_counting: true,
        ..PlantedBugs::default()
    };
    seeds_to_find(
        "finds_commits_of_previous_terms_by_counting",
        "commit a previous-term entry by counting replicas (§5.4.2)",
        bugs,
    );
}

#[test]
fn finds_two_votes_in_one_term() {
    let bugs = PlantedBugs {
        vote_twice_in_term: true,
        ..PlantedBugs::default()
    };
    seeds_to_find(
        "finds_two_votes_in_one_term",
        "vote twice in one term (§5.2)",
        bugs,
    );
}

#[test]
fn finds_votes_counted_from_a_forgotten_life() {
    let bugs = PlantedBugs {
        accept_any_incarnation: true,
        ..PlantedBugs::default()
    };
    seeds_to_find(
        "finds_votes_counted_from_a_forgotten_life",
        "count a reused id or a wiped voter as the voter it was (SPEC §13)",
        bugs,
    );
}

#[test]
fn finds_answers_bound_to_an_index_alone() {
    let bugs = PlantedBugs {
        answer_by_index_only: true,
        ..PlantedBugs::default()
    };
    // A deposed leader must live on (not crash) to apply the entry that
    // overwrote its proposal: the seeds' own churn, not the harshest.
    seeds_to_find_with(
        "finds_answers_bound_to_an_index_alone",
        "answer a proposal by its index alone (Raft §8)",
        bugs,
        None,
    );
}
