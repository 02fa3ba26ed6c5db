//! SPEC §5's password-manager conveniences and §8's global flags, through
//! real `vault-cli` processes and a real 3-node cluster: `--update` keeps
//! the fields it is not given, versions and `history`, `--version`,
//! `--generate`, `list --shared`, `export` and `import`, and `--config` /
//! `--json` after the subcommand.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use vault_tests::{run_cli_full, CliResult, TestCluster, PASSPHRASE};

/// Runs `args` with `--config` and `--json` *after* the subcommand.
fn after(config: &Path, args: &[&str], input: Option<&str>) -> CliResult {
    let config = config.to_string_lossy();
    let mut full = args.to_vec();
    full.extend_from_slice(&["--config", config.as_ref(), "--json"]);
    run_cli_full(&full, &[("VAULT_PASSPHRASE", PASSPHRASE)], input)
}

#[test]
fn updates_keep_fields_and_every_kept_version_reads_back() {
    let cluster = TestCluster::start(3);
    let admin = cluster.client_config();
    after(
        &admin,
        &[
            "add-secret",
            "mail",
            "--username",
            "alice",
            "--url",
            "https://mail.example",
            "--note",
            "recovery codes in the safe",
            "--password-stdin",
        ],
        Some("first"),
    )
    .expect_ok();
    let updated = after(
        &admin,
        &["add-secret", "mail", "--update", "--password-stdin"],
        Some("second"),
    )
    .expect_ok();
    assert_eq!(updated.json()["version"], 2, "{updated:?}");
    let current = after(&admin, &["get-secret", "mail"], None)
        .expect_ok()
        .json();
    assert_eq!(current["password"], "second");
    assert_eq!(
        current["username"], "alice",
        "--update dropped a field: {current}"
    );
    assert_eq!(current["url"], "https://mail.example");
    assert_eq!(current["note"], "recovery codes in the safe");
    assert_eq!(current["version"], 2);

    let old = after(&admin, &["get-secret", "mail", "--version", "1"], None)
        .expect_ok()
        .json();
    assert_eq!(old["password"], "first");
    assert_eq!(old["version"], 1);

    let history = after(&admin, &["history", "mail"], None).expect_ok().json();
    assert_eq!(history["name"], "mail");
    let versions: Vec<u64> = history["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|version| version["version"].as_u64().expect("a number"))
        .collect();
    assert_eq!(versions, vec![1, 2], "{history}");
    assert!(history["versions"][0]["updated"].is_string(), "{history}");

    let missing = after(&admin, &["get-secret", "mail", "--version", "7"], None);
    assert_eq!(missing.code, 3, "{missing:?}");
}

#[test]
fn generated_passwords_are_stored_and_a_missing_password_is_warned_about() {
    let cluster = TestCluster::start(3);
    let admin = cluster.client_config();
    let made = after(
        &admin,
        &[
            "add-secret",
            "bank",
            "--generate",
            "--length",
            "32",
            "--no-symbols",
        ],
        None,
    )
    .expect_ok();
    let password = made.json()["password"]
        .as_str()
        .expect("the generated password is printed once")
        .to_string();
    assert_eq!(password.len(), 32);
    assert!(
        password.bytes().all(|byte| byte.is_ascii_alphanumeric()),
        "{password}"
    );
    let stored = after(&admin, &["get-secret", "bank", "--field", "password"], None)
        .expect_ok()
        .json();
    assert_eq!(stored["password"], password.as_str());

    let both = after(
        &admin,
        &["add-secret", "x", "--generate", "--password-stdin"],
        Some("pw"),
    );
    assert_eq!(both.code, 2, "{both:?}");

    let bare = after(&admin, &["add-secret", "nopass", "--username", "me"], None).expect_ok();
    assert!(bare.stderr.contains("no password"), "{bare:?}");
}

#[test]
fn export_then_import_moves_every_secret_and_list_shared_shows_shares() {
    let cluster = TestCluster::start(3);
    let admin = cluster.client_config();
    let bob = cluster.add_client("bob");
    for (name, password) in [("mail", "p,w\"1"), ("bank", "two\nlines")] {
        after(
            &admin,
            &[
                "add-secret",
                name,
                "--username",
                "admin",
                "--password-stdin",
            ],
            Some(password),
        )
        .expect_ok();
    }
    // Bob publishes his key; then admin shares one secret with him.
    after(&bob, &["whoami"], None).expect_ok();
    after(&admin, &["share", "mail", "--with", "bob"], None).expect_ok();
    let shared = after(&bob, &["list", "--shared"], None).expect_ok().json();
    assert_eq!(
        shared["secrets"],
        serde_json::json!([{ "owner": "admin:admin", "name": "mail", "version": 1 }]),
        "{shared}"
    );
    let history = after(&bob, &["history", "mail", "--owner", "admin:admin"], None)
        .expect_ok()
        .json();
    assert_eq!(history["versions"][0]["version"], 1, "{history}");
    let stranger = after(&bob, &["history", "bank", "--owner", "admin:admin"], None);
    assert_eq!(stranger.code, 7, "{stranger:?}");

    let dir = tempfile::tempdir().expect("temporary directory");
    for format in ["csv", "json"] {
        let file = dir.path().join(format!("export.{format}"));
        let file_arg = file.to_string_lossy().to_string();
        after(
            &admin,
            &["export", "--format", format, "--out", &file_arg],
            None,
        )
        .expect_ok();
        let mode = std::fs::metadata(&file)
            .expect("written")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{format} export is mode {mode:o}");
        let again = after(
            &admin,
            &["export", "--format", format, "--out", &file_arg],
            None,
        );
        assert_eq!(again.code, 4, "an export replaced a file: {again:?}");
    }
    let csv = dir.path().join("export.csv");
    let csv_arg = csv.to_string_lossy().to_string();
    let imported = after(&bob, &["import", &csv_arg, "--format", "csv"], None).expect_ok();
    assert_eq!(imported.json()["imported"], 2, "{imported:?}");
    let read = after(&bob, &["get-secret", "bank"], None)
        .expect_ok()
        .json();
    assert_eq!(read["password"], "two\nlines");
    assert_eq!(read["username"], "admin");
    // Running it again stores nothing new and replaces nothing.
    let again = after(&bob, &["import", &csv_arg, "--format", "csv"], None).expect_ok();
    assert_eq!(again.json()["imported"], 0, "{again:?}");
    assert_eq!(again.json()["skipped"], serde_json::json!(["bank", "mail"]));

    let bitwarden = dir.path().join("bitwarden.json");
    std::fs::write(
        &bitwarden,
        r#"{"encrypted":false,"folders":[],"items":[
            {"id":"1","type":1,"name":"forum","notes":null,
             "login":{"username":"bob","password":"from-bitwarden",
                      "uris":[{"match":null,"uri":"https://forum.example"}]}}]}"#,
    )
    .expect("written");
    let from_bitwarden = after(
        &bob,
        &[
            "import",
            &bitwarden.to_string_lossy(),
            "--format",
            "bitwarden-json",
        ],
        None,
    )
    .expect_ok();
    assert_eq!(from_bitwarden.json()["imported"], 1, "{from_bitwarden:?}");
    let forum = after(&bob, &["get-secret", "forum"], None)
        .expect_ok()
        .json();
    assert_eq!(forum["password"], "from-bitwarden");
    assert_eq!(forum["url"], "https://forum.example");

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "name,password\nok,1\nbad\u{7},2\n").expect("written");
    let refused = after(
        &bob,
        &["import", &bad.to_string_lossy(), "--format", "csv"],
        None,
    );
    assert_eq!(refused.code, 2, "{refused:?}");
    let listing = after(&bob, &["list"], None).expect_ok().json();
    assert_eq!(
        listing["secrets"].as_array().map(Vec::len),
        Some(3),
        "a refused import stored something: {listing}"
    );
}
