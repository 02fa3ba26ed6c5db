//! The first check on anything a node answers to a read: is it the record
//! that was asked for? A node (or someone holding a node certificate) could
//! otherwise answer with another secret's row, an old version, or a wrapped
//! key slipped into a read of our own secret.

use super::CryptoError;
use crate::protocol::SecretRecord;

/// What a read asked for.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    /// Whose secret: the reader itself, or the owner named with `--owner`.
    pub owner: &'a str,
    /// The secret's name.
    pub name: &'a str,
    /// The version asked for, if one was (`None`: the current one, whose
    /// number the associated data then binds).
    pub version: Option<u64>,
    /// The identity reading.
    pub reader: &'a str,
}

/// Refuses `record` unless it is for the owner, name and version asked,
/// carries a wrapped key exactly when it is another owner's secret, and
/// has a version at all (versions start at 1).
pub fn check_reply(asked: &Asked<'_>, record: &SecretRecord) -> Result<(), CryptoError> {
    if record.owner != asked.owner {
        return Err(CryptoError::WrongReply(format!(
            "a secret of {} where one of {} was asked for",
            record.owner, asked.owner
        )));
    }
    if record.name != asked.name {
        return Err(CryptoError::WrongReply(format!(
            "the secret {:?} where {:?} was asked for",
            record.name, asked.name
        )));
    }
    if record.version == 0
        || asked
            .version
            .is_some_and(|version| version != record.version)
    {
        return Err(CryptoError::WrongReply(format!(
            "version {} of {:?} where version {} was asked for",
            record.version,
            asked.name,
            asked
                .version
                .map_or_else(|| "1 or later".to_string(), |v| v.to_string())
        )));
    }
    let own = asked.owner == asked.reader;
    match (own, record.wrapped_key.is_some()) {
        (true, true) => Err(CryptoError::WrongReply(format!(
            "a key wrapped for sharing with our own secret {:?}",
            asked.name
        ))),
        (false, false) => Err(CryptoError::NotShared(asked.owner.to_string())),
        _ => Ok(()),
    }
}
