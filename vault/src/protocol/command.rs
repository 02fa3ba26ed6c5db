//! What goes into the Raft log and into `StateMachine::query`, and how a node
//! turns a client request into one of them.

use super::{
    ClientRequest, ClientSession, Decision, Grant, IdentityRecord, Request, SealedSecret,
    VaultError, WrappedKey,
};
use crate::validate::{validate_ciphertext, validate_identity, validate_name};
use consensus::raft::NodeId;
use serde::{Deserialize, Serialize};

/// The command format this build writes; [`VaultCommand`] variants are
/// numbered after it. A log written by an older build stays readable because
/// variants and operations are only ever appended, never reordered.
pub const COMMAND_FORMAT: u32 = 1;

/// One vault command as stored in the Raft log (postcard-encoded).
///
/// The outer enum is the format version: a future change of the envelope adds
/// `V2` and keeps `V1` decodable. New operations are appended to
/// [`Operation`], which postcard numbers by position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VaultCommand {
    /// Format 1.
    V1 {
        /// The client's exactly-once session, if it sent one.
        session: Option<ClientSession>,
        /// The authenticated identity that sent the request (`client:alice`),
        /// taken from its certificate by the node, never from the request.
        owner: String,
        /// Milliseconds since the Unix epoch on the proposing node's clock.
        /// It becomes `created`/`updated`: the state machine never reads its
        /// own clock, so every replica stores the same value.
        proposed_at_ms: u64,
        /// What to do.
        op: Operation,
    },
}

/// The state change a [`VaultCommand`] asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operation {
    /// `add-secret`: insert, or replace with version + 1 when `update`.
    Put {
        /// The secret's name.
        name: String,
        /// The encrypted envelope.
        sealed: SealedSecret,
        /// Replace an existing secret instead of failing.
        update: bool,
        /// The version the envelope is sealed as; any other outcome is
        /// refused as a conflict.
        version: u64,
    },
    /// `share`: record (or replace) a grant to `grantee`.
    Share {
        /// The owner's secret.
        name: String,
        /// Who may read it.
        grantee: String,
        /// The data key wrapped for the grantee.
        wrapped_key: WrappedKey,
    },
    /// `unshare`: remove a grant, store the next version under a new data
    /// key and replace every other grant with one for the new key.
    Unshare {
        /// The owner's secret.
        name: String,
        /// Whose grant to remove.
        grantee: String,
        /// The next version, under a new data key.
        sealed: SealedSecret,
        /// Its version (current + 1).
        version: u64,
        /// The other grantees' new wrapped keys (exactly the other grants).
        grants: Vec<Grant>,
    },
    /// Record the owner's identity record (first use, or `replace`).
    PublishKey {
        /// The record.
        record: IdentityRecord,
        /// Replace a different record already published.
        replace: bool,
    },
    /// The coordinator's durable decision for a two-phase-commit delete of
    /// the owner's secret `name` at `version` (SPEC §6). The first decision
    /// for a `tx` in the log wins; later ones change nothing.
    Decide {
        /// The transaction id.
        tx: String,
        /// The owner's secret.
        name: String,
        /// The version every participant voted on.
        version: u64,
        /// Commit deletes the secret (if still at `version`); abort keeps it.
        decision: Decision,
        /// The nodes whose votes the coordinator asked for (the members of
        /// the configuration in force when it started the vote). A commit
        /// applies only if they are exactly the members of the
        /// configuration in force at this entry's log index: otherwise a
        /// member had no say (it joined while the votes were out) and the
        /// commit is applied as an abort, on every node alike (SPEC §13).
        /// Not checked for an abort.
        participants: Vec<NodeId>,
    },
    /// The leader's pruning of settled two-phase-commit state (see
    /// `vault/src/store/pruning.rs` for the rule): forgets the decisions
    /// recorded at or below log index `through`, which every member held
    /// in its log a pruning period before. Proposed by nodes only; its
    /// `owner` is empty and not checked.
    Prune {
        /// The highest log index whose decisions go.
        through: u64,
    },
}

