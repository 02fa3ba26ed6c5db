//! The checker must accept every linearizable history and reject the classic
//! anomalies: stale reads, lost writes, double cas, values from nowhere,
//! reads that go back in time.

use super::check;
use crate::history::{Operation, Outcome};
use crate::register::{apply, RegisterOp, RegisterOutput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use RegisterOp::{Cas, Get, Put};
use RegisterOutput::{Swapped, Value, Written};

/// An answered operation on key 0 over the interval [invoked, completed].
fn ok(op: RegisterOp, invoked: u64, completed: u64, output: RegisterOutput) -> Operation {
    Operation {
        client: invoked,
        key: 0,
        op,
        invoked,
        completed: Some(completed),
        outcome: Outcome::Ok(output),
    }
}

fn unknown(op: RegisterOp, invoked: u64) -> Operation {
    Operation {
        client: invoked,
        key: 0,
        op,
        invoked,
        completed: None,
        outcome: Outcome::Unknown,
    }
}

#[test]
fn sequential_history_is_accepted() {
    let history = [
        ok(Put(1), 1, 2, Written),
        ok(Get, 3, 4, Value(1)),
        ok(
            Cas {
                expected: 1,
                new: 2,
            },
            5,
            6,
            Swapped(true),
        ),
        ok(
            Cas {
                expected: 1,
                new: 3,
            },
            7,
            8,
            Swapped(false),
        ),
        ok(Get, 9, 10, Value(2)),
    ];
    assert_eq!(check(&history), Ok(()));
}

#[test]
fn concurrent_read_may_see_either_value() {
    for seen in [0, 1] {
        let history = [ok(Put(1), 1, 4, Written), ok(Get, 2, 3, Value(seen))];
        assert_eq!(check(&history), Ok(()), "read of {seen}");
    }
}

#[test]
fn stale_read_is_rejected() {
    let history = [ok(Put(1), 1, 2, Written), ok(Get, 3, 4, Value(0))];
    assert!(check(&history).is_err());
}

#[test]
fn lost_write_is_rejected() {
    let history = [
        ok(Put(1), 1, 2, Written),
        ok(Put(2), 3, 4, Written),
        ok(Get, 5, 6, Value(1)),
    ];
    assert!(check(&history).is_err());
}

#[test]
fn two_successful_cas_from_one_value_are_rejected() {
    // Both swap 0 -> something concurrently: only one can have seen 0.
    let history = [
        ok(
            Cas {
                expected: 0,
                new: 1,
            },
            1,
            4,
            Swapped(true),
        ),
        ok(
            Cas {
                expected: 0,
                new: 2,
            },
            2,
            3,
            Swapped(true),
        ),
    ];
    assert!(check(&history).is_err());
}

#[test]
fn value_never_written_is_rejected() {
    let history = [ok(Put(1), 1, 3, Written), ok(Get, 2, 4, Value(7))];
    assert!(check(&history).is_err());
}

#[test]
fn reads_going_back_in_time_are_rejected() {
    // A long write overlaps two sequential reads: once 1 is seen, 0 cannot be.
    let history = [
        ok(Put(1), 1, 10, Written),
        ok(Get, 2, 3, Value(1)),
        ok(Get, 4, 5, Value(0)),
    ];
    assert!(check(&history).is_err());
}

#[test]
fn unknown_write_may_take_effect_or_not() {
    let observed = [unknown(Put(5), 1), ok(Get, 2, 3, Value(5))];
    assert_eq!(check(&observed), Ok(()));
    let not_observed = [unknown(Put(5), 1), ok(Get, 2, 3, Value(0))];
    assert_eq!(check(&not_observed), Ok(()));
    // But not before it was invoked.
    let too_early = [ok(Get, 1, 2, Value(5)), unknown(Put(5), 3)];
    assert!(check(&too_early).is_err());
    // And not twice: after 5 then 6 are seen, 5 cannot come back.
    let twice = [
        unknown(Put(5), 1),
        ok(Get, 2, 3, Value(5)),
        ok(Put(6), 4, 5, Written),
        ok(Get, 6, 7, Value(5)),
    ];
    assert!(check(&twice).is_err());
}

#[test]
fn failed_operations_are_ignored_and_keys_are_independent() {
    let mut failed = ok(Put(9), 1, 2, Written);
    failed.outcome = Outcome::Fail;
    let mut other_key = ok(Put(3), 3, 4, Written);
    other_key.key = 1;
    let history = [failed, other_key, ok(Get, 5, 6, Value(0))];
    assert_eq!(check(&history), Ok(()));
    // A stale read on key 1 is reported against key 1, not key 0.
    let mut write_other = ok(Put(3), 1, 2, Written);
    write_other.key = 1;
    let mut read_other = ok(Get, 3, 4, Value(0));
    read_other.key = 1;
    let error = check(&[ok(Put(3), 5, 6, Written), write_other, read_other]);
    assert_eq!(error.map_err(|e| e.key), Err(1));
}

/// Builds a random linearizable history: each operation gets an interval and
/// a linearization point inside it, outputs come from applying the
/// operations in point order, and some outcomes are hidden as unknown.
fn random_linearizable_history(rng: &mut ChaCha8Rng, count: usize) -> Vec<Operation> {
    let mut points: Vec<(u64, u64, u64)> = (0..count)
        .map(|_| {
            let invoked = rng.gen_range(0..count as u64 * 4) * 3;
            let point = invoked + 1;
            let completed = point + 1 + rng.gen_range(0..count as u64) * 3;
            (point, invoked, completed)
        })
        .collect();
    points.sort();
    let mut value = 0;
    let mut history = Vec::new();
    for (serial, (_, invoked, completed)) in points.into_iter().enumerate() {
        let op = match rng.gen_range(0..3) {
            0 => Put(rng.gen_range(0..4)),
            1 => Get,
            _ => Cas {
                expected: rng.gen_range(0..4),
                new: rng.gen_range(0..4),
            },
        };
        let (next, output) = apply(value, op);
        value = next;
        // Distinct times (one logical clock): spread by serial number.
        let spread = |time: u64| time * 1000 + serial as u64;
        let mut operation = ok(op, spread(invoked), spread(completed), output);
        if rng.gen_bool(0.1) {
            operation.outcome = Outcome::Unknown;
            operation.completed = None;
        }
        history.push(operation);
    }
    history
}

#[test]
fn random_linearizable_histories_are_accepted() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for round in 0..300 {
        let history = random_linearizable_history(&mut rng, 5 + round % 40);
        assert_eq!(check(&history), Ok(()), "round {round}: {history:?}");
    }
}

#[test]
fn random_histories_with_a_read_from_nowhere_are_rejected() {
    // Making a sequential read return a value nobody wrote must be caught.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for round in 0..100 {
        let mut history = random_linearizable_history(&mut rng, 10 + round % 20);
        let last = history
            .iter()
            .map(|o| o.completed.unwrap_or(0))
            .max()
            .unwrap_or(0);
        history.push(ok(Get, last + 1, last + 2, Value(99)));
        assert!(check(&history).is_err(), "round {round}");
    }
}
