//! # consensus: Raft over mutually authenticated QUIC
//!
//! This crate is a replicated, totally ordered message bus. Applications plug
//! in as [`state_machine::StateMachine`]s and receive every committed command in
//! the same order on every node.
//!
//! A tour of the parts, one module each:
//!
//! - [`raft`]: the Raft core, a pure deterministic state machine (no I/O, no
//!   clock, no thread RNG). It takes messages, ticks and proposals and returns
//!   a batch of work for the runtime to do.
//! - [`storage`]: durable hard state, log and snapshots (checksummed
//!   write-ahead log segments with group commit; an in-memory store for
//!   simulations), behind the [`storage::LogStore`] contract.
//! - [`state_machine`]: the plug-in API the vault (and any other application)
//!   implements.
//! - [`twopc`]: two-phase commit (coordinator and participant), pure like
//!   the Raft core.
//! - [`node`]: the runtime that drives the core with real time, disk and
//!   network, and applies committed commands to a state machine.
//! - [`transport`]: mutually authenticated QUIC between nodes and clients:
//!   one ordered stream per peer pair for Raft messages, one stream per
//!   request, authorization by certificate identity.
#![warn(missing_docs)]

pub mod metrics;
pub mod node;
pub mod raft;
pub mod state_machine;
pub mod storage;
pub mod transport;
pub mod twopc;
