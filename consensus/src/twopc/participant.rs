//! A participant's side: voting through a resource manager, acknowledging a
//! decision once applied, and recovery of transactions left prepared.
//!
//! The decision itself is never taken from a message: it arrives through the
//! replicated log and is applied by the state machine, which also releases
//! the participant's lock. A Decide message only asks "tell me once you
//! applied it".
//!
//! # Lock conflicts: wait-die
//!
//! [`vote`] refuses a resource locked by another transaction at once, so two
//! concurrent transactions on one resource can each lock part of the
//! participants and both abort. [`vote_wait_die`] instead orders
//! transactions by age ([`TransactionAge`], read from the transaction id)
//! and applies wait-die ([`wait_or_die`]): an older requester waits for a
//! younger holder's decision to release the lock, a younger one aborts at
//! once. A transaction only ever waits for a younger one, so waits cannot
//! form a cycle (no deadlock), and the oldest of the contenders never dies
//! because of the others: absent crashes and timeouts, exactly one of two
//! concurrent transactions on a resource can commit.

use super::{Decision, Vote, VoteRequest};
use crate::raft::NodeId;

/// A participant's configured vote policy (`[twopc] vote`, `VAULT_VOTE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VotePolicy {
    /// Vote as the resource manager says.
    #[default]
    Commit,
    /// Always vote abort, whatever the resource manager would say.
    Abort,
}

/// The reason given by a participant whose policy is abort.
pub const POLICY_ABORT_REASON: &str = "vote policy is abort";

/// The answer of [`ResourceManager::prepare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrepareOutcome {
    /// Checked and durably locked: the participant may vote commit.
    Prepared,
    /// Refused, for this reason (one sentence, no secret data).
    Refused(String),
}

/// The local resources a participant guards (in the vault: the SQLite
/// store, whose resources are secrets at a version).
///
/// # To ensure correctness
///
/// - `prepare` returns [`PrepareOutcome::Prepared`] only once the prepared
///   transaction and its lock are durable (fsynced): a crash after the vote
///   must not forget the promise. A resource manager that groups several
///   prepares into one durable write may return earlier, if the runtime
///   sends no vote before that write completes (the vault's
///   `PrepareBatch` and its prepare thread).
/// - `prepare` of the same transaction again answers `Prepared` again
///   (a retried vote request), and a transaction the log already decided is
///   refused.
/// - The lock is released only by applying the logged decision.
pub trait ResourceManager {
    /// What one transaction locks (the vault: a secret at a version). The
    /// protocol never looks inside it.
    type Resource;

    /// What can go wrong talking to the resource (I/O, a damaged file).
    type Error;

    /// Checks that the resource can be changed as asked and locks it
    /// durably; `now_ms` is recorded as the prepare time (for recovery).
    fn prepare(
        &mut self,
        request: &VoteRequest<Self::Resource>,
        now_ms: u64,
    ) -> Result<PrepareOutcome, Self::Error>;
}

/// A participant's vote on `request`: the policy first (an abort policy
/// never touches the resource), then the resource manager.
pub fn vote<M: ResourceManager>(
    policy: VotePolicy,
    manager: &mut M,
    request: &VoteRequest<M::Resource>,
    now_ms: u64,
) -> Result<Vote, M::Error> {
    if policy == VotePolicy::Abort {
        return Ok(Vote::Abort(POLICY_ABORT_REASON.into()));
    }
    Ok(match manager.prepare(request, now_ms)? {
        PrepareOutcome::Prepared => Vote::Commit,
        PrepareOutcome::Refused(reason) => Vote::Abort(reason),
    })
}

/// The age of a transaction, read from its id `{coordinator}-{started_ms}-{nonce:08x}`
/// (e.g. `node2-1700000000123-0a1b2c3d`): when its coordinator started it
/// (wall clock, milliseconds since the Unix epoch), which node that was, and
/// a random nonce. Ordered in that order; smaller is older.
///
/// The order only has to be the same on every participant, not to match
/// real time: clocks may be skewed between coordinators, and wait-die stays
/// deadlock-free with any fixed total order. Only the canonical form (what
/// [`TransactionAge`]'s `Display` prints) parses, so two distinct ids that
/// parse never have equal ages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransactionAge {
    /// When the coordinator started the transaction, milliseconds since the
    /// Unix epoch on the coordinator's clock.
    pub started_ms: u64,
    /// The coordinator: breaks ties between transactions started in the same
    /// millisecond by different nodes.
    pub coordinator: NodeId,
    /// Random: breaks ties between transactions started in the same
    /// millisecond by one node.
    pub nonce: u32,
}

impl TransactionAge {
    /// Parses a transaction id; `None` for anything not in the canonical
    /// form (never panics: ids arrive from the network and the disk).
    pub fn parse(tx: &str) -> Option<TransactionAge> {
        let mut parts = tx.rsplitn(3, '-');
        let nonce = parts.next()?;
        let started_ms = parts.next()?;
        let coordinator = parts.next()?;
        let hex = nonce.len() == 8 && nonce.bytes().all(|byte| byte.is_ascii_hexdigit());
        let digits = !started_ms.is_empty() && started_ms.bytes().all(|byte| byte.is_ascii_digit());
        if !hex || !digits {
            return None;
        }
        let age = TransactionAge {
            started_ms: started_ms.parse().ok()?,
            coordinator: coordinator.parse().ok()?,
            nonce: u32::from_str_radix(nonce, 16).ok()?,
        };
        // Canonical only: `7-…` and `node7-…`, or leading zeros, would
        // otherwise give two ids one age.
        (age.to_string() == tx).then_some(age)
    }
}

