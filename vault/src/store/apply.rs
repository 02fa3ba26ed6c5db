//! Applying one committed command: exactly-once bookkeeping, then the
//! operation. Everything here runs inside the batch's transaction and reads
//! nothing but the command and the replicated tables, so every replica
//! computes the same effects and the same response.

use super::schema::{from_sql, to_sql};
use crate::protocol::{
    decode, encode, ClientSession, Decision, Grant, IdentityRecord, Operation, Reply, Response,
    SealedSecret, VaultCommand, VaultError, WrappedKey,
};
use crate::validate::{validate_ciphertext, validate_identity, validate_name};
use bus::sessions::{self, Replay};
use consensus::raft::NodeId;
use rusqlite::{params, OptionalExtension, Transaction};
use std::collections::BTreeSet;

/// A 2PC decision this batch recorded for the first time: what this node,
/// as a participant, commits or aborts once the batch is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FirstDecision {
    pub(crate) tx: String,
    pub(crate) decision: Decision,
}

/// Applies the command at `index` and returns the encoded [`Reply`]. A
/// decision recorded for the first time is added to `decided`.
///
/// An `Err` is a SQLite failure and is fatal for the batch; everything the
/// command itself got wrong (undecodable bytes, a bad name, a duplicate) is
/// an `Ok` carrying an error reply, recorded like any other outcome.
pub(crate) fn apply_command(
    transaction: &Transaction<'_>,
    index: u64,
    bytes: &[u8],
    members: Option<&BTreeSet<NodeId>>,
    max_versions: u32,
    decided: &mut Vec<FirstDecision>,
) -> rusqlite::Result<Vec<u8>> {
    let Ok(VaultCommand::V1 {
        session,
        owner,
        proposed_at_ms,
        op,
    }) = decode::<VaultCommand>(bytes)
    else {
        let reply: Reply = Err(VaultError::Invalid(
            "the log entry is not a vault command this build understands".into(),
        ));
        return Ok(encode(&reply));
    };
    let mut op = op;
    let mut store_reply = session.is_some();
    let mut answered_before = None;
    if let Some(session) = session {
        match &mut op {
            Operation::Decide { tx, decision, .. } => {
                match replay_decision(transaction, &owner, session, tx)? {
                    DecisionReplay::Fresh => {}
                    DecisionReplay::Repeat(stored) => return Ok(stored),
                    DecisionReplay::AnsweredBefore(stored) => {
                        *decision = Decision::Abort;
                        store_reply = false;
                        answered_before = Some(stored);
                    }
                    DecisionReplay::Superseded => store_reply = false,
                }
            }
            _ => {
                if let Some(stored) = replay(transaction, &owner, session)? {
                    return Ok(stored);
                }
            }
        }
    }
    let context = Context {
        transaction,
        owner: &owner,
        index,
        now: to_sql(proposed_at_ms),
        members,
        max_versions,
    };
    let reply = match (op, validate_identity(&owner)) {
        // Proposed by a node, not on behalf of a client: no owner.
        (Operation::Prune { through }, _) => context.prune(through)?,
        (op, Ok(())) => context.run(op, decided)?,
        (_, Err(error)) => Err(error),
    };
    if let Some(stored) = answered_before {
        return Ok(stored);
    }
    let response = encode(&reply);
    if let (Some(session), true) = (session, store_reply) {
        sessions::record(transaction, &owner, session, &response, index)?;
    }
    Ok(response)
}

/// The stored answer if this session already executed `seq` or later
/// (the bus's session rule; a superseded write is answered with a
/// conflict, never applied).
fn replay(
    transaction: &Transaction<'_>,
    owner: &str,
    session: ClientSession,
) -> rusqlite::Result<Option<Vec<u8>>> {
    Ok(match sessions::replay(transaction, owner, session)? {
        Replay::Fresh => None,
        Replay::Repeat(stored) => Some(stored),
        Replay::Superseded { last_seq } => {
            let reply: Reply = Err(VaultError::Conflict(format!(
                "request {} of this client was superseded by request {last_seq} and was not applied",
                session.seq
            )));
            Some(encode(&reply))
        }
    })
}

