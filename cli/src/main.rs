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
mod kv_cmd;
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
        Command::Cluster(ClusterCommand::Init(args)) => cluster_init::run(args),
        Command::Cluster(ClusterCommand::Up(args)) => cluster_up::run(args),
        Command::Cluster(ClusterCommand::AddNode(args)) => cluster_add_node::run(args),
        Command::Certs(command) => certs_cmd::run(command),
        Command::Node(args::NodeCommand::Run(run)) => match &cli.config {
            Some(config) => node_cmd::run(config, run.log_format),
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
        Command::Snapshot(args::SnapshotCommand::Inspect { file }) => {
            commands::snapshot::inspect(file, cli.json)
        }
        Command::Snapshot(args::SnapshotCommand::Restore(args)) => {
            commands::snapshot::restore(args, cli.json)
        }
        Command::Kv(command) => kv_cmd::run(cli.config.as_deref(), cli.json, command),
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
            Command::Snapshot(args::SnapshotCommand::Save { file }) => {
                commands::snapshot::save(&session, file).await
            }
            Command::Cluster(_)
            | Command::Snapshot(_)
            | Command::Node(_)
            | Command::Kv(_)
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
