//! The client subcommands, one file each (the shape of etcdctl's
//! `ctlv3/command/*_command.go`). Each takes the [`Session`] and its
//! flags, talks to the cluster, and prints through [`crate::render`].
//!
//! [`Session`]: crate::session::Session

pub mod add_secret;
pub mod bench;
pub mod delete;
pub mod export;
pub mod get_secret;
pub mod history;
pub mod import;
pub mod list;
pub mod member;
pub mod share;
pub mod snapshot;
pub mod status;
pub mod transfer_leader;
pub mod whoami;