/// The transaction id: `{coordinator}-{started_ms}-{nonce:08x}`.
impl std::fmt::Display for TransactionAge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}-{}-{:08x}",
            self.coordinator, self.started_ms, self.nonce
        )
    }
}

/// What a vote request does when the resource it needs is locked by another
/// transaction (wait-die).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockConflict {
    /// The requester is older than the holder: wait, bounded, for the
    /// holder's decision to release the lock, then prepare as usual.
    Wait,
    /// The requester is younger than the holder, or either id has no age:
    /// vote abort now. Dying never waits, so it cannot take part in a
    /// deadlock; an id we cannot order is treated the safe way.
    Die,
}

/// Wait-die: whether `requester` may wait for `holder`, the different
/// transaction that locks the resource it asks for. Waits only go from an
/// older transaction to a younger one, so they never form a cycle.
pub fn wait_or_die(holder: &str, requester: &str) -> LockConflict {
    match (
        TransactionAge::parse(holder),
        TransactionAge::parse(requester),
    ) {
        (Some(holder), Some(requester)) if requester < holder => LockConflict::Wait,
        _ => LockConflict::Die,
    }
}

/// A [`ResourceManager`] that can say which transaction holds the lock a
/// vote request needs, so that a conflicting vote can follow wait-die
/// ([`vote_wait_die`]) instead of refusing at once.
pub trait LockTable: ResourceManager {
    /// The transaction holding the lock on `request`'s resource, if any
    /// (possibly `request.tx` itself, for a retried vote request).
    fn locked_by(
        &mut self,
        request: &VoteRequest<Self::Resource>,
    ) -> Result<Option<String>, Self::Error>;
}

/// One attempt at a vote under wait-die ([`vote_wait_die`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteAttempt {
    /// The vote to send.
    Voted(Vote),
    /// The resource is locked by `holder`, a younger transaction: wait until
    /// its decision is applied (which releases the lock), then attempt
    /// again. The runtime bounds the wait.
    Wait {
        /// The transaction holding the lock.
        holder: String,
    },
}

/// A participant's vote on `request` under wait-die: the policy first, then,
/// if another transaction holds the lock, [`wait_or_die`], and otherwise
/// the resource manager's prepare (as in [`vote`]).
///
/// `may_wait` is false once the runtime's wait budget is spent: a requester
/// that would wait then votes abort instead, naming the holder.
pub fn vote_wait_die<M: LockTable>(
    policy: VotePolicy,
    manager: &mut M,
    request: &VoteRequest<M::Resource>,
    now_ms: u64,
    may_wait: bool,
) -> Result<VoteAttempt, M::Error> {
    if policy == VotePolicy::Abort {
        return Ok(VoteAttempt::Voted(Vote::Abort(POLICY_ABORT_REASON.into())));
    }
    if let Some(holder) = manager.locked_by(request)? {
        if holder != request.tx {
            let reason = match wait_or_die(&holder, &request.tx) {
                LockConflict::Wait if may_wait => return Ok(VoteAttempt::Wait { holder }),
                LockConflict::Wait => {
                    format!("still locked by transaction {holder} after waiting for its decision")
                }
                LockConflict::Die => die_reason(&holder, &request.tx),
            };
            return Ok(VoteAttempt::Voted(Vote::Abort(reason)));
        }
    }
    vote(policy, manager, request, now_ms).map(VoteAttempt::Voted)
}

/// Why a requester dies: the holder is older, or the two cannot be ordered.
fn die_reason(holder: &str, requester: &str) -> String {
    if TransactionAge::parse(holder).is_some() && TransactionAge::parse(requester).is_some() {
        format!("locked by transaction {holder}, which is older (wait-die)")
    } else {
        format!("locked by transaction {holder}, which cannot be ordered by age with {requester} (wait-die)")
    }
}

/// What a participant answers a Decide message, given the decision its
/// state machine has applied for the transaction so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// Applied: acknowledge, with the decision the log holds.
    Ack(Decision),
    /// Not applied yet: wait for the log (bounded) and ask again.
    Wait,
}

/// Acknowledge only what the state machine applied.
pub fn ack(applied: Option<Decision>) -> AckOutcome {
    match applied {
        Some(decision) => AckOutcome::Ack(decision),
        None => AckOutcome::Wait,
    }
}

/// A transaction this participant prepared and has no applied decision for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The transaction id.
    pub tx: String,
    /// When it prepared, on the same clock as `now_ms` below.
    pub prepared_at_ms: u64,
}

/// The prepared transactions recovery must ask the leader about: those
/// prepared at least `decision_timeout_ms` ago, in the order given.
pub fn overdue(prepared: &[Prepared], now_ms: u64, decision_timeout_ms: u64) -> Vec<&str> {
    prepared
        .iter()
        .filter(|entry| now_ms.saturating_sub(entry.prepared_at_ms) >= decision_timeout_ms)
        .map(|entry| entry.tx.as_str())
        .collect()
}

/// What the leader does for a participant asking about an undecided
/// transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The log already holds this decision: answer it.
    Decided(Decision),
    /// No decision is known: propose [`Decision::Abort`]. Safe even if a
    /// commit is racing it, because the first decision in the log wins and
    /// every node applies the same first one.
    ProposeAbort,
}

/// The leader's answer to a recovery question, given the decision it has
/// applied for the transaction.
pub fn resolve(logged: Option<Decision>) -> Resolution {
    match logged {
        Some(decision) => Resolution::Decided(decision),
        None => Resolution::ProposeAbort,
    }
}
