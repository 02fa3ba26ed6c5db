//! A participant's side: voting through a resource manager, acknowledging a
//! decision once applied, and recovery of transactions left prepared.
//!
//! The decision itself is never taken from a message: it arrives through the
//! replicated log and is applied by the state machine, which also releases
//! the participant's lock. A Decide message only asks "tell me once you
//! applied it".

use super::{Decision, Vote};

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

/// What a coordinator asks a participant to vote on: deleting `owner`'s
/// `name` at `version` in transaction `tx`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VoteRequest {
    /// The transaction id.
    pub tx: String,
    /// Owner of the resource.
    pub owner: String,
    /// Name of the resource.
    pub name: String,
    /// The version every participant must hold.
    pub version: u64,
}

/// The answer of [`ResourceManager::prepare`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrepareOutcome {
    /// Checked and durably locked: the participant may vote commit.
    Prepared,
    /// Refused, for this reason (one sentence, no secret data).
    Refused(String),
}

/// The local resource a participant guards (in the vault: the SQLite store).
///
/// # To ensure correctness
///
/// - `prepare` returns [`PrepareOutcome::Prepared`] only once the prepared
///   transaction and its lock are durable (fsynced): a crash after the vote
///   must not forget the promise.
/// - `prepare` of the same transaction again answers `Prepared` again
///   (a retried vote request), and a transaction the log already decided is
///   refused.
/// - The lock is released only by applying the logged decision.
pub trait ResourceManager {
    /// What can go wrong talking to the resource (I/O, a damaged file).
    type Error;

    /// Checks that the resource can be deleted as asked and locks it
    /// durably; `now_ms` is recorded as the prepare time (for recovery).
    fn prepare(
        &mut self,
        request: &VoteRequest,
        now_ms: u64,
    ) -> Result<PrepareOutcome, Self::Error>;
}

/// A participant's vote on `request`: the policy first (an abort policy
/// never touches the resource), then the resource manager.
pub fn vote<R: ResourceManager>(
    policy: VotePolicy,
    resource: &mut R,
    request: &VoteRequest,
    now_ms: u64,
) -> Result<Vote, R::Error> {
    if policy == VotePolicy::Abort {
        return Ok(Vote::Abort(POLICY_ABORT_REASON.into()));
    }
    Ok(match resource.prepare(request, now_ms)? {
        PrepareOutcome::Prepared => Vote::Commit,
        PrepareOutcome::Refused(reason) => Vote::Abort(reason),
    })
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
