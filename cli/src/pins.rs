//! The pin file: the public-key fingerprint of every identity this client
//! has shared with or read a share from, pinned on first use (SPEC §4).
//!
//! A node answers "what is bob's public key?"; a malicious node could
//! answer with its own key and read everything shared with "bob". Pinning
//! turns that into a refusal the user sees: once bob's fingerprint is
//! pinned, a different key is refused until the user confirms the new
//! fingerprint (`--accept-key`), having checked it with bob (`whoami`).
//!
//! The file sits next to the client configuration, `NAME.pins.toml` for
//! `NAME.toml`, is written atomically and has mode 0600.

use crate::exit::Failure;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What a pin check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinned {
    /// First use: the fingerprint is now pinned.
    New,
    /// The fingerprint matches the pin.
    Same,
    /// The key changed and the user accepted the new fingerprint.
    Accepted,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinFile {
    #[serde(default)]
    pins: BTreeMap<String, String>,
}

/// The pins of one client configuration.
#[derive(Debug)]
pub struct Pins {
    path: PathBuf,
    file: PinFile,
}

/// `DIR/NAME.pins.toml` for the configuration `DIR/NAME.toml`.
pub fn path_for(config: &Path) -> PathBuf {
    let stem = config.file_stem().map_or_else(
        || "client".into(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    config.with_file_name(format!("{stem}.pins.toml"))
}

impl Pins {
    /// Reads the pin file at `path`; a missing file holds no pins.
    pub fn load(path: &Path) -> Result<Pins> {
        let file = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("the pin file {} is damaged", path.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => PinFile::default(),
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("cannot read the pin file {}", path.display()))
            }
        };
        Ok(Pins {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The fingerprint pinned for `identity`, if any.
    pub fn get(&self, identity: &str) -> Option<&str> {
        self.file.pins.get(identity).map(String::as_str)
    }

    /// Checks `fingerprint` (what a node says `identity`'s key is) against
    /// the pin: pins it on first use; refuses a different one (exit code 4)
    /// unless `accept` is that very fingerprint. Saves any change.
    pub fn check(
        &mut self,
        identity: &str,
        fingerprint: &str,
        accept: Option<&str>,
    ) -> Result<Pinned> {
        let outcome = match self.get(identity) {
            None => Pinned::New,
            Some(pinned) if vault::crypto::same_fingerprint(pinned, fingerprint) => {
                return Ok(Pinned::Same)
            }
            Some(pinned) => {
                if !accept
                    .is_some_and(|accepted| vault::crypto::same_fingerprint(accepted, fingerprint))
                {
                    return Err(Failure::new(
                        crate::exit::ExitCode::Conflict,
                        format!(
                            "the public key of {identity} changed: pinned {pinned}, the cluster now says {fingerprint}; \
                             check the new fingerprint with {identity} (vault-cli whoami) and run again with --accept-key {fingerprint}"
                        ),
                    )
                    .into());
                }
                Pinned::Accepted
            }
        };
        self.file
            .pins
            .insert(identity.to_string(), fingerprint.to_string());
        self.save()?;
        Ok(outcome)
    }

    /// Writes the pins to a temporary file (mode 0600), syncs it and
    /// renames it over the old file, so a crash leaves one or the other.
    fn save(&self) -> Result<()> {
        let text = toml::to_string(&self.file).context("cannot encode the pins")?;
        let temporary = self.path.with_extension("toml.tmp");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, &self.path)
        };
        write().with_context(|| format!("cannot write the pin file {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_pin_file_sits_next_to_the_config() {
        assert_eq!(
            path_for(Path::new("/etc/vault/alice.toml")),
            PathBuf::from("/etc/vault/alice.pins.toml")
        );
    }

    #[test]
    fn a_changed_key_is_refused_unless_its_fingerprint_is_accepted() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("client.pins.toml");
        let mut pins = Pins::load(&path).expect("no file yet");
        assert_eq!(
            pins.check("client:bob", "aaaa-1111", None).ok(),
            Some(Pinned::New)
        );
        let mode = std::fs::metadata(&path)
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut pins = Pins::load(&path).expect("reads back");
        assert_eq!(
            pins.check("client:bob", "AAAA1111", None).ok(),
            Some(Pinned::Same)
        );
        let refused = pins.check("client:bob", "bbbb-2222", None).unwrap_err();
        assert_eq!(crate::exit::code_for(&refused), 4);
        assert!(
            refused.to_string().contains("--accept-key bbbb-2222"),
            "{refused}"
        );
        // Accepting another fingerprint than the one offered changes nothing.
        assert!(pins
            .check("client:bob", "bbbb-2222", Some("cccc-3333"))
            .is_err());
        assert_eq!(pins.get("client:bob"), Some("aaaa-1111"));
        assert_eq!(
            pins.check("client:bob", "bbbb-2222", Some("bbbb-2222"))
                .ok(),
            Some(Pinned::Accepted)
        );
        let pins = Pins::load(&path).expect("reads back");
        assert_eq!(pins.get("client:bob"), Some("bbbb-2222"));
    }

    #[test]
    fn a_damaged_pin_file_is_an_error_not_an_empty_one() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("client.pins.toml");
        std::fs::write(&path, "pins = 3").expect("write");
        assert!(Pins::load(&path).is_err());
    }
}
