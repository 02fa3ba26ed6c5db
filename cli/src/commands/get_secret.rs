//! `get-secret NAME [--field F] [--version N] [--owner USER]`: read a
//! secret (ours, or one shared with us) and decrypt it here.

use crate::args::GetSecretArgs;
use crate::exit::{ExitCode, Failure};
use crate::identity::{crypto_failure, pinned_key, unlock};
use crate::session::{qualify_identity, Session};
use anyhow::Result;
use serde_json::json;
use vault::crypto::{CryptoError, Keyring, SecretFields};
use vault::protocol::SecretRecord;

/// Our passphrase is checked first; the record must be the one asked for
/// (owner, name, version), and a shared one must open under the owner's
/// pinned key.
pub async fn run(session: &Session, args: &GetSecretArgs) -> Result<()> {
    crate::session::check_name(&args.name)?;
    let field = args.field.as_deref().map(field_index).transpose()?;
    let keyring = unlock(session, args.stale).await?;
    let owner = args
        .owner
        .as_deref()
        .map_or_else(|| session.owner.clone(), qualify_identity);
    let (record, fields) = read(
        session,
        &keyring,
        &owner,
        &args.name,
        args.version,
        args.stale,
        args.accept_key.as_deref(),
    )
    .await?;
    let values = [
        ("username", &fields.username),
        ("password", &fields.password),
        ("url", &fields.url),
        ("note", &fields.note),
    ];
    if let Some(index) = field {
        let (label, value) = values[index];
        crate::render::print(session.json, json!({ label: value }), || {
            value.clone().unwrap_or_default()
        });
        return Ok(());
    }
    crate::render::print(
        session.json,
        json!({
            "name": record.name,
            "username": fields.username,
            "password": fields.password,
            "url": fields.url,
            "note": fields.note,
            "version": record.version,
        }),
        || {
            let mut text = format!("name:     {}\nversion:  {}\n", record.name, record.version);
            if owner != session.owner {
                text.push_str(&format!("owner:    {owner}\n"));
            }
            for (label, value) in values {
                if let Some(value) = value {
                    text.push_str(&format!("{label:<9} {value}\n"));
                }
            }
            text
        },
    );
    Ok(())
}

/// Reads and opens `owner`'s secret `name` (the current version, or
/// `version`): checked against what was asked, shared ones under the
/// owner's pinned key. Also what `export` uses for each secret.
pub async fn read(
    session: &Session,
    keyring: &Keyring,
    owner: &str,
    name: &str,
    version: Option<u64>,
    stale: bool,
    accept_key: Option<&str>,
) -> Result<(SecretRecord, SecretFields)> {
    let record = session.read_secret(owner, name, version, stale).await?;
    let owner_key = if owner == session.owner {
        None
    } else {
        Some(pinned_key(session, owner, accept_key, stale).await?.0)
    };
    let fields = keyring.open(&record, owner_key).map_err(|error| match error {
        CryptoError::Decrypt => Failure::new(
            ExitCode::Failure,
            "cannot decrypt the secret: the stored data was altered, or is not the secret asked for",
        )
        .into(),
        other => crypto_failure(other),
    })?;
    Ok((record, fields))
}

/// Which of username, password, url, note `--field` names.
fn field_index(field: &str) -> Result<usize> {
    match field {
        "username" => Ok(0),
        "password" => Ok(1),
        "url" => Ok(2),
        "note" => Ok(3),
        other => Err(Failure::new(
            ExitCode::Usage,
            format!("unknown field {other:?}: use username, password, url or note"),
        )
        .into()),
    }
}
