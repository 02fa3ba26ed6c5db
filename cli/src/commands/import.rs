//! `import FILE --format csv|bitwarden-json`: store the secrets of a
//! password-manager export, each sealed here as a new secret (SPEC §5).
//!
//! The whole file is read and checked before anything is stored: a bad
//! name, a duplicate or an undecodable file stores nothing. A name that
//! already exists in the vault is skipped (and reported), never replaced.

use crate::args::{ImportArgs, ImportFormat};
use crate::exit::{ExitCode, Failure};
use crate::identity::{crypto_failure, unlock};
use crate::session::Session;
use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeSet;
use vault::crypto::SecretFields;
use vault::protocol::{Request, Response, VaultError};

/// Reads, checks and stores; prints `{"imported","skipped"}`.
pub async fn run(session: &Session, args: &ImportArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let entries = match args.format {
        ImportFormat::Csv => parse_csv(&text),
        ImportFormat::BitwardenJson => parse_bitwarden(&text),
    }
    .map_err(|error| Failure::new(ExitCode::Usage, format!("{}: {error}", args.file.display())))?;
    check(&entries)?;
    let keyring = unlock(session, false).await?;
    let progress = crate::progress::bar(session.json, entries.len() as u64, "importing");
    // One at a time: a client session numbers its writes, and a later one
    // supersedes an earlier one still in flight (exactly-once, SPEC §5).
    let mut imported = 0usize;
    let mut skipped = Vec::new();
    let mut failure = None;
    for (name, fields) in &entries {
        match store(session, &keyring, name, fields).await {
            Ok(true) => imported += 1,
            Ok(false) => skipped.push(name.clone()),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    skipped.sort();
    if let Some(error) = failure {
        return Err(error.context(format!(
            "imported {imported} secrets before the failure; run import again to store the rest (stored ones are skipped)"
        )));
    }
    crate::render::print(
        session.json,
        json!({ "imported": imported, "skipped": skipped }),
        || {
            let mut text = format!("imported {imported} secrets");
            if !skipped.is_empty() {
                text.push_str(&format!(
                    "; skipped {} that already exist: {}",
                    skipped.len(),
                    skipped.join(", ")
                ));
            }
            text
        },
    );
    Ok(())
}

/// Seals `fields` as version 1 of `name` and stores it: `Ok(false)` if a
/// secret of that name already exists (it is left as it is).
async fn store(
    session: &Session,
    keyring: &vault::crypto::Keyring,
    name: &str,
    fields: &SecretFields,
) -> Result<bool> {
    let sealed = keyring.seal(name, 1, fields).map_err(crypto_failure)?;
    let outcome = session
        .client
        .call(Request::AddSecret {
            name: name.to_string(),
            sealed,
            update: false,
            version: 1,
        })
        .await;
    match outcome {
        Ok(Response::Added { .. }) => Ok(true),
        Err(VaultError::AlreadyExists(_)) => Ok(false),
        Ok(other) => Err(anyhow::anyhow!(
            "unexpected answer to add-secret: {other:?}"
        )),
        Err(error) => {
            Err(anyhow::Error::new(Failure::from(error)).context(format!("storing {name} failed")))
        }
    }
}

/// Every name valid and given once.
fn check(entries: &[(String, SecretFields)]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for (name, _) in entries {
        vault::validate::validate_name(name).map_err(|error| {
            Failure::new(ExitCode::Usage, format!("{error} (nothing was imported)"))
        })?;
        if !seen.insert(name.as_str()) {
            return Err(Failure::new(
                ExitCode::Usage,
                format!("{name:?} appears twice in the file; rename one (nothing was imported)"),
            )
            .into());
        }
    }
    Ok(())
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

/// `name,url,username,password,note` with a header line naming them (in
/// any order; other columns are ignored), as `export --format csv` writes.
fn parse_csv(text: &str) -> Result<Vec<(String, SecretFields)>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|error| error.to_string())?.clone();
    let column = |wanted: &str| headers.iter().position(|header| header.trim() == wanted);
    let name = column("name").ok_or("the header line has no \"name\" column")?;
    let [url, username, password, note] = ["url", "username", "password", "note"].map(column);
    let mut entries = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(|error| format!("record {}: {error}", line + 1))?;
        let get = |index: Option<usize>| {
            index
                .and_then(|index| record.get(index))
                .and_then(non_empty)
        };
        entries.push((
            record.get(name).unwrap_or_default().to_string(),
            SecretFields {
                username: get(username),
                password: get(password),
                url: get(url),
                note: get(note),
            },
        ));
    }
    Ok(entries)
}

