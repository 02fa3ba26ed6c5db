//! `export --format csv|json [--out FILE]`: every secret of ours,
//! decrypted here, in the usual password-manager formats (SPEC §5). The
//! file is created with mode 0600 and never replaces an existing one.

use crate::args::{ExportArgs, ExportFormat};
use crate::exit::{ExitCode, Failure};
use crate::identity::unlock;
use crate::session::Session;
use anyhow::{Context, Result};
use serde_json::json;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use vault::crypto::SecretFields;
use vault::protocol::{Request, Response};

/// The csv columns, in order, shared with `import`.
pub const CSV_COLUMNS: [&str; 5] = ["name", "url", "username", "password", "note"];

/// Reads (linearizably) and decrypts each secret, then writes them all at
/// once: a failure part-way leaves no partial file.
pub async fn run(session: &Session, args: &ExportArgs) -> Result<()> {
    let keyring = unlock(session, false).await?;
    let response = session.call(Request::List { stale: false }).await?;
    let Response::Secrets(names) = response else {
        anyhow::bail!("unexpected answer to list: {response:?}");
    };
    let mut secrets = Vec::with_capacity(names.len());
    for summary in &names {
        let (record, fields) = super::get_secret::read(
            session,
            &keyring,
            &session.owner,
            &summary.name,
            None,
            false,
            None,
        )
        .await
        .with_context(|| format!("cannot export {}", summary.name))?;
        secrets.push((record.name, record.version, fields));
    }
    let bytes = match args.format {
        ExportFormat::Csv => csv_bytes(&secrets)?,
        ExportFormat::Json => json_bytes(&secrets),
    };
    match &args.out {
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&bytes)?;
            stdout.flush()?;
        }
        Some(path) => {
            write_private(path, &bytes)?;
            crate::render::print(
                session.json,
                json!({ "file": path.display().to_string(), "secrets": secrets.len() }),
                || format!("exported {} secrets to {}", secrets.len(), path.display()),
            );
        }
    }
    Ok(())
}

fn csv_bytes(secrets: &[(String, u64, SecretFields)]) -> Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(CSV_COLUMNS)?;
    for (name, _, fields) in secrets {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        writer.write_record([
            name.clone(),
            text(&fields.url),
            text(&fields.username),
            text(&fields.password),
            text(&fields.note),
        ])?;
    }
    writer
        .into_inner()
        .map_err(|error| anyhow::anyhow!("cannot write csv: {error}"))
}

fn json_bytes(secrets: &[(String, u64, SecretFields)]) -> Vec<u8> {
    let rows: Vec<_> = secrets
        .iter()
        .map(|(name, version, fields)| {
            json!({
                "name": name,
                "username": fields.username,
                "password": fields.password,
                "url": fields.url,
                "note": fields.note,
                "version": version,
            })
        })
        .collect();
    let mut bytes = json!({ "secrets": rows }).to_string().into_bytes();
    bytes.push(b'\n');
    bytes
}

/// Creates `path` with mode 0600 (whatever the umask), refusing to replace
/// an existing file, writes `bytes` and syncs them.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::AlreadyExists => anyhow::Error::new(Failure::new(
                ExitCode::Conflict,
                format!(
                    "{} already exists: export never replaces a file",
                    path.display()
                ),
            )),
            _ => anyhow::Error::new(error).context(format!("cannot create {}", path.display())),
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> Vec<(String, u64, SecretFields)> {
        vec![(
            "mail".to_string(),
            3,
            SecretFields {
                username: Some("alice".into()),
                password: Some("p,w\"1".into()),
                url: None,
                note: Some("two\nlines".into()),
            },
        )]
    }

    #[test]
    fn csv_has_the_header_and_quotes_what_needs_it() {
        let text = String::from_utf8(csv_bytes(&sample()).unwrap()).unwrap();
        assert_eq!(
            text,
            "name,url,username,password,note\nmail,,alice,\"p,w\"\"1\",\"two\nlines\"\n"
        );
    }

    #[test]
    fn json_holds_every_field_and_the_version() {
        let value: serde_json::Value = serde_json::from_slice(&json_bytes(&sample())).unwrap();
        assert_eq!(value["secrets"][0]["password"], "p,w\"1");
        assert_eq!(value["secrets"][0]["url"], serde_json::Value::Null);
        assert_eq!(value["secrets"][0]["version"], 3);
    }

    #[test]
    fn the_file_is_owner_only_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        write_private(&path, b"x").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = write_private(&path, b"y").unwrap_err();
        assert_eq!(crate::exit::code_for(&again), 4);
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
    }
}