/// A read-only question for `StateMachine::query` (postcard-encoded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VaultQuery {
    /// One secret readable by `caller`.
    Secret {
        /// The authenticated reader.
        caller: String,
        /// Whose secret; `None` is the caller's own.
        owner: Option<String>,
        /// The secret's name.
        name: String,
    },
    /// The caller's secrets.
    List {
        /// The authenticated reader.
        caller: String,
    },
    /// Version `version` of one secret readable by `caller`.
    Version {
        /// The authenticated reader.
        caller: String,
        /// Whose secret; `None` is the caller's own.
        owner: Option<String>,
        /// The secret's name.
        name: String,
        /// The version asked for.
        version: u64,
    },
    /// The versions kept of one secret readable by `caller`.
    History {
        /// The authenticated reader.
        caller: String,
        /// Whose secret; `None` is the caller's own.
        owner: Option<String>,
        /// The secret's name.
        name: String,
    },
    /// The secrets shared with `caller`.
    Shared {
        /// The authenticated reader.
        caller: String,
    },
    /// An identity's published record.
    PublicKey {
        /// Whose record.
        identity: String,
    },
    /// The grantees of one of the caller's secrets.
    Grants {
        /// The authenticated owner.
        caller: String,
        /// The secret's name.
        name: String,
    },
    /// What the state machine remembers of `caller`'s session `client_id`
    /// (answered with [`super::Response::Session`]). Sessions are keyed by
    /// owner, so a caller only ever sees its own.
    Session {
        /// The authenticated caller, the session's owner.
        caller: String,
        /// The session's client id.
        client_id: u64,
    },
}

/// What a node does with a client request, as decided by [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Propose these command bytes to Raft; the state machine's response for
    /// the entry is the [`super::Reply`] to send back.
    Propose(Vec<u8>),
    /// Run this query (bytes for `StateMachine::query`) after a ReadIndex
    /// round, or locally when `stale`.
    Read {
        /// The encoded [`VaultQuery`].
        query: Vec<u8>,
        /// Serve from local state without confirming leadership.
        stale: bool,
    },
    /// The node runtime handles it itself: status, leadership transfer and
    /// the two-phase-commit delete.
    Runtime(Request),
}

/// Validates a client request from `identity` (the certificate's identity,
/// `client:<name>` or `admin:<name>`) and decides how the node serves it.
///
/// Everything SPEC §5 refuses is refused here, before anything is proposed.
/// `now_ms` is the node's clock, carried in the command so that every replica
/// stores the same timestamps.
pub fn plan(identity: &str, request: ClientRequest, now_ms: u64) -> Result<Plan, VaultError> {
    validate_identity(identity)?;
    if request.request.requires_admin() && !identity.starts_with("admin:") {
        return Err(VaultError::PermissionDenied(
            "only an admin identity may run this command".into(),
        ));
    }
    match request.request {
        write @ (Request::AddSecret { .. }
        | Request::Share { .. }
        | Request::Unshare { .. }
        | Request::PublishKey { .. }) => {
            let command = VaultCommand::V1 {
                session: request.session,
                owner: identity.to_string(),
                proposed_at_ms: now_ms,
                op: operation(identity, write)?,
            };
            Ok(Plan::Propose(super::encode(&command)))
        }
        Request::Delete { name } => {
            validate_name(&name)?;
            Ok(Plan::Runtime(Request::Delete { name }))
        }
        runtime @ (Request::Status
        | Request::TransferLeader { .. }
        | Request::MemberList
        | Request::MemberAdd { .. }
        | Request::MemberRemove { .. }
        | Request::SnapshotSave) => Ok(Plan::Runtime(runtime)),
        read => read_plan(identity, read),
    }
}

/// The validated operation for a write request.
fn operation(identity: &str, request: Request) -> Result<Operation, VaultError> {
    match request {
        Request::AddSecret {
            name,
            sealed,
            update,
            version,
        } => {
            validate_name(&name)?;
            validate_ciphertext(&sealed.0)?;
            Ok(Operation::Put {
                name,
                sealed,
                update,
                version,
            })
        }
        Request::Share {
            name,
            with,
            wrapped_key,
        } => {
            validate_name(&name)?;
            validate_grantee(identity, &with)?;
            validate_ciphertext(&wrapped_key.0)?;
            Ok(Operation::Share {
                name,
                grantee: with,
                wrapped_key,
            })
        }
        Request::Unshare {
            name,
            with,
            sealed,
            version,
            grants,
        } => {
            validate_name(&name)?;
            validate_grantee(identity, &with)?;
            validate_ciphertext(&sealed.0)?;
            validate_grants(identity, &with, &grants)?;
            Ok(Operation::Unshare {
                name,
                grantee: with,
                sealed,
                version,
                grants,
            })
        }
        Request::PublishKey { record, replace } => Ok(Operation::PublishKey { record, replace }),
        _ => Err(VaultError::Internal("this request is not a write".into())),
    }
}

