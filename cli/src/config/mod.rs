//! Configuration files: `node.toml` for a node, `client.toml` for the client.
//!
//! Both are TOML. Relative paths inside a file are resolved against the
//! file's own directory, so a node's directory can be copied to another host
//! as a whole and still work. Every field can be overridden by a `VAULT_*`
//! environment variable, which is how containers and systemd units tweak a
//! node without editing its file.

pub mod client;
pub mod node;

use std::path::{Path, PathBuf};

/// Resolves `path` against `base` unless it is already absolute.
pub fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}