/// How a decision entry carrying the session of the `delete` that started
/// its transaction relates to what that session already answered.
enum DecisionReplay {
    /// The session has not answered this request: apply the decision and
    /// store its reply as the request's answer.
    Fresh,
    /// The same transaction's decision already answered it: return that
    /// answer, change nothing.
    Repeat(Vec<u8>),
    /// Another transaction (a retry of the same delete on another node, or
    /// the first attempt) already answered it: this transaction is applied
    /// as an abort, so one request never deletes through two transactions
    /// nor gets two different outcomes, and the coordinator is given the
    /// stored answer.
    AnsweredBefore(Vec<u8>),
    /// The client has moved on to later requests: apply the decision as
    /// usual (participants wait for it) but leave the session alone.
    Superseded,
}

/// Where the decision of `tx`, for request `session`, stands (see
/// [`DecisionReplay`]).
fn replay_decision(
    transaction: &Transaction<'_>,
    owner: &str,
    session: ClientSession,
    tx: &str,
) -> rusqlite::Result<DecisionReplay> {
    let last_response = match sessions::replay(transaction, owner, session)? {
        Replay::Fresh => return Ok(DecisionReplay::Fresh),
        Replay::Superseded { .. } => return Ok(DecisionReplay::Superseded),
        Replay::Repeat(last_response) => last_response,
    };
    match decode::<Reply>(&last_response) {
        Ok(Ok(Response::Decided { tx: answered, .. })) if answered == tx => {
            Ok(DecisionReplay::Repeat(last_response))
        }
        _ => Ok(DecisionReplay::AnsweredBefore(last_response)),
    }
}

/// What every operation needs: where to write, who asks, and when.
struct Context<'a, 'c> {
    transaction: &'a Transaction<'c>,
    owner: &'a str,
    index: u64,
    now: i64,
    /// The members of the configuration in force at `index`, when the
    /// runtime told the store (see `StateMachine::membership_changed`).
    members: Option<&'a BTreeSet<NodeId>>,
    /// How many versions of a secret are kept, the current one included
    /// (at least 1).
    max_versions: u32,
}

impl Context<'_, '_> {
    fn run(&self, op: Operation, decided: &mut Vec<FirstDecision>) -> rusqlite::Result<Reply> {
        match op {
            Operation::Put {
                name,
                sealed,
                update,
                version,
            } => self.put(&name, &sealed, update, version),
            Operation::Share {
                name,
                grantee,
                wrapped_key,
            } => self.share(&name, &grantee, &wrapped_key),
            Operation::Unshare {
                name,
                grantee,
                sealed,
                version,
                grants,
            } => self.unshare(&name, &grantee, &sealed, version, &grants),
            Operation::PublishKey { record, replace } => self.publish_key(&record, replace),
            Operation::Decide {
                tx,
                name,
                version,
                decision,
                participants,
            } => {
                let decision = self.unless_members_changed(&tx, decision, &participants);
                self.decide(&tx, &name, version, decision, decided)
            }
            Operation::Prune { through } => self.prune(through),
        }
    }

    /// Forgets the decisions recorded at or below `through` (the rule is in
    /// `store/pruning.rs`).
    fn prune(&self, through: u64) -> rusqlite::Result<Reply> {
        let decisions = super::pruning::prune(self.transaction, through)?;
        let through = super::pruning::pruned_through(self.transaction)?;
        Ok(Ok(Response::Pruned { through, decisions }))
    }

    fn version(&self, name: &str) -> rusqlite::Result<Option<u64>> {
        let version: Option<i64> = self
            .transaction
            .prepare_cached("SELECT version FROM secrets WHERE owner = ?1 AND name = ?2")?
            .query_row(params![self.owner, name], |row| row.get(0))
            .optional()?;
        Ok(version.map(from_sql))
    }