/// The validated query for a read request.
fn read_plan(identity: &str, request: Request) -> Result<Plan, VaultError> {
    let caller = identity.to_string();
    let (query, stale) = match request {
        Request::GetSecret { owner, name, stale } => {
            validate_name(&name)?;
            if let Some(owner) = &owner {
                validate_identity(owner)?;
            }
            (
                VaultQuery::Secret {
                    caller,
                    owner,
                    name,
                },
                stale,
            )
        }
        Request::List { stale } => (VaultQuery::List { caller }, stale),
        Request::GetVersion {
            owner,
            name,
            version,
            stale,
        } => {
            validate_name(&name)?;
            if let Some(owner) = &owner {
                validate_identity(owner)?;
            }
            (
                VaultQuery::Version {
                    caller,
                    owner,
                    name,
                    version,
                },
                stale,
            )
        }
        Request::History { owner, name, stale } => {
            validate_name(&name)?;
            if let Some(owner) = &owner {
                validate_identity(owner)?;
            }
            (
                VaultQuery::History {
                    caller,
                    owner,
                    name,
                },
                stale,
            )
        }
        Request::ListShared { stale } => (VaultQuery::Shared { caller }, stale),
        Request::PublicKey {
            identity: whose,
            stale,
        } => {
            validate_identity(&whose)?;
            (VaultQuery::PublicKey { identity: whose }, stale)
        }
        Request::Grants { name } => {
            validate_name(&name)?;
            (VaultQuery::Grants { caller, name }, false)
        }
        _ => return Err(VaultError::Internal("this request is not a read".into())),
    };
    Ok(Plan::Read {
        query: super::encode(&query),
        stale,
    })
}

/// The command bytes that make a two-phase-commit decision durable: the
/// coordinator proposes them for `owner`'s secret `name` at `version`.
///
/// `session` is the client's session of the `delete` that started the
/// transaction (none for a recovery abort): the state machine stores the
/// decision as that request's answer, so a retry of the delete gets it
/// instead of running a second transaction.
#[allow(clippy::too_many_arguments)]
pub fn decision_command(
    session: Option<ClientSession>,
    owner: &str,
    tx: &str,
    name: &str,
    version: u64,
    decision: Decision,
    participants: &[NodeId],
    now_ms: u64,
) -> Vec<u8> {
    super::encode(&VaultCommand::V1 {
        session,
        owner: owner.to_string(),
        proposed_at_ms: now_ms,
        op: Operation::Decide {
            tx: tx.to_string(),
            name: name.to_string(),
            version,
            decision,
            participants: participants.to_vec(),
        },
    })
}

/// The grants carried by an unshare: valid, distinct, not the owner, not
/// the grantee being removed, and each wrapped key within the size limit.
pub(crate) fn validate_grants(
    owner: &str,
    removed: &str,
    grants: &[Grant],
) -> Result<(), VaultError> {
    let mut seen = std::collections::BTreeSet::new();
    for grant in grants {
        validate_grantee(owner, &grant.grantee)?;
        validate_ciphertext(&grant.wrapped_key.0)?;
        if grant.grantee == removed || !seen.insert(grant.grantee.as_str()) {
            return Err(VaultError::Invalid(format!(
                "the grants of an unshare list {} twice or keep the grantee removed",
                grant.grantee
            )));
        }
    }
    Ok(())
}

/// The command bytes of the leader's prune of two-phase-commit decisions
/// recorded at or below log index `through`.
pub fn prune_command(through: u64, now_ms: u64) -> Vec<u8> {
    super::encode(&VaultCommand::V1 {
        session: None,
        owner: String::new(),
        proposed_at_ms: now_ms,
        op: Operation::Prune { through },
    })
}

/// A grantee is another valid identity: sharing with yourself means nothing.
pub(crate) fn validate_grantee(owner: &str, grantee: &str) -> Result<(), VaultError> {
    validate_identity(grantee)?;
    if grantee == owner {
        return Err(VaultError::Invalid(
            "a secret cannot be shared with its own owner".into(),
        ));
    }
    Ok(())
}
