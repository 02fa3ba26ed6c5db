//! Measures the two costs a vault user feels: deriving the keys from a
//! passphrase (slow on purpose) and applying committed add-secret commands to
//! SQLite, per batch size.
//!
//! Run: `cargo run -p vault --example measure` (numbers depend on the build
//! profile and the disk; the report says which were used).

use consensus::state_machine::{CommittedCommand, StateMachine};
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
        let dir =
            std::env::temp_dir().join(format!("vault-measure-{}-{batch}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut machine = VaultStateMachine::open(&dir.join("vault.db"))?;
        let total = 2_000u64;
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
        let started = Instant::now();
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
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "apply {total} add-secret commands in batches of {batch}: {:.0} commands/s",
            total as f64 / seconds
        );
    }
    Ok(())
}
