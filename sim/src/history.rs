//! The client history: every operation a client invoked, when, and how it
//! ended. The linearizability checker reads it at the end of a run.
//!
//! The simulation records its clients with [`History`] (one logical clock).
//! A test of real processes may do the same, or build each [`Operation`]
//! itself (its fields are public, or use [`Operation::answered`] and
//! [`Operation::unknown`]) with times from any clock that orders every
//! invocation and completion it compares: "A completed before B was
//! invoked" must hold exactly when `A.completed < B.invoked`.

use super::register::{RegisterOp, RegisterOutput};

/// How an operation ended, as far as its client knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still in flight (becomes [`Outcome::Unknown`] when the run ends).
    Pending,
    /// The cluster answered with this output: the operation took effect
    /// exactly once, between invocation and completion.
    Ok(RegisterOutput),
    /// Definitely did not take effect (every attempt was refused before it
    /// could reach a log). The checker ignores it.
    Fail,
    /// The client gave up or the run ended: it may or may not have taken
    /// effect, at any time after its invocation.
    Unknown,
}

/// One operation of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The invoking client.
    pub client: u64,
    /// The register it acts on.
    pub key: u64,
    /// What it does.
    pub op: RegisterOp,
    /// Logical time of the invocation.
    pub invoked: u64,
    /// Logical time of the completion (for `Ok` and `Fail`).
    pub completed: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
}

impl Operation {
    /// An operation the cluster answered with `output`, invoked at
    /// `invoked` and answered at `completed` (`invoked < completed`).
    pub fn answered(
        client: u64,
        key: u64,
        op: RegisterOp,
        invoked: u64,
        completed: u64,
        output: RegisterOutput,
    ) -> Operation {
        Operation {
            client,
            key,
            op,
            invoked,
            completed: Some(completed),
            outcome: Outcome::Ok(output),
        }
    }

    /// An operation whose fate its client does not know (a timeout, a lost
    /// connection, a killed node): it may have taken effect at any time
    /// after `invoked`, or never.
    pub fn unknown(client: u64, key: u64, op: RegisterOp, invoked: u64) -> Operation {
        Operation {
            client,
            key,
            op,
            invoked,
            completed: None,
            outcome: Outcome::Unknown,
        }
    }
}

/// Identifies an operation in a [`History`].
pub type OperationId = usize;

/// Records invocations and completions against one logical clock, so that
/// "A completed before B was invoked" is exact.
#[derive(Clone, Debug, Default)]
pub struct History {
    operations: Vec<Operation>,
    clock: u64,
}

impl History {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Records that `client` invoked `op` on `key` now.
    pub fn invoke(&mut self, client: u64, key: u64, op: RegisterOp) -> OperationId {
        let invoked = self.tick();
        self.operations.push(Operation {
            client,
            key,
            op,
            invoked,
            completed: None,
            outcome: Outcome::Pending,
        });
        self.operations.len() - 1
    }

    /// Records that `id` completed now with `output`.
    pub fn complete(&mut self, id: OperationId, output: RegisterOutput) {
        self.finish(id, Outcome::Ok(output));
    }

    /// Records that `id` definitely did not take effect.
    pub fn fail(&mut self, id: OperationId) {
        self.finish(id, Outcome::Fail);
    }

    /// Records that the client gave up on `id` without knowing its fate.
    pub fn give_up(&mut self, id: OperationId) {
        if let Some(operation) = self.operations.get_mut(id) {
            operation.outcome = Outcome::Unknown;
        }
    }

    fn finish(&mut self, id: OperationId, outcome: Outcome) {
        let now = self.tick();
        if let Some(operation) = self.operations.get_mut(id) {
            operation.completed = Some(now);
            operation.outcome = outcome;
        }
    }

    /// Ends the run: every pending operation becomes unknown.
    pub fn close(mut self) -> Vec<Operation> {
        for operation in &mut self.operations {
            if operation.outcome == Outcome::Pending {
                operation.outcome = Outcome::Unknown;
            }
        }
        self.operations
    }

    /// The operations invoked from position `from` on.
    pub fn since(&self, from: usize) -> &[Operation] {
        self.operations.get(from..).unwrap_or_default()
    }

    /// How many operations were invoked.
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// Whether no operation was invoked yet.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// How many operations completed with an answer.
    pub fn completed_count(&self) -> usize {
        let ok = |operation: &&Operation| matches!(operation.outcome, Outcome::Ok(_));
        self.operations.iter().filter(ok).count()
    }
}
