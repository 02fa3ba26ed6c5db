//! # bus: the replicated message bus that applications plug into
//!
//! The `consensus` crate orders commands (Raft) and carries frames (QUIC
//! with mutual TLS). This crate is what every application built on them
//! needs on a running node, so that an application is only its state
//! machine and its request handling:
//!
//! - [`run`]: one node's lifecycle: bind the endpoint, start Raft, start
//!   the application ([`Launch`]), serve peers and clients, serve
//!   `/metrics` and `/health`, tell systemd, stop gracefully.
//! - [`Application`]: the trait an application implements: its state
//!   machine, its client request and reply types, its own node-to-node
//!   request (for protocols such as two-phase commit), and how it serves a
//!   client request given a [`Context`] that can propose, read (linearizable
//!   or stale), report status, transfer leadership, change membership and
//!   forward to the leader.
//! - [`WireRequest`] / [`WireResponse`]: what travels on request streams.
//! - [`client`]: the client side: connect with a certificate to a list of
//!   nodes, and try the next on failure.
//! - [`sessions`]: exactly-once writes: the client's session stamp and the
//!   sessions table a SQLite state machine keeps beside its state (replay,
//!   record, sweep, snapshot rows).
//!
//! What the bus does for every application: Raft messages go to the
//! driver (a forged sender is dropped); node requests (forwarded
//! proposals, read indexes) go to the node, from node certificates only;
//! the application's peer requests go to [`Application::serve_peer`], from
//! node certificates only; the transport's peers and trust follow the
//! membership in force; peers whose host does not resolve yet are
//! resolved again in the background. `docs/bus.md` draws the boundary and
//! shows a complete application (compiled as a doctest of this crate); the
//! `kv` crate is a second one, run on real nodes by `vault-cli kv`.
#![warn(missing_docs)]

/// The example of `docs/bus.md`, compiled with the doctests so that it
/// cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../../docs/bus.md")]
pub struct BusDocumentation;

mod application;
pub mod client;
mod context;
mod late_peers;
mod members;
mod network;
mod run;
mod serve;
pub mod sessions;
mod systemd;
mod wire;

pub use application::{
    Application, BusTransport, Launch, Payload, Services, WireRequestOf, WireResponseOf,
};
pub use context::{
    ClientResponder, ClientStream, Context, ForwardError, LocalStatus, PeerCallError, Peers,
};
pub use members::Member;
pub use network::QuicNetwork;
pub use run::{run, BusOptions, RunError};
pub use wire::{WireRequest, WireResponse};
