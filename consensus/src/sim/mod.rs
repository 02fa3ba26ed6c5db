//! Deterministic simulation of whole Raft clusters (see docs/simulation.md).
// Work in progress: parts wait for the Raft core to drive them.
#![allow(dead_code)]

pub(crate) mod abstract_log;
pub(crate) mod history;
pub(crate) mod invariants;
pub(crate) mod linearizability;
pub(crate) mod network;
pub(crate) mod register;
