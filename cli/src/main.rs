//! `vault-cli`: runs nodes, makes certificates, starts a local cluster, and is
//! the client. The command line is the stable contract of SPEC §8; see
//! `args.rs`. Each subcommand lives in its own module.

mod args;
mod certs_cmd;
mod cluster_add_node;
mod cluster_init;
mod cluster_up;
mod commands;
mod config;
mod data_dir;
mod docs_cmd;
mod exit;
mod fields_input;
mod generate;
mod identity;
mod node_cmd;
mod pins;
mod progress;
mod render;
mod session;

use anyhow::Result;
use args::{Cli, ClusterCommand, Command};
use clap::Parser;
use std::path::PathBuf;

fn main() {
    // Before anything is written: keys, node directories, logs and
    // databases are for the owner only (SPEC §9 "Files").
    data_dir::restrict_new_files();
    let cli = Cli::parse();
    let json = cli.json;
    if let Err(error) = run(cli) {
        let code = exit::code_for(&error);
        if json && !exit::json_printed(&error) {
            let document = serde_json::json!({ "error": format!("{error:#}"), "code": code });
            println!("{document}");
        }
        eprintln!("error: {error:#}");
        std::process::exit(code);
    }
}

fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Command::Cluster(ClusterCommand::Init(args)) => {
            let plan = if args.hosts.is_empty() {
                let host = args.host.as_deref().unwrap_or("127.0.0.1");
                cluster_init::InitPlan::single_host(
                    args.dir.clone(),
                    args.nodes.unwrap_or(5),
                    host,
                    args.base_port,
                )?
            } else {
                if let Some(nodes) = args.nodes.filter(|nodes| *nodes != args.hosts.len()) {
                    return Err(exit::Failure::new(
                        exit::ExitCode::Usage,
                        format!(
                            "--nodes {nodes} does not match the {} hosts given",
                            args.hosts.len()
                        ),
                    )
                    .into());
                }
                cluster_init::InitPlan::multi_host(args.dir.clone(), &args.hosts, args.base_port)
            };
            let configs = cluster_init::init(&plan)?;
            println!(
                "initialised a {}-node cluster in {}",
                configs.len(),
                plan.dir.display()
            );
            println!("client config: {}", plan.dir.join("client.toml").display());
            Ok(())
        }
        Command::Cluster(ClusterCommand::Up(args)) => cluster_up(args),
        Command::Cluster(ClusterCommand::AddNode(args)) => cluster_add_node::run(args),
        Command::Certs(command) => certs_cmd::run(command),
        Command::Node(args::NodeCommand::Run) => match &cli.config {
            Some(config) => node_cmd::run(config),
            None => Err(exit::Failure::new(
                exit::ExitCode::Usage,
                "node run needs --config DIR/nodeK/node.toml (cluster init writes one per node)",
            )
            .into()),
        },
        Command::Completions { shell } => {
            docs_cmd::completions(*shell);
            Ok(())
        }
        Command::Man { out } => docs_cmd::man_pages(out),
        _ => run_client(cli),
    }
}

/// The client subcommands share one runtime and one connection setup.
fn run_client(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let session =
            session::Session::load(cli.config.as_deref(), cli.json, passphrase_file(&cli))?;
        let outcome = match &cli.command {
            Command::AddSecret(args) => commands::add_secret::run(&session, args).await,
            Command::GetSecret(args) => commands::get_secret::run(&session, args).await,
            Command::List(args) => commands::list::run(&session, args).await,
            Command::History(args) => commands::history::run(&session, args).await,
            Command::Import(args) => commands::import::run(&session, args).await,
            Command::Export(args) => commands::export::run(&session, args).await,
            Command::Share(args) => commands::share::share(&session, args).await,
            Command::Unshare(args) => commands::share::unshare(&session, args).await,
            Command::Whoami(_) => commands::whoami::run(&session).await,
            Command::Delete(args) => commands::delete::run(&session, &args.name).await,
            Command::Status => commands::status::run(&session).await,
            Command::TransferLeader(args) => {
                commands::transfer_leader::run(&session, args.to.as_deref()).await
            }
            Command::Bench(args) => commands::bench::run(&session, args).await,
            Command::Member(command) => commands::member::run(&session, command).await,
            Command::Cluster(_)
            | Command::Node(_)
            | Command::Certs(_)
            | Command::Completions { .. }
            | Command::Man { .. } => {
                unreachable!("handled before a client is set up")
            }
        };
        session.client.close().await;
        outcome
    })
}

/// `--passphrase-file` after the subcommand, else before it.
fn passphrase_file(cli: &Cli) -> Option<PathBuf> {
    let after = match &cli.command {
        Command::AddSecret(args) => &args.passphrase,
        Command::GetSecret(args) => &args.passphrase,
        Command::Share(args) | Command::Unshare(args) => &args.passphrase,
        Command::Whoami(args) => args,
        Command::Import(args) => &args.passphrase,
        Command::Export(args) => &args.passphrase,
        _ => return cli.passphrase_file.clone(),
    };
    after.file.clone().or_else(|| cli.passphrase_file.clone())
}

fn cluster_up(args: &args::ClusterUpArgs) -> Result<()> {
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
        let plan = cluster_init::InitPlan::single_host(
            args.dir.clone(),
            args.nodes,
            "127.0.0.1",
            args.base_port,
        )?;
        cluster_init::init(&plan)?
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
    cluster_up::run_nodes(&args.dir, &configs)
}
