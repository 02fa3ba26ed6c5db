//! # sim: deterministic simulation of whole Raft and 2PC clusters
//!
//! The simulation runs the real Raft core of the `consensus` crate (and its
//! pure two-phase-commit protocol) in one thread, with every source of
//! non-determinism injected (see docs/simulation.md).
//!
//! One `u64` seed drives everything: the network's losses, delays,
//! duplications and partitions, the disk's fsync timing, crashes and
//! restarts, membership changes, leadership transfers, and the clients'
//! operations. Only `BTreeMap`/`BTreeSet` are used, so replaying a seed
//! replays the run exactly. After every step the invariants of
//! `invariants` are checked; at the end of a run the client history must
//! be linearizable and the healed cluster must make progress.
//!
//! The clients and protocols on top of the cluster are an
//! `application::Application`: the register workload here, the
//! two-phase-commit deletes of `twopc` (its own seeds and checks).
//!
//! Run: `cargo test -p sim simulate_seeds`; choose seeds with
//! `RAFT_SIM_SEEDS=N RAFT_SIM_SEED_START=S`, print a trace with
//! `RAFT_SIM_TRACE=1`. The 2PC runs: `cargo test -p sim simulate_twopc`
//! with `TWOPC_SIM_SEEDS`, `TWOPC_SIM_SEED_START`, `TWOPC_SIM_TRACE`.
//!
//! The harness itself is compiled only for this crate's tests. What the
//! crate offers to others is the linearizability checker of a key-value
//! register history ([`linearizability::check`]), with its history
//! ([`history::Operation`], [`history::Outcome`], [`history::History`]) and
//! the register's sequential specification ([`register::RegisterOp`],
//! [`register::RegisterOutput`]), so that a test of real processes can
//! check the put/get/cas history it recorded:
//!
//! ```
//! use sim::history::Operation;
//! use sim::linearizability;
//! use sim::register::{RegisterOp, RegisterOutput};
//!
//! // A put answered over [1, 2], then a get over [3, 4] that read it.
//! let history = [
//!     Operation::answered(1, 7, RegisterOp::Put(5), 1, 2, RegisterOutput::Written),
//!     Operation::answered(2, 7, RegisterOp::Get, 3, 4, RegisterOutput::Value(5)),
//! ];
//! assert!(linearizability::check(&history).is_ok());
//! // Reading the old value after the put completed is a stale read.
//! let stale = [
//!     history[0].clone(),
//!     Operation::answered(2, 7, RegisterOp::Get, 3, 4, RegisterOutput::Value(0)),
//! ];
//! assert!(linearizability::check(&stale).is_err());
//! ```
#![warn(missing_docs)]

pub mod history;
pub mod linearizability;
pub mod register;

#[cfg(test)]
mod abstract_log;
#[cfg(test)]
mod application;
#[cfg(test)]
mod cluster;
#[cfg(test)]
mod disk;
#[cfg(test)]
mod faults;
#[cfg(test)]
mod invariants;
#[cfg(test)]
mod nemesis;
#[cfg(test)]
mod network;
#[cfg(test)]
mod node;
#[cfg(test)]
mod regressions;
#[cfg(test)]
mod run;
#[cfg(test)]
mod teeth;
#[cfg(test)]
mod trace;
#[cfg(test)]
mod twopc;
#[cfg(test)]
mod workload;

/// The default seeds are split over this many test functions, so that the
/// test harness runs them on every core.
#[cfg(test)]
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
