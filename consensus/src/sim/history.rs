//! The client history: every operation a simulated client invoked, when, and
//! how it ended. The linearizability checker reads it at the end of a run.

use super::register::{RegisterOp, RegisterOutput};

/// How an operation ended, as far as its client knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
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
pub(crate) struct Operation {
    /// The invoking client.
    pub(crate) client: u64,
    /// The register it acts on.
    pub(crate) key: u64,
    /// What it does.
    pub(crate) op: RegisterOp,
    /// Logical time of the invocation.
    pub(crate) invoked: u64,
    /// Logical time of the completion (for `Ok` and `Fail`).
    pub(crate) completed: Option<u64>,
    /// How it ended.
    pub(crate) outcome: Outcome,
}

/// Identifies an operation in a [`History`].
pub(crate) type OperationId = usize;

/// Records invocations and completions against one logical clock, so that
/// "A completed before B was invoked" is exact.
#[derive(Clone, Debug, Default)]
pub(crate) struct History {
    operations: Vec<Operation>,
    clock: u64,
}

impl History {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Records that `client` invoked `op` on `key` now.
    pub(crate) fn invoke(&mut self, client: u64, key: u64, op: RegisterOp) -> OperationId {
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
    pub(crate) fn complete(&mut self, id: OperationId, output: RegisterOutput) {
        self.finish(id, Outcome::Ok(output));
    }

    /// Records that `id` definitely did not take effect.
    pub(crate) fn fail(&mut self, id: OperationId) {
        self.finish(id, Outcome::Fail);
    }

    /// Records that the client gave up on `id` without knowing its fate.
    pub(crate) fn give_up(&mut self, id: OperationId) {
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
    pub(crate) fn close(mut self) -> Vec<Operation> {
        for operation in &mut self.operations {
            if operation.outcome == Outcome::Pending {
                operation.outcome = Outcome::Unknown;
            }
        }
        self.operations
    }

    /// The operations invoked from position `from` on.
    pub(crate) fn since(&self, from: usize) -> &[Operation] {
        self.operations.get(from..).unwrap_or_default()
    }

    /// How many operations were invoked.
    pub(crate) fn len(&self) -> usize {
        self.operations.len()
    }

    /// How many operations completed with an answer.
    pub(crate) fn completed_count(&self) -> usize {
        let ok = |operation: &&Operation| matches!(operation.outcome, Outcome::Ok(_));
        self.operations.iter().filter(ok).count()
    }
}
