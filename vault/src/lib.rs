//! The vault plug-in: applies committed `add-secret` commands to SQLite.
#![warn(missing_docs)]

pub mod conformance;
pub mod crypto;
pub mod protocol;
pub mod store;
pub mod validate;
pub mod client;
pub mod server;
