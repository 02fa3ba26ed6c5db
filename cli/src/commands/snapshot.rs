//! `snapshot save`, `snapshot inspect`, `snapshot restore` (SPEC §14): a
//! backup of the replicated state, and a new cluster made from one.
//!
//! The file format and its checks are the vault crate's (`vault::backup`).
//! `save` verifies what the node sent before writing (a backup that would
//! not restore is never written); `inspect` and `restore` verify the whole
//! file before anything else, and `restore` writes nothing at all for a
//! file that does not verify or a directory that is not empty.

use crate::args::SnapshotRestoreArgs;
use crate::cluster_init::{self, CaSource, InitPlan};
use crate::exit::Failure;
use crate::progress::Progress;
use crate::session::Session;
use anyhow::{Context, Result};
use consensus::node::SeedSnapshot;
use serde_json::json;
use std::path::Path;
use vault::backup::{read_file, write_atomically, Backup};

/// `snapshot save FILE` (admin only: a client identity gets exit 7).
pub async fn save(session: &Session, file: &Path) -> Result<()> {
    let progress = Progress::bytes(session.json, "downloading the snapshot");
    let downloaded = session
        .client
        .snapshot_save(|received, total| progress.set(received, total))
        .await;
    progress.finish();
    let downloaded = downloaded.map_err(Failure::from)?;
    let node = downloaded.node;
    let backup = Backup::from_state(downloaded.index, downloaded.term, downloaded.state)
        .with_context(|| {
            format!("{node} sent a snapshot that does not verify; nothing was written")
        })?;
    let bytes = write_atomically(file, &backup)
        .with_context(|| format!("cannot save the backup to {}", file.display()))?;
    print_backup(session.json, "saved", file, &backup, bytes);
    Ok(())
}

/// `snapshot inspect FILE`: verifies all of it, then says what it holds.
pub fn inspect(file: &Path, json: bool) -> Result<()> {
    let backup = verified(file)?;
    print_backup(json, "verified", file, &backup, backup.file_len());
    Ok(())
}

/// Reads and verifies the backup at `file`; the error names the file and
/// says why, in one sentence.
fn verified(file: &Path) -> Result<Backup> {
    read_file(file).with_context(|| format!("{} is not a usable backup", file.display()))
}

fn print_backup(json: bool, verb: &str, file: &Path, backup: &Backup, bytes: u64) {
    if json {
        let document = json!({
            "file": file.display().to_string(),
            "index": backup.index,
            "term": backup.term,
            "secrets": backup.secrets,
            "bytes": bytes,
        });
        println!("{document}");
    } else {
        println!(
            "{verb} {}: {} secrets at index {} (term {}), {bytes} bytes",
            file.display(),
            backup.secrets,
            backup.index,
            backup.term
        );
    }
}

/// `snapshot restore FILE --dir DIR ...`: a new cluster laid out exactly as
/// `cluster init` lays one out, every node seeded with the backup's state
/// at the backup's index and term.
pub fn restore(args: &SnapshotRestoreArgs, json: bool) -> Result<()> {
    // Everything that can refuse does so before DIR is touched.
    let backup = verified(&args.file)?;
    let plan = InitPlan::from_flags(
        args.dir.clone(),
        args.nodes,
        args.host.as_deref(),
        &args.hosts,
        args.base_port,
        3,
    )
    .map_err(|error| Failure::new(crate::exit::ExitCode::Usage, format!("{error:#}")))?;
    let existed = refuse_unless_empty(&args.dir)?;
    let ca = match &args.ca {
        Some(dir) => {
            certs::CertificateAuthority::load(dir)
                .with_context(|| format!("cannot use the CA in {}", dir.display()))?;
            CaSource::Existing(dir)
        }
        None => CaSource::Generate,
    };
    let seed = SeedSnapshot {
        index: backup.index,
        term: backup.term,
        data: backup.state.clone(),
    };
    let progress = Progress::steps(json, "writing the nodes");
    let written = cluster_init::init_with(&plan, ca, Some(&seed), &|done, total| {
        progress.set(done, total)
    });
    progress.finish();
    if let Err(error) = written {
        // A half-written cluster is of no use and could be mistaken for
        // one; remove what this command created.
        if existed {
            let _ = clear_directory(&args.dir);
        } else {
            let _ = std::fs::remove_dir_all(&args.dir);
        }
        return Err(error.context(format!(
            "cannot restore {} into {}; nothing was left there",
            args.file.display(),
            args.dir.display()
        )));
    }
    let nodes = plan.addresses.len();
    if json {
        let document = json!({
            "file": args.file.display().to_string(),
            "dir": args.dir.display().to_string(),
            "index": backup.index,
            "term": backup.term,
            "secrets": backup.secrets,
            "nodes": nodes,
        });
        println!("{document}");
    } else {
        println!(
            "restored {} secrets (index {}, term {}) from {} into a {nodes}-node cluster in {}",
            backup.secrets,
            backup.index,
            backup.term,
            args.file.display(),
            args.dir.display()
        );
        println!("client config: {}", args.dir.join("client.toml").display());
        println!(
            "start each node with: vault-cli node run --config {}",
            args.dir.join("nodeK/node.toml").display()
        );
    }
    Ok(())
}

/// Refuses a `dir` that holds anything (exit 4); returns whether it
/// exists (empty).
fn refuse_unless_empty(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Failure::new(
                    crate::exit::ExitCode::Conflict,
                    format!(
                        "{} is not empty; restore into a new or empty directory",
                        dir.display()
                    ),
                )
                .into());
            }
            Ok(true)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", dir.display())),
    }
}

/// Removes everything inside `dir`, keeping `dir`.
fn clear_directory(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}
