//! # kv: a replicated key-value store, the bus's second plug-in
//!
//! The vault is one application of the bus; this is another, written
//! without any change inside the bus. Keys and values are `u64`; a key
//! never written holds 0. A tour:
//!
//! - [`protocol`]: [`protocol::KvRequest`] (put, get, cas, status), the
//!   replies, and the command written to the Raft log, which carries a
//!   client session so that a retried write is applied once (the bus's
//!   [`bus::sessions`], kept in the same SQLite transaction as the write).
//! - [`store`]: [`store::KvStateMachine`], the SQLite state machine.
//! - [`server`]: [`server::KvApplication`], the [`bus::Application`], and
//!   [`server::run`], one node.
//! - [`client`]: [`client::KvClient`], on the bus's generic client.
//!
//! `vault-cli kv node run` runs a node from the node configuration and
//! certificates `vault-cli cluster init` writes, with its files under
//! `DATA_DIR/kv`; `vault-cli kv put|get|cas` are its client.
//!
//! ```
//! use consensus::state_machine::{CommittedCommand, StateMachine};
//! use kv::protocol::{decode, encode, ClientSession, KvCommand, KvQuery, KvReply, KvResponse, Operation};
//! use kv::store::KvStateMachine;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let mut machine = KvStateMachine::open(&dir.path().join("kv.db"))?;
//! let session = ClientSession { client_id: 7, seq: 1 };
//! let owner = "client:alice".to_string();
//! let swap = encode(&KvCommand { owner, session, key: 1, operation: Operation::Cas { expected: 0, new: 5 } });
//! // A retry of the same write (same session) is answered, not applied again.
//! let entries = [
//!     CommittedCommand { index: 1, term: 1, command: &swap },
//!     CommittedCommand { index: 2, term: 1, command: &swap },
//! ];
//! let answers = machine.apply(&entries)?;
//! assert_eq!(answers[0], answers[1]);
//! assert_eq!(decode::<KvReply>(&answers[0])?, Ok(KvResponse::Swapped { swapped: true, current: 0 }));
//! let read = machine.query(&encode(&KvQuery::Get(1)))?;
//! assert_eq!(decode::<KvReply>(&read)?, Ok(KvResponse::Value(5)));
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod client;
pub mod protocol;
pub mod server;
pub mod store;
