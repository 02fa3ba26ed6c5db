//! Who we are and who the others are, without believing a node: unlocking
//! our keys against our published identity record (publishing it on first
//! use), looking up another identity's key through the pin file, and
//! `whoami`.

use crate::exit::Failure;
use crate::pins::{Pinned, Pins};
use crate::session::{reply_to_result, Session};
use anyhow::{Context, Result};
use std::io::IsTerminal;
use std::path::Path;
use vault::crypto::{fingerprint, CryptoError, KdfParams, Keyring, Passphrase};
use vault::protocol::{IdentityRecord, Request, Response, VaultError};

/// The one sentence and exit code for a crypto error: a wrong passphrase
/// is said as such (SPEC §4), everything else is a refusal with exit 1.
pub fn crypto_failure(error: CryptoError) -> anyhow::Error {
    Failure::new(crate::exit::ExitCode::Failure, error.to_string()).into()
}

/// Reads the passphrase from `$VAULT_PASSPHRASE`, `--passphrase-file` or a
/// hidden prompt. Both of the first two given is a usage error (exit 2):
/// which one was meant cannot be guessed, and a silent choice hides a typo.
pub fn read_passphrase(file: Option<&Path>) -> Result<Passphrase> {
    let from_environment = std::env::var("VAULT_PASSPHRASE").ok();
    let text = match (from_environment, file) {
        (Some(_), Some(_)) => {
            return Err(Failure::new(
                crate::exit::ExitCode::Usage,
                "both VAULT_PASSPHRASE and --passphrase-file are given: use one",
            )
            .into())
        }
        (Some(value), None) => value,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the passphrase file {}", path.display()))?;
            text.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, None) if std::io::stdin().is_terminal() => {
            rpassword::prompt_password("Passphrase: ").context("cannot read the passphrase")?
        }
        (None, None) => anyhow::bail!(
            "no passphrase: set VAULT_PASSPHRASE, pass --passphrase-file, or run on a terminal"
        ),
    };
    let passphrase = Passphrase::new(text);
    anyhow::ensure!(!passphrase.is_empty(), "the passphrase is empty");
    Ok(passphrase)
}

/// The identity record `identity` published, or `None` if it has not; a
/// record for anyone else than asked is refused.
pub async fn published(
    session: &Session,
    identity: &str,
    stale: bool,
) -> Result<Option<IdentityRecord>> {
    let request = Request::PublicKey {
        identity: identity.to_string(),
        stale,
    };
    match session.client.call(request).await {
        Err(VaultError::NotFound(_)) => Ok(None),
        reply => match reply_to_result(reply)? {
            Response::PublicKey {
                identity: answered,
                record,
            } if answered == identity => Ok(Some(record)),
            other => Err(crypto_failure(CryptoError::WrongReply(format!(
                "{other:?} to a key lookup for {identity}"
            )))),
        },
    }
}

/// Our keys. The passphrase is checked against the published key-check
/// value before anything is sealed or published; an identity with nothing
/// published yet gets a random salt and publishes its record first (if
/// another first use won the race, its record is the one checked).
pub async fn unlock(session: &Session, stale: bool) -> Result<Keyring> {
    let passphrase = read_passphrase(session.passphrase_file.as_deref())?;
    let owner = &session.owner;
    if let Some(record) = published(session, owner, stale).await? {
        return Keyring::unlock(owner, &passphrase, &record, KdfParams::MINIMUM)
            .map_err(crypto_failure);
    }
    let keyring =
        Keyring::create(owner, &passphrase, session.config.kdf).map_err(crypto_failure)?;
    let publish = Request::PublishKey {
        record: keyring.record(),
        replace: false,
    };
    match session.client.call(publish).await {
        Err(VaultError::AlreadyExists(_)) => {
            let record = published(session, owner, false)
                .await?
                .context("the identity record vanished while it was being published")?;
            Keyring::unlock(owner, &passphrase, &record, KdfParams::MINIMUM).map_err(crypto_failure)
        }
        reply => {
            reply_to_result(reply)?;
            Ok(keyring)
        }
    }
}

/// `identity`'s public key, checked against the pin file: pinned on first
/// use, refused if it changed unless `accept` is the new fingerprint.
/// Returns the key and its fingerprint.
pub async fn pinned_key(
    session: &Session,
    identity: &str,
    accept: Option<&str>,
    stale: bool,
) -> Result<([u8; 32], String)> {
    let record = published(session, identity, stale).await?.ok_or_else(|| {
        Failure::new(
            crate::exit::ExitCode::NotFound,
            format!(
                "{identity} has not published a public key yet: they must run a command with their passphrase once (e.g. vault-cli whoami)"
            ),
        )
    })?;
    let shown = fingerprint(&record.public_key);
    let mut pins = Pins::load(&session.pins)?;
    match pins.check(identity, &shown, accept)? {
        Pinned::New => eprintln!("pinned the key of {identity} on first use: {shown}"),
        Pinned::Accepted => eprintln!("accepted the new key of {identity}: {shown}"),
        Pinned::Same => {}
    }
    Ok((record.public_key, shown))
}
