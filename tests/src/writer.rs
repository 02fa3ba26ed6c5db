//! A client that keeps writing while a test changes the cluster under it.

use crate::{run_cli_full, CliResult, PASSPHRASE};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

/// What a [`BackgroundWriter`] saw.
#[derive(Debug, Default)]
pub struct Writes {
    /// (name, password) of every `add-secret` that exited 0, in order.
    pub acknowledged: Vec<(String, String)>,
    /// Every `add-secret` that did not: its name and result. An
    /// unacknowledged write may or may not have been applied; a test
    /// makes no claim about it, but shows these when it fails.
    pub failed: Vec<(String, CliResult)>,
}

/// A thread that runs `add-secret` with a fresh name, one after another,
/// through one client configuration, until stopped, and records which
/// writes were acknowledged. The names are `<prefix>-<n>`.
///
/// It runs `vault-cli` directly rather than through a
/// [`crate::TestCluster`], so the test thread keeps `&mut` access to the
/// cluster (to start nodes) while it writes.
pub struct BackgroundWriter {
    stop: Arc<AtomicBool>,
    record: Arc<Mutex<Writes>>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundWriter {
    /// Starts writing through the client configuration `config`.
    pub fn start(config: PathBuf, prefix: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let record = Arc::new(Mutex::new(Writes::default()));
        let thread = {
            let (stop, record, prefix) = (stop.clone(), record.clone(), prefix.to_string());
            std::thread::spawn(move || {
                let config = config.to_string_lossy().into_owned();
                let mut next = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("{prefix}-{next}");
                    let password = format!("pw-{name}");
                    next += 1;
                    let result = run_cli_full(
                        &[
                            "--config",
                            &config,
                            "add-secret",
                            &name,
                            "--username",
                            "writer",
                            "--password-stdin",
                            "--json",
                        ],
                        &[("VAULT_PASSPHRASE", PASSPHRASE)],
                        Some(&password),
                    );
                    let mut record = record.lock().unwrap_or_else(PoisonError::into_inner);
                    if result.code == 0 {
                        record.acknowledged.push((name, password));
                    } else {
                        record.failed.push((name, result));
                    }
                }
            })
        };
        BackgroundWriter {
            stop,
            record,
            thread: Some(thread),
        }
    }

    /// How many writes have been acknowledged so far.
    pub fn acknowledged_count(&self) -> usize {
        self.lock().acknowledged.len()
    }

    /// Stops after the write in progress and returns what it saw.
    pub fn stop(mut self) -> Writes {
        self.halt();
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writes> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // Each write is bounded by the hang guard, so this ends.
            let _ = thread.join();
        }
    }
}

impl Drop for BackgroundWriter {
    /// A test that panics still stops its writer before the cluster (and
    /// its directory) goes away.
    fn drop(&mut self) {
        self.halt();
    }
}
