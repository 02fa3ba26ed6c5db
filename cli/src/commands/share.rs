//! `share` and `unshare` (SPEC §4, §5): the grantee's key is checked
//! against the pin file and its fingerprint shown; the wrapped key is
//! authenticated as ours; `unshare` re-keys the secret so the former
//! grantee's key opens no later version.

use crate::args::ShareArgs;
use crate::exit::Failure;
use crate::identity::{crypto_failure, pinned_key, unlock};
use crate::session::{qualify_identity, Session};
use anyhow::Result;
use serde_json::json;
use vault::protocol::{Grant, Request, Response, SecretRecord};

/// `share NAME --with USER`.
pub async fn share(session: &Session, args: &ShareArgs) -> Result<()> {
    let grantee = qualify_identity(&args.with);
    let keyring = unlock(session, false).await?;
    let (public_key, fingerprint) =
        pinned_key(session, &grantee, args.accept_key.as_deref(), false).await?;
    let record = session
        .read_secret(&session.owner, &args.name, None, false)
        .await?;
    let wrapped_key = keyring
        .share(&record, &grantee, public_key)
        .map_err(crypto_failure)?;
    session
        .call(Request::Share {
            name: args.name.clone(),
            with: grantee.clone(),
            wrapped_key,
        })
        .await?;
    crate::render::print(
        session.json,
        json!({ "ok": true, "name": args.name, "with": grantee, "fingerprint": fingerprint }),
        || {
            format!(
                "{} shared with {grantee} (key fingerprint {fingerprint})",
                args.name
            )
        },
    );
    Ok(())
}

/// `unshare NAME --with USER`: one log entry removes the grant, stores the
/// next version under a new data key and re-wraps it for every other
/// grantee (each checked against its pin). A grant made meanwhile makes the
/// node refuse it as a conflict rather than leave anyone with a stale key.
pub async fn unshare(session: &Session, args: &ShareArgs) -> Result<()> {
    let grantee = qualify_identity(&args.with);
    let keyring = unlock(session, false).await?;
    let current = session
        .read_secret(&session.owner, &args.name, None, false)
        .await?;
    let Response::Grants { name, grantees } = session
        .call(Request::Grants {
            name: args.name.clone(),
        })
        .await?
    else {
        anyhow::bail!("unexpected answer to a grants lookup");
    };
    if name != args.name {
        return Err(crypto_failure(vault::crypto::CryptoError::WrongReply(
            format!("the grants of {name:?} where {:?} was asked for", args.name),
        )));
    }
    if !grantees.contains(&grantee) {
        return Err(Failure::new(
            crate::exit::ExitCode::NotFound,
            format!("your secret {:?} is not shared with {grantee}", args.name),
        )
        .into());
    }
    let sealed = keyring.rekey(&current).map_err(crypto_failure)?;
    let next = SecretRecord {
        version: current.version + 1,
        sealed: sealed.clone(),
        ..current
    };
    let mut grants = Vec::new();
    for other in grantees.iter().filter(|other| **other != grantee) {
        let (public_key, _) = pinned_key(session, other, args.accept_key.as_deref(), false).await?;
        grants.push(Grant {
            grantee: other.clone(),
            wrapped_key: keyring
                .share(&next, other, public_key)
                .map_err(crypto_failure)?,
        });
    }
    let kept = grants.len();
    session
        .call(Request::Unshare {
            name: args.name.clone(),
            with: grantee.clone(),
            sealed,
            version: next.version,
            grants,
        })
        .await?;
    crate::render::print(
        session.json,
        json!({ "ok": true, "name": args.name, "version": next.version, "regranted": kept }),
        || {
            format!(
                "{} no longer shared with {grantee}; re-keyed as version {} ({kept} other grant(s) re-wrapped)",
                args.name, next.version
            )
        },
    );
    Ok(())
}
