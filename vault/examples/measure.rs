//! Measures the costs a vault user feels: deriving the keys from a
//! passphrase (slow on purpose), applying committed add-secret commands to
//! SQLite, per batch size, and a follower's restore of a snapshot of
//! `MEASURE_RESTORE_SECRETS` secrets (200 000 by default).
//!
//! Run: `cargo run --release -p vault --example measure` (numbers depend on
//! the build profile and the disk).

use consensus::state_machine::{CommittedCommand, StateMachine};
use std::path::PathBuf;
use std::time::Instant;
use vault::crypto::{KdfParams, Keyring, Passphrase, SecretFields};
use vault::protocol::{encode, ClientSession, Operation, VaultCommand};
use vault::store::VaultStateMachine;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let passphrase = Passphrase::new("correct horse battery staple".into());
    let keyring = Keyring::create("client:bench", &passphrase, KdfParams::RECOMMENDED)?;
    println!(
        "argon2id key derivation (64 MiB, 3 passes): {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );

    let mut fields = SecretFields::default();
    fields.password = Some("x".repeat(200));
    let started = Instant::now();
    let sealed = keyring.seal("sample", 1, &fields)?;
    println!(
        "seal one secret: {:.1} us, {} bytes of ciphertext",
        started.elapsed().as_secs_f64() * 1e6,
        sealed.0.len()
    );

    for batch in [1usize, 16, 64] {
        let dir = scratch(&format!("{batch}"))?;
        let mut machine = VaultStateMachine::open(&dir.join("vault.db"))?;
        let total = 2_000u64;
        let started = Instant::now();
        apply_puts(&mut machine, &sealed, total, batch)?;
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "apply {total} add-secret commands in batches of {batch}: {:.0} commands/s",
            total as f64 / seconds
        );
        std::fs::remove_dir_all(&dir)?;
    }

    let secrets: u64 = match std::env::var("MEASURE_RESTORE_SECRETS") {
        Ok(value) => value.parse()?,
        Err(_) => 200_000,
    };
    let dir = scratch("restore")?;
    let mut leader = VaultStateMachine::open(&dir.join("leader.db"))?;
    apply_puts(&mut leader, &sealed, secrets, 64)?;
    let started = Instant::now();
    let snapshot = leader.snapshot()?;
    println!(
        "take a snapshot of {secrets} secrets ({:.1} MB): {:.2} s",
        snapshot.len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let mut follower = VaultStateMachine::open(&dir.join("follower.db"))?;
    let started = Instant::now();
    follower.restore(secrets, &snapshot)?;
    println!(
        "restore a snapshot of {secrets} secrets ({:.1} MB): {:.2} s",
        snapshot.len() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// A fresh directory under the system's temporary directory.
fn scratch(name: &str) -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("vault-measure-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Applies `total` add-secret commands of `sealed` (indexes 1..=total) in
/// batches of `batch`.
fn apply_puts(
    machine: &mut VaultStateMachine,
    sealed: &vault::protocol::SealedSecret,
    total: u64,
    batch: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let commands: Vec<Vec<u8>> = (1..=total)
        .map(|i| {
            encode(&VaultCommand::V1 {
                session: Some(ClientSession {
                    client_id: i % 64,
                    seq: i,
                }),
                owner: "client:bench".into(),
                proposed_at_ms: i,
                op: Operation::Put {
                    name: format!("secret-{i}"),
                    sealed: sealed.clone(),
                    update: false,
                    version: 1,
                },
            })
        })
        .collect();
    for (chunk_number, chunk) in commands.chunks(batch).enumerate() {
        let first = (chunk_number * batch) as u64 + 1;
        let committed: Vec<CommittedCommand<'_>> = chunk
            .iter()
            .enumerate()
            .map(|(offset, command)| CommittedCommand {
                index: first + offset as u64,
                term: 1,
                command,
            })
            .collect();
        machine.apply(&committed)?;
    }
    Ok(())
}
