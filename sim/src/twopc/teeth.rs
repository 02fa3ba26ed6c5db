//! The 2PC simulation has teeth: with a protocol bug planted in the 2PC
//! layer ([`TwoPcBugs`]), it must report a violation within a bounded number
//! of seeds. Each test prints how many seeds it needed and which check
//! caught the bug.

use super::run::{run_seed, RunOptions};
use super::TwoPcBugs;
use crate::run::SeedPlan;

/// Seeds tried before declaring that the harness missed the bug.
const MAX_SEEDS: u64 = 400;

/// The same for the membership check, whose window is narrow: the
/// coordinator already aborts a commit when its membership changed before
/// it proposes, so only a change that lands between that check and the
/// decision's log index meets the state machine's check.
const MAX_SEEDS_MEMBERSHIP: u64 = 1000;

/// Far from the default seed range, so these are not the bug-free runs.
const FIRST_SEED: u64 = 1_000_000;

/// Runs seeds until one fails; the violation must be of the property named
/// `caught_by`, or of one of several separated by `|` (another one would mean the bug broke something unexpected,
/// or the harness reports false alarms). Prints and returns how many seeds
/// it took.
fn seeds_to_find(test: &str, name: &str, caught_by: &str, bugs: TwoPcBugs) -> u64 {
    seeds_to_find_within(MAX_SEEDS, test, name, caught_by, bugs)
}

/// [`seeds_to_find`] with its own bound.
fn seeds_to_find_within(
    max_seeds: u64,
    test: &str,
    name: &str,
    caught_by: &str,
    bugs: TwoPcBugs,
) -> u64 {
    let trace = SeedPlan::from_env_with("TWOPC_SIM", 0, 0).trace;
    for tried in 1..=max_seeds {
        let options = RunOptions {
            seed: FIRST_SEED + tried - 1,
            steps: 2000,
            bugs,
            trace: false,
            voters: None,
        };
        if let Err(failure) = run_seed(options) {
            println!("planted 2PC bug `{name}` found after {tried} seed(s): {failure}");
            assert!(
                caught_by
                    .split('|')
                    .any(|property| failure.invariant.contains(property)),
                "expected a violation of `{caught_by}`, got: {failure}"
            );
            println!(
                "replay: TWOPC_SIM_TRACE=1 cargo test -p sim twopc::teeth::{test} \
                 -- --nocapture"
            );
            if trace {
                let _ = run_seed(RunOptions {
                    trace: true,
                    ..options
                });
            }
            return tried;
        }
    }
    panic!("planted 2PC bug `{name}` not found in {max_seeds} seeds: the simulation lacks teeth");
}

#[test]
fn finds_commit_votes_sent_before_the_prepare_is_durable() {
    let bugs = TwoPcBugs {
        vote_before_durable_prepare: true,
        ..TwoPcBugs::default()
    };
    seeds_to_find(
        "finds_commit_votes_sent_before_the_prepare_is_durable",
        "a commit vote leaves before its prepare is fsynced",
        "a commit vote rests on a durable prepare",
        bugs,
    );
}

#[test]
fn finds_recovery_that_proposes_commit() {
    let bugs = TwoPcBugs {
        recovery_proposes_commit: true,
        ..TwoPcBugs::default()
    };
    seeds_to_find(
        "finds_recovery_that_proposes_commit",
        "recovery proposes GLOBAL_COMMIT for an undecided transaction",
        "commit only if every participant voted commit",
        bugs,
    );
}

#[test]
fn finds_a_coordinator_that_counts_missing_votes_as_commit() {
    let bugs = TwoPcBugs {
        commit_on_missing_vote: true,
        ..TwoPcBugs::default()
    };
    seeds_to_find(
        "finds_a_coordinator_that_counts_missing_votes_as_commit",
        "the coordinator counts a missing vote as commit",
        "commit only if every participant voted commit",
        bugs,
    );
}

#[test]
fn finds_locks_a_snapshot_install_does_not_release() {
    let bugs = TwoPcBugs {
        skip_settle_on_restore: true,
        ..TwoPcBugs::default()
    };
    seeds_to_find(
        "finds_locks_a_snapshot_install_does_not_release",
        "a snapshot install does not settle the rows it decides",
        // A row left prepared either outlives the run or, once its
        // decision is pruned, finds nothing when it asks the leader.
        "no lock is held forever|a participant in doubt always finds its decision",
        bugs,
    );
}

#[test]
fn finds_a_model_that_skips_the_membership_check() {
    let bugs = TwoPcBugs {
        skip_membership_check: true,
        ..TwoPcBugs::default()
    };
    seeds_to_find_within(
        MAX_SEEDS_MEMBERSHIP,
        "finds_a_model_that_skips_the_membership_check",
        "the state machine applies a commit whatever the membership in force",
        "a commit applies only where its participants are the members in force",
        bugs,
    );
}
