//! Deterministic simulation of whole Raft clusters (see docs/simulation.md).
//!
//! One `u64` seed drives everything: the network's losses, delays,
//! duplications and partitions, the disk's fsync timing, crashes and
//! restarts, membership changes, leadership transfers, and the clients'
//! operations. Only `BTreeMap`/`BTreeSet` are used, so replaying a seed
//! replays the run exactly. After every step the invariants of
//! [`invariants`] are checked; at the end of a run the client history must
//! be linearizable and the healed cluster must make progress.
//!
//! The clients and protocols on top of the cluster are an
//! [`application::Application`]: the register workload here, the
//! two-phase-commit deletes of [`twopc`] (its own seeds and checks).
//!
//! Run: `cargo test -p consensus sim::simulate_seeds`; choose seeds with
//! `RAFT_SIM_SEEDS=N RAFT_SIM_SEED_START=S`, print a trace with
//! `RAFT_SIM_TRACE=1`.

pub(crate) mod abstract_log;
pub(crate) mod application;
pub(crate) mod cluster;
pub(crate) mod disk;
pub(crate) mod faults;
pub(crate) mod history;
pub(crate) mod invariants;
pub(crate) mod linearizability;
pub(crate) mod nemesis;
pub(crate) mod network;
pub(crate) mod node;
pub(crate) mod register;
mod regressions;
pub(crate) mod run;
pub(crate) mod trace;
pub(crate) mod twopc;
pub(crate) mod workload;

mod teeth;

/// The default seeds are split over this many test functions, so that the
/// test harness runs them on every core.
const PARTS: u64 = 4;

#[test]
fn simulate_seeds_part_0() {
    run::run_part(0, PARTS);
}

#[test]
fn simulate_seeds_part_1() {
    run::run_part(1, PARTS);
}

#[test]
fn simulate_seeds_part_2() {
    run::run_part(2, PARTS);
}

#[test]
fn simulate_seeds_part_3() {
    run::run_part(3, PARTS);
}
