//! Read-only questions against the replicated tables, with the
//! authorization rules of SPEC §4 and §5: a caller reads its own secrets and
//! the secrets other owners shared with it, and lists only its own.

use super::schema::from_sql;
use crate::protocol::{
    decode, IdentityRecord, Reply, Response, SealedSecret, SecretRecord, SecretSummary,
    SessionRecord, VaultError, VaultQuery, WrappedKey,
};
use rusqlite::{params, Connection, OptionalExtension};

/// Answers an encoded [`VaultQuery`] with an encoded-ready [`Reply`].
pub(crate) fn run(connection: &Connection, bytes: &[u8]) -> rusqlite::Result<Reply> {
    let Ok(query) = decode::<VaultQuery>(bytes) else {
        return Ok(Err(VaultError::Invalid(
            "the query is not one this build understands".into(),
        )));
    };
    match query {
        VaultQuery::Secret {
            caller,
            owner,
            name,
        } => match owner {
            Some(owner) if owner != caller => shared_secret(connection, &caller, &owner, &name),
            _ => own_secret(connection, &caller, &name),
        },
        VaultQuery::List { caller } => list(connection, &caller),
        VaultQuery::PublicKey { identity } => public_key(connection, &identity),
        VaultQuery::Grants { caller, name } => grants(connection, &caller, &name),
        VaultQuery::Session { caller, client_id } => session(connection, &caller, client_id),
    }
}

/// The caller's own session `client_id`: its last sequence number and the
/// answer stored for it. A stored answer that does not decode (it was
/// written by this build's apply, so it should) reads as an internal error
/// rather than as "nothing remembered", which could make a retry run twice.
fn session(connection: &Connection, caller: &str, client_id: u64) -> rusqlite::Result<Reply> {
    let Some((seq, reply)) = super::apply::stored_session(connection, caller, client_id)? else {
        return Ok(Ok(Response::Session(None)));
    };
    match decode::<Reply>(&reply) {
        Ok(reply) => Ok(Ok(Response::Session(Some(SessionRecord {
            seq,
            reply: Box::new(reply),
        })))),
        Err(error) => Ok(Err(VaultError::Internal(format!(
            "the stored answer of a client session does not decode: {error}"
        )))),
    }
}

fn own_secret(connection: &Connection, caller: &str, name: &str) -> rusqlite::Result<Reply> {
    let row: Option<(i64, Vec<u8>)> = connection
        .prepare_cached("SELECT version, ciphertext FROM secrets WHERE owner = ?1 AND name = ?2")?
        .query_row(params![caller, name], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    Ok(match row {
        Some((version, ciphertext)) => Ok(Response::Secret(SecretRecord {
            owner: caller.to_string(),
            name: name.to_string(),
            version: from_sql(version),
            sealed: SealedSecret(ciphertext),
            wrapped_key: None,
        })),
        None => Err(VaultError::NotFound(format!(
            "you have no secret named {name:?}"
        ))),
    })
}

/// Whether the secret exists is not revealed to someone it is not shared
/// with: both cases get the same "not shared with you" answer.
fn shared_secret(
    connection: &Connection,
    caller: &str,
    owner: &str,
    name: &str,
) -> rusqlite::Result<Reply> {
    let row: Option<(i64, Vec<u8>, Vec<u8>)> = connection
        .prepare_cached(
            "SELECT s.version, s.ciphertext, h.wrapped_key
             FROM secrets s JOIN shares h ON h.owner = s.owner AND h.name = s.name
             WHERE s.owner = ?1 AND s.name = ?2 AND h.grantee = ?3",
        )?
        .query_row(params![owner, name, caller], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    Ok(match row {
        Some((version, ciphertext, wrapped_key)) => Ok(Response::Secret(SecretRecord {
            owner: owner.to_string(),
            name: name.to_string(),
            version: from_sql(version),
            sealed: SealedSecret(ciphertext),
            wrapped_key: Some(WrappedKey(wrapped_key)),
        })),
        None => Err(VaultError::PermissionDenied(format!(
            "{owner} has not shared a secret named {name:?} with you"
        ))),
    })
}

fn list(connection: &Connection, caller: &str) -> rusqlite::Result<Reply> {
    let mut statement = connection
        .prepare_cached("SELECT name, version FROM secrets WHERE owner = ?1 ORDER BY name")?;
    let rows = statement.query_map([caller], |row| {
        Ok(SecretSummary {
            name: row.get(0)?,
            version: from_sql(row.get(1)?),
        })
    })?;
    Ok(Ok(Response::Secrets(rows.collect::<Result<_, _>>()?)))
}

fn public_key(connection: &Connection, identity: &str) -> rusqlite::Result<Reply> {
    let bytes: Option<Vec<u8>> = connection
        .prepare_cached("SELECT record FROM public_keys WHERE identity = ?1")?
        .query_row([identity], |row| row.get(0))
        .optional()?;
    Ok(match bytes.map(|bytes| decode::<IdentityRecord>(&bytes)) {
        Some(Ok(record)) => Ok(Response::PublicKey {
            identity: identity.to_string(),
            record,
        }),
        Some(Err(_)) => Err(VaultError::Internal(format!(
            "the stored identity record of {identity} is damaged"
        ))),
        None => Err(VaultError::NotFound(format!(
            "{identity} has not published a public key yet"
        ))),
    })
}

/// Only the owner learns who a secret is shared with; a name it does not
/// have is "not found".
fn grants(connection: &Connection, caller: &str, name: &str) -> rusqlite::Result<Reply> {
    let exists = connection
        .prepare_cached("SELECT 1 FROM secrets WHERE owner = ?1 AND name = ?2")?
        .exists(params![caller, name])?;
    if !exists {
        return Ok(Err(VaultError::NotFound(format!(
            "you have no secret named {name:?}"
        ))));
    }
    let mut statement = connection.prepare_cached(
        "SELECT grantee FROM shares WHERE owner = ?1 AND name = ?2 ORDER BY grantee",
    )?;
    let rows = statement.query_map(params![caller, name], |row| row.get(0))?;
    Ok(Ok(Response::Grants {
        name: name.to_string(),
        grantees: rows.collect::<Result<_, _>>()?,
    }))
}