    /// Stores `sealed` as version `sealed_as` of `name`: refused as a
    /// conflict unless that is the version the put makes (1 for a new
    /// secret, current + 1 for an update), because the envelope's
    /// associated data binds the version and would not open under another.
    fn put(
        &self,
        name: &str,
        sealed: &SealedSecret,
        update: bool,
        sealed_as: u64,
    ) -> rusqlite::Result<Reply> {
        if let Err(error) = validate_name(name).and(validate_ciphertext(&sealed.0)) {
            return Ok(Err(error));
        }
        let current = self.version(name)?;
        if let Some(error) = version_conflict(name, current, update, sealed_as) {
            return Ok(Err(error));
        }
        match (current, update) {
            (None, false) => {
                self.transaction
                    .prepare_cached(
                        "INSERT INTO secrets (owner, name, version, ciphertext, created, updated)
                     VALUES (?1, ?2, 1, ?3, ?4, ?4)",
                    )?
                    .execute(params![self.owner, name, sealed.0, self.now])?;
                Ok(Ok(Response::Added { version: 1 }))
            }
            (None, true) => Ok(Err(VaultError::NotFound(format!(
                "there is no secret named {name:?} to update"
            )))),
            (Some(_), false) => Ok(Err(VaultError::AlreadyExists(format!(
                "a secret named {name:?} already exists; use --update to replace it"
            )))),
            (Some(version), true) => {
                self.keep_previous_version(name, version)?;
                let version = version.saturating_add(1);
                self.transaction
                    .prepare_cached(
                        "UPDATE secrets SET version = ?3, ciphertext = ?4, updated = ?5
                     WHERE owner = ?1 AND name = ?2",
                    )?
                    .execute(params![
                        self.owner,
                        name,
                        to_sql(version),
                        sealed.0,
                        self.now
                    ])?;
                Ok(Ok(Response::Added { version }))
            }
        }
    }

