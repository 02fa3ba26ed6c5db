//! `cluster up`: run every node of a local cluster as child processes.
//!
//! Each node is a real `vault-cli node run` process (the same binary), so a
//! local cluster behaves exactly like a multi-host one. Their logs go to
//! `DIR/nodeK/node.log`. On Ctrl-C (or SIGTERM) every child gets SIGTERM and
//! is waited for, so data directories are closed cleanly; a child that does
//! not stop within a grace period is killed.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `cluster up`: initialises `--dir` if it holds no cluster, prints the
/// commands to try, and runs every node until Ctrl-C.
pub fn run(args: &crate::args::ClusterUpArgs) -> Result<()> {
    let client_config = args.dir.join("client.toml");
    let configs: Vec<PathBuf> = if client_config.exists() {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&args.dir)?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.path().join("node.toml"))
            .filter(|path| path.exists())
            .collect();
        found.sort();
        found
    } else {
        let plan = crate::cluster_init::InitPlan::single_host(
            args.dir.clone(),
            args.nodes,
            "127.0.0.1",
            args.base_port,
        )?;
        crate::cluster_init::init(&plan)?
    };
    anyhow::ensure!(
        !configs.is_empty(),
        "no nodeK/node.toml under {}",
        args.dir.display()
    );
    println!(
        "starting {} nodes; logs in {}/nodeK/node.log",
        configs.len(),
        args.dir.display()
    );
    println!("client config: {}", client_config.display());
    // The exact commands, runnable as printed: vault-cli may not be on PATH.
    let me = std::env::current_exe()
        .ok()
        .and_then(|path| path.canonicalize().ok())
        .map_or_else(
            || "vault-cli".to_string(),
            |path| path.display().to_string(),
        );
    let config = client_config
        .canonicalize()
        .unwrap_or_else(|_| client_config.clone());
    println!("ready once a leader is elected (a second or two); in another terminal:");
    println!("  export VAULT_CONFIG={}", config.display());
    println!(
        "  export VAULT_PASSPHRASE='choose a passphrase'   # or leave it unset to be prompted"
    );
    println!("  echo s3cret | {me} add-secret github --username me --password-stdin");
    println!("  {me} get-secret github");
    println!("  {me} status");
    println!("Ctrl-C stops every node.");
    run_nodes(&args.dir, &configs)
}

/// Set by the signal handler; polled by the supervisor loop.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Runs `vault-cli node run` for every `nodeK/node.toml` under `dir` until
/// Ctrl-C, then stops them all. Returns an error if a node exits by itself.
pub fn run_nodes(dir: &Path, node_configs: &[PathBuf]) -> Result<()> {
    install_signal_handlers();
    let exe = std::env::current_exe().context("cannot find the vault-cli executable")?;
    let mut children = Vec::new();
    for config in node_configs {
        let node_dir = config.parent().unwrap_or(dir);
        let log_path = node_dir.join("node.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let child = Command::new(&exe)
            .args(["node", "run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start node for {}", config.display()))?;
        children.push((config.clone(), child));
    }
    let outcome = supervise(&mut children);
    stop_all(&mut children);
    outcome
}

fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            request_stop as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            request_stop as *const () as libc::sighandler_t,
        );
    }
}

fn supervise(children: &mut [(PathBuf, Child)]) -> Result<()> {
    while !STOP.load(Ordering::SeqCst) {
        for (config, child) in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!(
                    "the node of {} exited by itself ({status}); see its node.log",
                    config.display()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("stopping {} nodes...", children.len());
    Ok(())
}

fn stop_all(children: &mut [(PathBuf, Child)]) {
    for (_, child) in children.iter_mut() {
        // SAFETY: plain kill(2) on a pid we spawned and have not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for (_, child) in children.iter_mut() {
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
