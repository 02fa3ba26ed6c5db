//! Scenario tests of two-phase commit, in the style of etcd's `datadriven`
//! tests and of the Raft scenarios (`scenarios.rs`), through the public API
//! only.
//!
//! A scenario file (`consensus/src/twopc/testdata/*.txt`) is a list of
//! commands, each followed by `----` and the output it must produce, and a
//! blank line. Lines starting with `#` are comments. Run with `REWRITE=1`
//! to regenerate the expected output after an intended behaviour change,
//! then review the diff.
//!
//! The world (`world.rs`) is one `CoordinatorDriver` per transaction and
//! one participant per node, each with an in-memory resource manager
//! driven by the real `VoteDriver` and `AckDriver` (the read-index wait,
//! wait-die voting within its budget, acknowledging only what was applied
//! or failing after the decision timeout) and the real recovery functions. The
//! log is a list of decision entries; the first decision for a
//! transaction wins. Commands (node ids are numbers):
//!
//! - `members 1 2 3`: the membership the coordinators' nodes know; adds
//!   participants holding `mail` at version 1.
//! - `put ID NAME=VERSION`, `policy ID abort|commit`: a participant's state.
//! - `start TX coordinator=ID NAME=VERSION`: a delete of NAME at VERSION.
//! - `deliver [drop=(2,3)]`: one round of message delivery; messages to or
//!   from the dropped nodes are lost.
//! - `commit`: every proposed decision reaches the log and is applied by
//!   every live participant; coordinators learn the logged decision.
//! - `time N`: the clock moves to N; due deadlines tick (coordinators',
//!   votes held under wait-die, Decides waiting for their decision).
//! - `crash ID`, `restart ID`: a node loses its messages and coordinators
//!   (its prepared rows are durable); a restarted one applies what it
//!   missed.
//! - `recover ID`: the participant asks the log about transactions
//!   prepared at least the decision timeout ago; with no decision, the
//!   leader logs an abort.
//! - `state`: every participant's resources, locks and applied decisions.
//!

#[path = "datadriven/mod.rs"]
mod datadriven;
#[path = "twopc_scenarios/world.rs"]
mod world;

use datadriven::Command;
use std::path::Path;
use world::World;

#[test]
fn scenarios() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/twopc/testdata");
    datadriven::run_directory(&directory, World::default, World::run);
}