    /// Moves the current version `current` of `name` into
    /// `secret_versions` before it is replaced, and forgets the versions
    /// that fall out of the last `max_versions` once `current + 1` is stored.
    fn keep_previous_version(&self, name: &str, current: u64) -> rusqlite::Result<()> {
        let keep_old = u64::from(self.max_versions.max(1)) - 1;
        if keep_old > 0 {
            self.transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO secret_versions (owner, name, version, ciphertext, updated)
                     SELECT owner, name, version, ciphertext, updated FROM secrets
                     WHERE owner = ?1 AND name = ?2",
                )?
                .execute(params![self.owner, name])?;
        }
        // After the put the versions kept are current + 1 (in `secrets`)
        // and the `keep_old` before it: everything at or below this goes.
        let forget_through = (current + 1).saturating_sub(keep_old + 1);
        self.transaction
            .prepare_cached(
                "DELETE FROM secret_versions WHERE owner = ?1 AND name = ?2 AND version <= ?3",
            )?
            .execute(params![self.owner, name, to_sql(forget_through)])?;
        Ok(())
    }

    fn share(
        &self,
        name: &str,
        grantee: &str,
        wrapped_key: &WrappedKey,
    ) -> rusqlite::Result<Reply> {
        let checks = validate_name(name)
            .and(crate::protocol::validate_grantee(self.owner, grantee))
            .and(validate_ciphertext(&wrapped_key.0));
        if let Err(error) = checks {
            return Ok(Err(error));
        }
        if self.version(name)?.is_none() {
            return Ok(Err(not_found(name)));
        }
        self.transaction
            .prepare_cached(
                "INSERT INTO shares (owner, name, grantee, wrapped_key) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (owner, name, grantee) DO UPDATE SET wrapped_key = excluded.wrapped_key",
            )?
            .execute(params![self.owner, name, grantee, wrapped_key.0])?;
        Ok(Ok(Response::Shared))
    }

    /// The grantees of the owner's secret `name`, sorted.
    fn grantees(&self, name: &str) -> rusqlite::Result<Vec<String>> {
        let mut statement = self.transaction.prepare_cached(
            "SELECT grantee FROM shares WHERE owner = ?1 AND name = ?2 ORDER BY grantee",
        )?;
        let rows = statement.query_map(params![self.owner, name], |row| row.get(0))?;
        rows.collect()
    }

    /// Removes the grant to `grantee` and re-keys the secret: the next
    /// version under a new data key, and new wrapped keys for exactly the
    /// other grantees. All or nothing, in this one entry, so no grantee is
    /// ever left holding a key that does not open the current version.
    fn unshare(
        &self,
        name: &str,
        grantee: &str,
        sealed: &SealedSecret,
        sealed_as: u64,
        grants: &[Grant],
    ) -> rusqlite::Result<Reply> {
        let checks = validate_name(name)
            .and(crate::protocol::validate_grantee(self.owner, grantee))
            .and(validate_ciphertext(&sealed.0))
            .and(crate::protocol::validate_grants(
                self.owner, grantee, grants,
            ));
        if let Err(error) = checks {
            return Ok(Err(error));
        }
        let mut others = self.grantees(name)?;
        let Some(position) = others.iter().position(|other| other == grantee) else {
            return Ok(Err(VaultError::NotFound(format!(
                "your secret {name:?} is not shared with {grantee}"
            ))));
        };
        others.remove(position);
        let mut given: Vec<&str> = grants.iter().map(|grant| grant.grantee.as_str()).collect();
        given.sort_unstable();
        if given != others {
            return Ok(Err(VaultError::Conflict(format!(
                "the grants of {name:?} changed while it was being re-keyed; run unshare again"
            ))));
        }
        match self.put(name, sealed, true, sealed_as)? {
            Ok(_) => {}
            error => return Ok(error),
        }
        self.transaction
            .prepare_cached("DELETE FROM shares WHERE owner = ?1 AND name = ?2 AND grantee = ?3")?
            .execute(params![self.owner, name, grantee])?;
        for grant in grants {
            self.transaction
                .prepare_cached(
                    "UPDATE shares SET wrapped_key = ?4 WHERE owner = ?1 AND name = ?2 AND grantee = ?3",
                )?
                .execute(params![self.owner, name, grant.grantee, grant.wrapped_key.0])?;
        }
        Ok(Ok(Response::Unshared))
    }

    /// Records the owner's identity record. The first one wins: a
    /// different record replaces it only with `replace` (asked for by the
    /// owner's own certificate), so a client that derived keys from a
    /// mistyped passphrase, or two first uses racing, cannot overwrite the
    /// keys everything is already sealed and shared under.
    fn publish_key(&self, record: &IdentityRecord, replace: bool) -> rusqlite::Result<Reply> {
        let bytes = encode(record);
        let existing: Option<Vec<u8>> = self
            .transaction
            .prepare_cached("SELECT record FROM public_keys WHERE identity = ?1")?
            .query_row([self.owner], |row| row.get(0))
            .optional()?;
        match existing {
            Some(existing) if existing == bytes => return Ok(Ok(Response::KeyPublished)),
            Some(_) if !replace => {
                return Ok(Err(VaultError::AlreadyExists(format!(
                    "{} has already published a different identity record",
                    self.owner
                ))))
            }
            _ => {}
        }
        self.transaction
            .prepare_cached(
                "INSERT INTO public_keys (identity, record, updated) VALUES (?1, ?2, ?3)
             ON CONFLICT (identity) DO UPDATE SET record = excluded.record,
                 updated = excluded.updated",
            )?
            .execute(params![self.owner, bytes, self.now])?;
        Ok(Ok(Response::KeyPublished))
    }

    /// Records the first decision for `tx`; a commit deletes the secret and
    /// its grants if it is still at the voted version. The node-local lock
    /// is released here too: it is not replicated state, but releasing it
    /// in the same transaction means it can never outlive the decision.
    /// A commit whose participants are not exactly the members in force at
    /// this entry becomes an abort: a node that joined while the votes were
    /// out would delete without having voted, and one that left could not
    /// acknowledge. Decided from the log alone, so every node agrees.
    fn unless_members_changed(
        &self,
        tx: &str,
        decision: Decision,
        participants: &[NodeId],
    ) -> Decision {
        let Some(members) = self.members else {
            return decision;
        };
        let asked: BTreeSet<NodeId> = participants.iter().copied().collect();
        let same = asked == *members;
        if decision == Decision::Commit && !same {
            tracing::info!(
                "tx {tx}: the membership changed while it voted; its commit is applied as an abort"
            );
            return Decision::Abort;
        }
        decision
    }

    fn decide(
        &self,
        tx: &str,
        name: &str,
        version: u64,
        decision: Decision,
        decided: &mut Vec<FirstDecision>,
    ) -> rusqlite::Result<Reply> {
        let earlier: Option<i64> = self
            .transaction
            .prepare_cached("SELECT decision FROM twopc_decisions WHERE tx = ?1")?
            .query_row([tx], |row| row.get(0))
            .optional()?;
        if let Some(earlier) = earlier {
            let decision = decision_from_sql(earlier);
            return Ok(Ok(Response::Decided {
                tx: tx.to_string(),
                decision,
                deleted: false,
            }));
        }
        self.transaction
            .prepare_cached(
                "INSERT INTO twopc_decisions (tx, decision, log_index) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![tx, decision_to_sql(decision), to_sql(self.index)])?;
        let mut deleted = false;
        if decision == Decision::Commit {
            deleted = self
                .transaction
                .prepare_cached(
                    "DELETE FROM secrets WHERE owner = ?1 AND name = ?2 AND version = ?3",
                )?
                .execute(params![self.owner, name, to_sql(version)])?
                > 0;
            if deleted {
                self.transaction
                    .prepare_cached("DELETE FROM shares WHERE owner = ?1 AND name = ?2")?
                    .execute(params![self.owner, name])?;
                // A delete removes every version (SPEC §5).
                self.transaction
                    .prepare_cached("DELETE FROM secret_versions WHERE owner = ?1 AND name = ?2")?
                    .execute(params![self.owner, name])?;
            }
        }
        super::twopc::settle(self.transaction, tx, decision)?;
        decided.push(FirstDecision {
            tx: tx.to_string(),
            decision,
        });
        Ok(Ok(Response::Decided {
            tx: tx.to_string(),
            decision,
            deleted,
        }))
    }
}

/// Why a put sealed as version `sealed_as` cannot be stored, if it cannot.
fn version_conflict(
    name: &str,
    current: Option<u64>,
    update: bool,
    sealed_as: u64,
) -> Option<VaultError> {
    let expected = match (current, update) {
        (None, false) => 1,
        (Some(version), true) => version.saturating_add(1),
        // Refused below with their own messages.
        _ => return None,
    };
    (sealed_as != expected).then(|| {
        VaultError::Conflict(format!(
            "{name:?} was sealed as version {sealed_as} but would be stored as version {expected}: it changed meanwhile; try again"
        ))
    })
}

fn not_found(name: &str) -> VaultError {
    VaultError::NotFound(format!("you have no secret named {name:?}"))
}

pub(crate) fn decision_to_sql(decision: Decision) -> i64 {
    match decision {
        Decision::Commit => 1,
        Decision::Abort => 0,
    }
}

/// Only this module writes the column (0 or 1); anything else reads as abort,
/// the safe outcome.
pub(crate) fn decision_from_sql(value: i64) -> Decision {
    if value == 1 {
        Decision::Commit
    } else {
        Decision::Abort
    }
}
