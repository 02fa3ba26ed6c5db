//! Read-only questions against the replicated tables, with the
//! authorization rules of SPEC §4 and §5: a caller reads its own secrets and
//! the secrets other owners shared with it, and lists only its own.

use super::schema::{from_sql, to_sql};
use crate::protocol::{
    decode, IdentityRecord, Reply, Response, SealedSecret, SecretRecord, SecretSummary,
    SessionRecord, SharedSummary, VaultError, VaultQuery, VersionSummary, WrappedKey,
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
        VaultQuery::Version {
            caller,
            owner,
            name,
            version,
        } => {
            let owner = owner.unwrap_or_else(|| caller.clone());
            secret_version(connection, &caller, &owner, &name, version)
        }
        VaultQuery::History {
            caller,
            owner,
            name,
        } => {
            let owner = owner.unwrap_or_else(|| caller.clone());
            history(connection, &caller, &owner, &name)
        }
        VaultQuery::Shared { caller } => shared_with(connection, &caller),
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
    let Some((seq, reply)) = bus::sessions::stored(connection, caller, client_id)? else {
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

/// Whether `caller` may read `owner`'s secret `name`, and with which
/// wrapped key: `Ok(None)` for the owner itself, `Ok(Some(key))` for a
/// grantee, an error reply otherwise. As for the current version, whether a
/// secret exists is not revealed to someone it is not shared with.
fn reader_key(
    connection: &Connection,
    caller: &str,
    owner: &str,
    name: &str,
) -> rusqlite::Result<Result<Option<WrappedKey>, VaultError>> {
    if caller == owner {
        let exists = connection
            .prepare_cached("SELECT 1 FROM secrets WHERE owner = ?1 AND name = ?2")?
            .exists(params![owner, name])?;
        return Ok(if exists {
            Ok(None)
        } else {
            Err(VaultError::NotFound(format!(
                "you have no secret named {name:?}"
            )))
        });
    }
    let key: Option<Vec<u8>> = connection
        .prepare_cached(
            "SELECT wrapped_key FROM shares WHERE owner = ?1 AND name = ?2 AND grantee = ?3",
        )?
        .query_row(params![owner, name, caller], |row| row.get(0))
        .optional()?;
    Ok(key.map(|key| Some(WrappedKey(key))).ok_or_else(|| {
        VaultError::PermissionDenied(format!(
            "{owner} has not shared a secret named {name:?} with you"
        ))
    }))
}

/// Version `version` of a secret: the current one or one still kept.
fn secret_version(
    connection: &Connection,
    caller: &str,
    owner: &str,
    name: &str,
    version: u64,
) -> rusqlite::Result<Reply> {
    let wrapped_key = match reader_key(connection, caller, owner, name)? {
        Ok(key) => key,
        Err(error) => return Ok(Err(error)),
    };
    let ciphertext: Option<Vec<u8>> = connection
        .prepare_cached(
            "SELECT ciphertext FROM secrets WHERE owner = ?1 AND name = ?2 AND version = ?3
             UNION ALL
             SELECT ciphertext FROM secret_versions WHERE owner = ?1 AND name = ?2 AND version = ?3",
        )?
        .query_row(params![owner, name, to_sql(version)], |row| row.get(0))
        .optional()?;
    Ok(match ciphertext {
        Some(ciphertext) => Ok(Response::Secret(SecretRecord {
            owner: owner.to_string(),
            name: name.to_string(),
            version,
            sealed: SealedSecret(ciphertext),
            wrapped_key,
        })),
        None => Err(VaultError::NotFound(format!(
            "version {version} of {name:?} is not kept (see `history {name}`)"
        ))),
    })
}

/// The versions kept of a secret, oldest first, the current one last.
fn history(
    connection: &Connection,
    caller: &str,
    owner: &str,
    name: &str,
) -> rusqlite::Result<Reply> {
    if let Err(error) = reader_key(connection, caller, owner, name)? {
        return Ok(Err(error));
    }
    let mut statement = connection.prepare_cached(
        "SELECT version, updated FROM secret_versions WHERE owner = ?1 AND name = ?2
         UNION ALL
         SELECT version, updated FROM secrets WHERE owner = ?1 AND name = ?2
         ORDER BY 1",
    )?;
    let rows = statement.query_map(params![owner, name], |row| {
        Ok(VersionSummary {
            version: from_sql(row.get(0)?),
            updated_ms: row.get(1)?,
        })
    })?;
    Ok(Ok(Response::History {
        name: name.to_string(),
        versions: rows.collect::<Result<_, _>>()?,
    }))
}

/// The secrets other owners shared with `caller`.
fn shared_with(connection: &Connection, caller: &str) -> rusqlite::Result<Reply> {
    let mut statement = connection.prepare_cached(
        "SELECT s.owner, s.name, s.version
         FROM shares h JOIN secrets s ON s.owner = h.owner AND s.name = h.name
         WHERE h.grantee = ?1 ORDER BY s.owner, s.name",
    )?;
    let rows = statement.query_map([caller], |row| {
        Ok(SharedSummary {
            owner: row.get(0)?,
            name: row.get(1)?,
            version: from_sql(row.get(2)?),
        })
    })?;
    Ok(Ok(Response::SharedSecrets(rows.collect::<Result<_, _>>()?)))
}
