//! Backups of the replicated state (`vault-cli snapshot save`, `inspect`,
//! `restore`; SPEC §14).
//!
//! A backup file is the vault state machine's own snapshot (every
//! replicated table, ciphertext only, see `store/snapshot.rs`) taken at a
//! committed log index, wrapped in a small header and a SHA-256 of the
//! whole file:
//!
//! - [`format`]: the byte layout, [`Backup`], and a decoder that refuses
//!   anything but one complete, undamaged backup with a typed
//!   [`BackupError`].
//! - [`file`]: writing a backup atomically (temporary file in the same
//!   directory, fsync, rename, fsync of the directory) and reading one.
//!
//! The node side (a linearizable snapshot streamed in chunks) lives in
//! `server/backup.rs`, the client side in [`crate::client`].

pub mod file;
pub mod format;

pub use file::{read_file, write_atomically};
pub use format::{decode, encode, Backup, BackupError};
