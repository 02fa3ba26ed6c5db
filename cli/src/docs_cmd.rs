//! `vault-cli completions SHELL` and `vault-cli man --out DIR`: the shell
//! completion script and the manual pages, both generated from the one
//! command-line definition in `args.rs`, so they cannot drift from it.

use crate::args::Cli;
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::path::Path;

/// Prints the completion script for `shell` on standard output.
pub fn completions(shell: clap_complete::Shell) {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "vault-cli", &mut std::io::stdout());
}

/// Writes `vault-cli.1` and one page per subcommand (`vault-cli-add-secret.1`,
/// `vault-cli-cluster-init.1`, …) into `out`, creating it if missing.
pub fn man_pages(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    clap_mangen::generate_to(Cli::command(), out)
        .with_context(|| format!("cannot write the manual pages to {}", out.display()))?;
    println!("manual pages written to {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bash_script_completes_every_subcommand() {
        let mut script = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "vault-cli",
            &mut script,
        );
        let script = String::from_utf8(script).expect("the script is UTF-8");
        for sub in Cli::command().get_subcommands() {
            assert!(
                script.contains(sub.get_name()),
                "no completion for {}",
                sub.get_name()
            );
        }
    }

    #[test]
    fn a_page_is_written_for_the_tool_and_each_subcommand() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        man_pages(dir.path()).expect("pages written");
        for page in [
            "vault-cli.1",
            "vault-cli-add-secret.1",
            "vault-cli-cluster-init.1",
        ] {
            let text = std::fs::read_to_string(dir.path().join(page))
                .unwrap_or_else(|error| panic!("{page}: {error}"));
            assert!(text.contains(".TH"), "{page} is not a man page");
        }
    }
}
