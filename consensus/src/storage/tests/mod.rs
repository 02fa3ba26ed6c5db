//! Tests of the storage layer against real files. The contract itself is
//! checked by the [`super::conformance`] suite, run here for both stores.

mod crash;
mod model;
mod recovery;
mod torn_tail;

use super::conformance::{self, StoreFactory};
use super::{FileStore, FileStoreOptions, MemDisk, MemStore, Recovered, StorageError};
use tempfile::TempDir;

/// Opens a [`FileStore`] in a temporary directory that outlives each store.
pub(crate) struct FileFactory {
    pub(crate) dir: TempDir,
    pub(crate) options: FileStoreOptions,
}

impl FileFactory {
    pub(crate) fn new(segment_size: u64) -> FileFactory {
        FileFactory {
            dir: tempfile::tempdir().expect("a temporary directory"),
            options: FileStoreOptions { segment_size },
        }
    }
}

impl StoreFactory for FileFactory {
    type Store = FileStore;

    fn open(&mut self) -> Result<(FileStore, Recovered), StorageError> {
        FileStore::open(self.dir.path(), self.options.clone())
    }
}

struct MemFactory(MemDisk);

impl StoreFactory for MemFactory {
    type Store = MemStore;

    fn open(&mut self) -> Result<(MemStore, Recovered), StorageError> {
        Ok(self.0.open())
    }
}

#[test]
fn memory_store_conforms() {
    conformance::run_all(|| MemFactory(MemDisk::new()));
}

#[test]
fn file_store_conforms() {
    conformance::run_all(|| FileFactory::new(FileStoreOptions::default().segment_size));
}

/// Segments so small that nearly every write starts a new one: recovery then
/// replays logs whose beginning compaction has deleted.
#[test]
fn file_store_with_tiny_segments_conforms() {
    conformance::run_all(|| FileFactory::new(64));
}
