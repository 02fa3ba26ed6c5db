//! # vault: the password-vault plug-in and its client library
//!
//! Raft (the `consensus` crate) orders commands; this crate gives them
//! meaning. A tour, one module each:
//!
//! - [`protocol`]: what clients send ([`protocol::ClientRequest`]), what
//!   nodes answer ([`protocol::Reply`]), the command written to the Raft log
//!   ([`protocol::VaultCommand`]) and [`protocol::plan`], which turns an
//!   authenticated request into a proposal, a read or a runtime action.
//! - [`validate`]: the input rules of SPEC §5, applied before proposing.
//! - [`store`]: [`store::VaultStateMachine`], the SQLite state machine that
//!   implements `consensus::state_machine::StateMachine`, and the node-local
//!   2PC participant state.
//! - [`crypto`]: end-to-end encryption on the client. Nodes only ever see
//!   [`protocol::SealedSecret`] and [`protocol::WrappedKey`] bytes.
//!
//! `docs/vault.md` describes the schema, the apply rules and the envelope
//! format.
//!
//! ## Example: a secret from a client's passphrase to a node's database
//!
//! ```
//! use consensus::state_machine::{CommittedCommand, StateMachine};
//! use vault::crypto::{KdfParams, Keyring, Passphrase, SecretFields};
//! use vault::protocol::{decode, ClientRequest, ClientSession, Plan, Reply, Request, Response};
//! use vault::store::VaultStateMachine;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // On the client: derive the keys once, seal the fields.
//! # let params = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };
//! // First use: a random salt; keyring.record() is what gets published.
//! let keyring = Keyring::create("client:alice", &Passphrase::new("correct horse".into()), params)?;
//! let mut fields = SecretFields::default();
//! fields.password = Some("hunter2".into());
//! let mut session = ClientSession::start();
//! let request = ClientRequest {
//!     session: Some(session.next_request()),
//!     request: Request::AddSecret { name: "mail".into(), sealed: keyring.seal("mail", 1, &fields)?, update: false, version: 1 },
//! };
//!
//! // On the node: the certificate says who is asking; plan() validates.
//! let Plan::Propose(command) = vault::protocol::plan("client:alice", request, 1_700_000_000_000)? else {
//!     unreachable!("add-secret is always proposed");
//! };
//!
//! // Once Raft commits the entry, every node applies it.
//! let dir = tempfile::tempdir()?;
//! let mut machine = VaultStateMachine::open(&dir.path().join("vault.db"))?;
//! let responses = machine.apply(&[CommittedCommand { index: 1, term: 1, command: &command }])?;
//! assert_eq!(decode::<Reply>(&responses[0])?, Ok(Response::Added { version: 1 }));
//!
//! // Reading it back: a query, then decryption on the client.
//! let read = ClientRequest {
//!     session: None,
//!     request: Request::GetSecret { owner: None, name: "mail".into(), stale: false },
//! };
//! let Plan::Read { query, .. } = vault::protocol::plan("client:alice", read, 0)? else {
//!     unreachable!("get-secret is always a read");
//! };
//! let Ok(Response::Secret(record)) = decode::<Reply>(&machine.query(&query)?)? else {
//!     panic!("alice can read her own secret");
//! };
//! // Never believe a node: is this the record asked for?
//! let asked = vault::crypto::Asked { owner: "client:alice", name: "mail", version: None, reader: "client:alice" };
//! vault::crypto::check_reply(&asked, &record)?;
//! assert_eq!(keyring.open(&record, None)?.password.as_deref(), Some("hunter2"));
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod backup;
pub mod client;
pub mod crypto;
pub mod protocol;
pub mod server;
pub mod store;
pub mod validate;
