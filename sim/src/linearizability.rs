//! Linearizability checker for the key-value register (put/get/cas).
//!
//! Algorithm: Wing & Gong's backtracking search as improved by Lowe
//! ("Testing for linearizability", 2017) and used by Knossos and Porcupine.
//! The history becomes a doubly linked list of call and return events in time
//! order. The search walks the list; at a call it tries to linearize that
//! operation now (the register's sequential specification must produce the
//! recorded output), removing ("lifting") its call and return from the list;
//! reaching a return whose operation is not yet linearized means the current
//! choice cannot work, so it undoes the most recent choice and tries the next
//! candidate. Memoisation: a set of (linearized operations, register value)
//! configurations already explored; reaching one again is pruned, which turns
//! the exponential search into one bounded by the distinct configurations.
//!
//! Unknown outcomes (the client gave up, or the run ended with the operation
//! in flight) have their return at infinity and an unconstrained output: they
//! may be linearized anywhere after their call, or never, which models "took
//! effect" and "did not". Failed operations (definitely never took effect) and
//! unknown reads (no effect, nothing to check) are dropped. Keys are checked
//! independently because linearizability is a local property.

use super::history::{Operation, Outcome};
use super::register::{apply, RegisterOp, RegisterOutput};
use std::collections::{BTreeMap, BTreeSet};

/// Why a history is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("history of key {key} is not linearizable ({operations} operations on that key)")]
pub struct NotLinearizable {
    /// The first key whose sub-history has no linearization.
    pub key: u64,
    /// How many operations the checker considered for that key.
    pub operations: usize,
}

/// Checks the whole history, key by key: `Ok` if some order of the
/// operations that took effect agrees with their real-time order and with
/// the register's sequential specification ([`apply`]), every key starting
/// at 0; otherwise the first key without such an order.
pub fn check(history: &[Operation]) -> Result<(), NotLinearizable> {
    let mut by_key: BTreeMap<u64, Vec<&Operation>> = BTreeMap::new();
    for operation in history {
        let relevant = match operation.outcome {
            Outcome::Ok(_) => true,
            Outcome::Pending | Outcome::Unknown => operation.op != RegisterOp::Get,
            Outcome::Fail => false,
        };
        if relevant {
            by_key.entry(operation.key).or_default().push(operation);
        }
    }
    for (key, operations) in by_key {
        if !check_key(&operations) {
            return Err(NotLinearizable {
                key,
                operations: operations.len(),
            });
        }
    }
    Ok(())
}

/// One operation of a single key's sub-history, as the search sees it.
struct Candidate {
    op: RegisterOp,
    /// `None` when the outcome is unknown: any output is accepted.
    output: Option<RegisterOutput>,
}

#[derive(Clone, Copy)]
enum Event {
    Head,
    Call(usize),
    Return(usize),
}

/// The time-ordered event list with O(1) lift and unlift. Node 0 is the head
/// sentinel; `NONE` ends the list.
struct EventList {
    events: Vec<Event>,
    next: Vec<usize>,
    previous: Vec<usize>,
    /// For each operation, the node of its return event.
    return_node: Vec<usize>,
}

const NONE: usize = usize::MAX;

impl EventList {
    fn new(operations: &[&Operation]) -> Self {
        // Unknown returns go to infinity; ties cannot happen among recorded
        // times (one logical clock), and the op index orders the infinities.
        let mut timeline: Vec<(u64, usize, Event)> = Vec::with_capacity(operations.len() * 2);
        for (index, operation) in operations.iter().enumerate() {
            timeline.push((operation.invoked, index, Event::Call(index)));
            let end = match operation.outcome {
                Outcome::Ok(_) => operation.completed.unwrap_or(u64::MAX),
                _ => u64::MAX,
            };
            timeline.push((end, index, Event::Return(index)));
        }
        timeline.sort_by_key(|(time, index, _)| (*time, *index));
        let count = timeline.len() + 1;
        let mut events = vec![Event::Head];
        events.extend(timeline.into_iter().map(|(_, _, event)| event));
        let mut return_node = vec![0; operations.len()];
        for (node, event) in events.iter().enumerate() {
            if let Event::Return(op) = event {
                return_node[*op] = node;
            }
        }
        let next = (1..=count)
            .map(|n| if n == count { NONE } else { n })
            .collect();
        let previous = (0..count).map(|n| n.wrapping_sub(1)).collect();
        Self {
            events,
            next,
            previous,
            return_node,
        }
    }

    fn unlink(&mut self, node: usize) {
        let (previous, next) = (self.previous[node], self.next[node]);
        self.next[previous] = next;
        if next != NONE {
            self.previous[next] = previous;
        }
    }

    fn relink(&mut self, node: usize) {
        let (previous, next) = (self.previous[node], self.next[node]);
        self.next[previous] = node;
        if next != NONE {
            self.previous[next] = node;
        }
    }

    /// Removes an operation's call and return (the return first is unlinked
    /// last so that relinking in reverse order restores the list exactly).
    fn lift(&mut self, call: usize, op: usize) {
        self.unlink(call);
        self.unlink(self.return_node[op]);
    }

    fn unlift(&mut self, call: usize, op: usize) {
        self.relink(self.return_node[op]);
        self.relink(call);
    }
}

/// A set of operation indices as a bitset, cheap to compare and store.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct OperationSet(Vec<u64>);

impl OperationSet {
    fn with_capacity(count: usize) -> Self {
        Self(vec![0; count.div_ceil(64)])
    }
    fn insert(&mut self, op: usize) {
        self.0[op / 64] |= 1 << (op % 64);
    }
    fn remove(&mut self, op: usize) {
        self.0[op / 64] &= !(1 << (op % 64));
    }
}

fn check_key(operations: &[&Operation]) -> bool {
    let candidates: Vec<Candidate> = operations
        .iter()
        .map(|operation| Candidate {
            op: operation.op,
            output: match operation.outcome {
                Outcome::Ok(output) => Some(output),
                _ => None,
            },
        })
        .collect();
    let mut list = EventList::new(operations);
    let mut linearized = OperationSet::with_capacity(candidates.len());
    let mut explored: BTreeSet<(OperationSet, u64)> = BTreeSet::new();
    // Each frame: the call node linearized and the value before it.
    let mut stack: Vec<(usize, usize, u64)> = Vec::new();
    let mut value = 0u64;
    let mut node = list.next[0];
    while node != NONE {
        match list.events[node] {
            Event::Head => return false, // the head is never after another node
            Event::Call(op) => {
                let candidate = &candidates[op];
                let (new_value, output) = apply(value, candidate.op);
                if candidate.output.unwrap_or(output) == output {
                    let mut next_set = linearized.clone();
                    next_set.insert(op);
                    if explored.insert((next_set.clone(), new_value)) {
                        stack.push((node, op, value));
                        linearized = next_set;
                        value = new_value;
                        list.lift(node, op);
                        node = list.next[0];
                        continue;
                    }
                }
                node = list.next[node];
            }
            // Only infinite returns remain: every answered op is linearized.
            Event::Return(op) if candidates[op].output.is_none() => return true,
            Event::Return(_) => {
                let Some((call, op, previous_value)) = stack.pop() else {
                    return false;
                };
                value = previous_value;
                linearized.remove(op);
                list.unlift(call, op);
                node = list.next[call];
            }
        }
    }
    true
}

#[cfg(test)]
#[path = "linearizability_tests.rs"]
mod tests;
