//! The key-value register the simulated clients drive, in two roles: the
//! sequential specification the linearizability checker replays, and the
//! replicated state machine every simulated node applies committed commands to.
//!
//! Every key holds a `u64` that starts at 0. Keys are independent, which lets
//! the checker split a history by key (linearizability is local: Herlihy &
//! Wing 1990, Theorem 1).

use serde::{Deserialize, Serialize};
#[cfg(test)]
use std::collections::BTreeMap;

/// One operation on one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegisterOp {
    /// Overwrite the value.
    Put(u64),
    /// Read the value.
    Get,
    /// Replace the value with `new` if it equals `expected`.
    Cas {
        /// Value the register must hold for the swap to happen.
        expected: u64,
        /// Value written when it does.
        new: u64,
    },
}

/// What an operation returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegisterOutput {
    /// A put completed.
    Written,
    /// A get read this value.
    Value(u64),
    /// A cas swapped (`true`) or found another value (`false`).
    Swapped(bool),
}

/// Applies `op` to a register holding `value`: the new value and the output.
/// This is the sequential specification of the register.
pub fn apply(value: u64, op: RegisterOp) -> (u64, RegisterOutput) {
    match op {
        RegisterOp::Put(new) => (new, RegisterOutput::Written),
        RegisterOp::Get => (value, RegisterOutput::Value(value)),
        RegisterOp::Cas { expected, new } if expected == value => {
            (new, RegisterOutput::Swapped(true))
        }
        RegisterOp::Cas { .. } => (value, RegisterOutput::Swapped(false)),
    }
}

// The commands and state machine of the simulated nodes are the harness's
// own (compiled for this crate's tests only).

/// A client command as proposed to Raft: the (client, sequence) pair makes a
/// retried command idempotent (SPEC §3, exactly-once client commands).
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClientCommand {
    /// The client that issued the command.
    pub(crate) client: u64,
    /// The client's sequence number; a client has one command in flight, so
    /// a sequence at or below the last applied one is a retry.
    pub(crate) sequence: u64,
    /// Which register.
    pub(crate) key: u64,
    /// What to do to it.
    pub(crate) op: RegisterOp,
}

#[cfg(test)]
impl ClientCommand {
    /// The bytes proposed to Raft.
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Encoding a plain struct of integers into a Vec cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Parses committed bytes; `None` for anything that is not a command
    /// this workload proposed (which would itself be a safety bug).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }
}

/// The replicated key-value state machine one simulated node applies
/// committed commands to, with per-client dedup.
#[cfg(test)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KvStateMachine {
    values: BTreeMap<u64, u64>,
    /// client id -> (last applied sequence, its output).
    sessions: BTreeMap<u64, (u64, RegisterOutput)>,
    applied_index: u64,
}

#[cfg(test)]
impl KvStateMachine {
    /// Applies the committed command at `index` and returns its output; a
    /// duplicate (sequence already applied) returns the first output again
    /// without touching the registers.
    pub(crate) fn apply(&mut self, index: u64, command: &ClientCommand) -> RegisterOutput {
        self.applied_index = index;
        if let Some(&(sequence, output)) = self.sessions.get(&command.client) {
            if command.sequence <= sequence {
                return output;
            }
        }
        let value = self.values.get(&command.key).copied().unwrap_or(0);
        let (new_value, output) = apply(value, command.op);
        self.values.insert(command.key, new_value);
        self.sessions
            .insert(command.client, (command.sequence, output));
        output
    }

    /// The value of register `key`.
    pub(crate) fn value(&self, key: u64) -> u64 {
        self.values.get(&key).copied().unwrap_or(0)
    }

    /// Moves the applied index past a non-command entry.
    pub(crate) fn skip_to(&mut self, index: u64) {
        self.applied_index = self.applied_index.max(index);
    }

    /// The index of the last applied entry.
    pub(crate) fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The whole state as bytes (for snapshots).
    pub(crate) fn snapshot(&self) -> Vec<u8> {
        let values: Vec<(u64, u64)> = self.values.iter().map(|(k, v)| (*k, *v)).collect();
        let sessions: Vec<(u64, u64, RegisterOutput)> = self
            .sessions
            .iter()
            .map(|(c, (s, o))| (*c, *s, *o))
            .collect();
        postcard::to_allocvec(&(self.applied_index, values, sessions)).unwrap_or_default()
    }

    /// Rebuilds the state from [`Self::snapshot`] bytes; `None` if corrupt.
    pub(crate) fn restore(bytes: &[u8]) -> Option<Self> {
        type Image = (u64, Vec<(u64, u64)>, Vec<(u64, u64, RegisterOutput)>);
        let (applied_index, values, sessions): Image = postcard::from_bytes(bytes).ok()?;
        Some(Self {
            values: values.into_iter().collect(),
            sessions: sessions.into_iter().map(|(c, s, o)| (c, (s, o))).collect(),
            applied_index,
        })
    }
}

/// The register as the state machine the Raft simulation's nodes apply.
#[cfg(test)]
impl super::node::SimMachine for KvStateMachine {
    type Command = ClientCommand;
    type Output = RegisterOutput;

    fn decode(bytes: &[u8]) -> Option<ClientCommand> {
        ClientCommand::decode(bytes)
    }

    fn apply(&mut self, index: u64, command: &ClientCommand) -> RegisterOutput {
        KvStateMachine::apply(self, index, command)
    }

    fn skip_to(&mut self, index: u64) {
        KvStateMachine::skip_to(self, index);
    }

    fn applied_index(&self) -> u64 {
        KvStateMachine::applied_index(self)
    }

    fn snapshot(&self) -> Vec<u8> {
        KvStateMachine::snapshot(self)
    }

    fn restore(bytes: &[u8]) -> Option<Self> {
        KvStateMachine::restore(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retried_command_applies_once() {
        let mut machine = KvStateMachine::default();
        let put = ClientCommand {
            client: 1,
            sequence: 1,
            key: 0,
            op: RegisterOp::Put(5),
        };
        let cas = ClientCommand {
            client: 1,
            sequence: 2,
            key: 0,
            op: RegisterOp::Cas {
                expected: 5,
                new: 6,
            },
        };
        assert_eq!(machine.apply(1, &put), RegisterOutput::Written);
        assert_eq!(machine.apply(2, &cas), RegisterOutput::Swapped(true));
        // The retry of the cas finds 6, yet must report its first outcome.
        assert_eq!(machine.apply(3, &cas), RegisterOutput::Swapped(true));
        assert_eq!(machine.values.get(&0), Some(&6));
        let restored = KvStateMachine::restore(&machine.snapshot());
        assert_eq!(restored.as_ref(), Some(&machine));
    }

    #[test]
    fn commands_round_trip() {
        let command = ClientCommand {
            client: 7,
            sequence: 9,
            key: 2,
            op: RegisterOp::Cas {
                expected: 1,
                new: 2,
            },
        };
        assert_eq!(ClientCommand::decode(&command.encode()), Some(command));
        assert_eq!(ClientCommand::decode(&[0xff; 3]), None);
    }
}
