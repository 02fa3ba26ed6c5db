//! A second, tiny plug-in that shows the `StateMachine` API is not shaped
//! around the vault: a key-value map kept in one file, rewritten atomically
//! (write a temporary file, fsync, rename, fsync the directory) at the end of
//! every batch, so that a crash keeps either the old or the new file.
//!
//! File and snapshot format: CRC-32C (4 bytes, little endian) of the body,
//! then the body: postcard of [`Image`].

use consensus::raft::LogIndex;
use consensus::state_machine::{CommittedCommand, StateMachine};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A command of the key-value map.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum KvCommand {
    /// Sets `key` to `value`; answers the previous value.
    Set(String, Vec<u8>),
    /// Removes `key`; answers the previous value.
    Remove(String),
}

/// What goes wrong in the key-value machine.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("key-value file I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the key-value image is damaged")]
    Damaged,
    #[error("the snapshot is for index {found}, not {expected}")]
    IndexMismatch { expected: LogIndex, found: LogIndex },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Image {
    applied_index: LogIndex,
    map: BTreeMap<String, Vec<u8>>,
}

/// The key-value plug-in.
pub struct KvFile {
    path: PathBuf,
    image: Image,
}

impl KvFile {
    /// Opens the map stored in `dir`, or an empty one.
    pub fn open(dir: &Path) -> Result<KvFile, KvError> {
        let path = dir.join("kv.bin");
        let image = match fs::read(&path) {
            Ok(bytes) => decode(&bytes)?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Image::default(),
            Err(error) => return Err(error.into()),
        };
        Ok(KvFile { path, image })
    }

    fn persist(&self, image: &Image) -> Result<(), KvError> {
        let temporary = self.path.with_extension("tmp");
        let mut file = File::create(&temporary)?;
        file.write_all(&encode(image))?;
        file.sync_all()?;
        fs::rename(&temporary, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

fn encode(image: &Image) -> Vec<u8> {
    let body = postcard::to_stdvec(image).unwrap_or_default();
    let mut bytes = crc32c::crc32c(&body).to_le_bytes().to_vec();
    bytes.extend(body);
    bytes
}

fn decode(bytes: &[u8]) -> Result<Image, KvError> {
    if bytes.len() < 4 {
        return Err(KvError::Damaged);
    }
    let (checksum, body) = bytes.split_at(4);
    if checksum != crc32c::crc32c(body).to_le_bytes() {
        return Err(KvError::Damaged);
    }
    postcard::from_bytes(body).map_err(|_| KvError::Damaged)
}

impl StateMachine for KvFile {
    type Error = KvError;

    fn applied_index(&self) -> LogIndex {
        self.image.applied_index
    }

    fn apply(&mut self, commands: &[CommittedCommand<'_>]) -> Result<Vec<Vec<u8>>, KvError> {
        let mut next = self.image.clone();
        let mut responses = Vec::new();
        for command in commands {
            if command.index <= next.applied_index {
                responses.push(Vec::new());
                continue;
            }
            let previous = match postcard::from_bytes::<KvCommand>(command.command) {
                Ok(KvCommand::Set(key, value)) => next.map.insert(key, value),
                Ok(KvCommand::Remove(key)) => next.map.remove(&key),
                Err(_) => None,
            };
            responses.push(postcard::to_stdvec(&previous).unwrap_or_default());
            next.applied_index = command.index;
        }
        self.persist(&next)?;
        self.image = next;
        Ok(responses)
    }

    fn skip_to(&mut self, index: LogIndex) -> Result<(), KvError> {
        if index > self.image.applied_index {
            let mut next = self.image.clone();
            next.applied_index = index;
            self.persist(&next)?;
            self.image = next;
        }
        Ok(())
    }

    fn query(&self, query: &[u8]) -> Result<Vec<u8>, KvError> {
        let key = std::str::from_utf8(query).unwrap_or_default();
        Ok(postcard::to_stdvec(&self.image.map.get(key)).unwrap_or_default())
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, KvError> {
        Ok(encode(&self.image))
    }

    fn restore(&mut self, index: LogIndex, data: &[u8]) -> Result<(), KvError> {
        let image = decode(data)?;
        if image.applied_index != index {
            return Err(KvError::IndexMismatch {
                expected: index,
                found: image.applied_index,
            });
        }
        self.persist(&image)?;
        self.image = image;
        Ok(())
    }
}
