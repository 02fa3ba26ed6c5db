//! The Raft core: a sans-IO, deterministic state machine.
//!
//! **Promise.** Nothing in this module (or below it) performs I/O, reads a
//! clock, spawns tasks, or draws randomness from anything but the seed in its
//! configuration. Time is a count of ticks; the caller decides how long a tick
//! is. Given the same seed and the same sequence of inputs, the core produces
//! exactly the same outputs, which is what lets the simulation replay any run.
//! CI enforces the promise with a grep over this directory (see `.ci/run`).

pub mod types;

pub use types::*;
