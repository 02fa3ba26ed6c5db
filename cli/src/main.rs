//! `vault-cli`: runs nodes, makes certificates, starts a local cluster, and is
//! the client. The command line is the stable contract of SPEC §8; see
//! `args.rs`. Each subcommand lives in its own module.

mod args;
mod bench;
mod certs_cmd;
mod client_cmd;
mod cluster_add_node;
mod cluster_init;
mod cluster_up;
mod config;
mod data_dir;
mod docs_cmd;
mod exit;
mod fields_input;
mod identity;
mod member_cmd;
mod node_cmd;
mod pins;
mod share_cmd;

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
                if let Some(nodes) = args.nodes {
                    anyhow::ensure!(
                        nodes == args.hosts.len(),
                        "--nodes {nodes} does not match the {} hosts given",
                        args.hosts.len()
                    );
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
        Command::Node(args::NodeCommand::Run(run)) => match &cli.config {
            Some(config) => node_cmd::run(config, run.log_format),
            None => Err(exit::Failure::new(
                exit::USAGE,
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
        let session = client_cmd::Session::load(
            cli.config.as_deref(),
            cli.json,
            cli.passphrase_file.clone(),
        )?;
        let outcome = match &cli.command {
            Command::AddSecret(args) => client_cmd::add_secret(&session, args).await,
            Command::GetSecret(args) => client_cmd::get_secret(&session, args).await,
            Command::List => client_cmd::list(&session).await,
            Command::Share(args) => share_cmd::share(&session, args).await,
            Command::Unshare(args) => share_cmd::unshare(&session, args).await,
            Command::Whoami => identity::whoami(&session).await,
            Command::Delete(args) => client_cmd::delete(&session, &args.name).await,
            Command::Status => client_cmd::status(&session).await,
            Command::TransferLeader(args) => {
                client_cmd::transfer_leader(&session, args.to.as_deref()).await
            }
            Command::Bench(args) => bench::run(&session, args).await,
            Command::Member(command) => member_cmd::run(&session, command).await,
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
    println!("try, in another terminal:");
    println!("  export VAULT_CONFIG={}", client_config.display());
    println!("  echo s3cret | vault-cli add-secret github --username me --password-stdin");
    println!("  vault-cli get-secret github");
    println!("  vault-cli status");
    println!("Ctrl-C stops every node.");
    cluster_up::run_nodes(&args.dir, &configs)
}
