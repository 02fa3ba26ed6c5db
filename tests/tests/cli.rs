//! The command line itself (SPEC §8), through the real binary: help,
//! completion scripts, manual pages, usage errors, and the sentences a new
//! user meets (no client config, a delete that aborts because a node is
//! down).

use vault_tests::{run_cli, run_cli_full, TestCluster};

#[test]
fn help_lists_every_command_and_the_global_flags() {
    let help = run_cli(&["--help"]).expect_ok();
    for command in [
        "add-secret",
        "get-secret",
        "list",
        "history",
        "import",
        "export",
        "share",
        "unshare",
        "whoami",
        "delete",
        "status",
        "snapshot",
        "member",
        "completions",
        "man",
    ] {
        assert!(
            help.stdout.contains(command),
            "--help lacks {command}:\n{}",
            help.stdout
        );
    }
    assert!(help.stdout.contains("--config"), "{}", help.stdout);
    assert!(help.stdout.contains("--json"), "{}", help.stdout);
}

#[test]
fn completion_scripts_and_manual_pages_are_generated() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = run_cli(&["completions", shell]).expect_ok();
        assert!(
            script.stdout.contains("add-secret"),
            "{shell} completion lacks the subcommands"
        );
    }
    assert_eq!(run_cli(&["completions", "tcsh"]).code, 2);
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = dir.path().join("man1");
    run_cli(&["man", "--out", &out.to_string_lossy()]).expect_ok();
    for page in [
        "vault-cli.1",
        "vault-cli-get-secret.1",
        "vault-cli-node-run.1",
    ] {
        let text = std::fs::read_to_string(out.join(page))
            .unwrap_or_else(|error| panic!("{page}: {error}"));
        assert!(text.contains(".TH"), "{page} is not a manual page");
    }
}

#[test]
fn usage_errors_exit_2_and_a_missing_client_config_says_how_to_name_one() {
    assert_eq!(run_cli(&["node", "run"]).code, 2);
    assert_eq!(run_cli(&["node", "run", "--passphrase-file", "p"]).code, 2);
    assert_eq!(
        run_cli(&["cluster", "init", "--dir", "/nonexistent/x", "--nodes", "0"]).code,
        2
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("nowhere.toml");
    let missing = missing.to_string_lossy();
    let result = run_cli_full(
        &["list", "--config", &missing],
        &[("VAULT_CONFIG", "")],
        None,
    );
    assert_eq!(result.code, 1, "{result:?}");
    assert!(
        result.stderr.contains("--config") && result.stderr.contains("VAULT_CONFIG"),
        "the error does not say how to name a config: {result:?}"
    );
}

#[test]
fn a_delete_with_a_node_down_names_it_and_why_it_aborted() {
    let mut cluster = TestCluster::start(3);
    cluster.add_secret("doomed", "me", "pw");
    cluster.wait_for_applied(1);
    cluster.stop_node(3);
    let result = cluster.cli(&["delete", "doomed"]);
    assert_eq!(result.code, 5, "{result:?}");
    let report = result.json();
    assert_eq!(report["decision"], "abort", "{report}");
    assert_eq!(report["votes"]["node3"], "abort", "{report}");
    // The sentence names node3 and why (no vote in time), rather than
    // that it "voted abort".
    let stderr = &result.stderr;
    assert!(
        stderr.contains("node3: ") && stderr.contains("vote timeout"),
        "the error does not say why node3 aborted: {result:?}"
    );
}