#[derive(Deserialize)]
struct BitwardenExport {
    #[serde(default)]
    encrypted: bool,
    items: Vec<BitwardenItem>,
}

#[derive(Deserialize)]
struct BitwardenItem {
    #[serde(rename = "type")]
    kind: u8,
    name: String,
    notes: Option<String>,
    login: Option<BitwardenLogin>,
}

#[derive(Deserialize)]
struct BitwardenLogin {
    username: Option<String>,
    password: Option<String>,
    #[serde(default)]
    uris: Vec<BitwardenUri>,
}

#[derive(Deserialize)]
struct BitwardenUri {
    uri: Option<String>,
}

/// Bitwarden's unencrypted JSON export: logins (type 1) and secure notes
/// (type 2); cards and identities have no place in our fields and are
/// refused rather than silently dropped.
fn parse_bitwarden(text: &str) -> Result<Vec<(String, SecretFields)>, String> {
    let export: BitwardenExport = serde_json::from_str(text)
        .map_err(|error| format!("not a Bitwarden JSON export: {error}"))?;
    if export.encrypted {
        return Err("this is an encrypted Bitwarden export; export it unencrypted".into());
    }
    export
        .items
        .into_iter()
        .map(|item| {
            if !matches!(item.kind, 1 | 2) {
                return Err(format!(
                    "{:?} is a card or identity item (type {}), which has no password fields",
                    item.name, item.kind
                ));
            }
            let login = item.login;
            let (username, password, url) = match login {
                Some(login) => (
                    login.username.as_deref().and_then(non_empty),
                    login.password.as_deref().and_then(non_empty),
                    login
                        .uris
                        .into_iter()
                        .find_map(|uri| uri.uri.as_deref().and_then(non_empty)),
                ),
                None => (None, None, None),
            };
            Ok((
                item.name,
                SecretFields {
                    username,
                    password,
                    url,
                    note: item.notes.as_deref().and_then(non_empty),
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_is_read_by_header_name_with_quoting() {
        let text = "username,name,password,url,note\nalice,mail,\"p,w\"\"1\",,\"two\nlines\"\nbob,bank,x,https://bank,\n";
        let entries = parse_csv(text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0, "mail");
        assert_eq!(entries[0].1.password.as_deref(), Some("p,w\"1"));
        assert_eq!(entries[0].1.url, None);
        assert_eq!(entries[0].1.note.as_deref(), Some("two\nlines"));
        assert_eq!(entries[1].1.url.as_deref(), Some("https://bank"));
    }

    #[test]
    fn csv_without_a_name_column_or_with_ragged_rows_is_refused() {
        assert!(parse_csv("url,password\nx,y\n").is_err());
        assert!(parse_csv("name,password\nx,y,z\n").is_err());
    }

    #[test]
    fn what_export_writes_import_reads_back() {
        let text = "name,url,username,password,note\nmail,,alice,\"p,w\"\"1\",\"two\nlines\"\n";
        let entries = parse_csv(text).unwrap();
        assert_eq!(entries[0].1.username.as_deref(), Some("alice"));
        assert_eq!(entries[0].1.password.as_deref(), Some("p,w\"1"));
    }

    #[test]
    fn bitwarden_logins_and_notes_are_read_and_cards_refused() {
        let text = r#"{"encrypted":false,"folders":[],"items":[
            {"id":"1","type":1,"name":"mail","notes":"n","favorite":false,
             "login":{"username":"alice","password":"pw","totp":null,
                      "uris":[{"match":null,"uri":"https://mail.example"}]}},
            {"id":"2","type":2,"name":"wifi code","notes":"1234","secureNote":{"type":0}}]}"#;
        let entries = parse_bitwarden(text).unwrap();
        assert_eq!(entries[0].1.url.as_deref(), Some("https://mail.example"));
        assert_eq!(entries[0].1.password.as_deref(), Some("pw"));
        assert_eq!(entries[1].1.note.as_deref(), Some("1234"));
        assert_eq!(entries[1].1.password, None);
        let card = r#"{"items":[{"type":3,"name":"visa","notes":null,"card":{}}]}"#;
        assert!(parse_bitwarden(card).is_err());
        assert!(parse_bitwarden(r#"{"encrypted":true,"items":[]}"#).is_err());
    }

    #[test]
    fn a_duplicate_or_bad_name_stores_nothing() {
        let fields = SecretFields::default;
        let twice = vec![("a".to_string(), fields()), ("a".to_string(), fields())];
        assert_eq!(crate::exit::code_for(&check(&twice).unwrap_err()), 2);
        let bad = vec![(String::new(), fields())];
        assert_eq!(crate::exit::code_for(&check(&bad).unwrap_err()), 2);
    }
}
