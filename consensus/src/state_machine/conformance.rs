//! A conformance suite for any [`StateMachine`], in the spirit of openraft's
//! `Suite::test_all`: the rules of `consensus::state_machine`'s "To ensure
//! correctness" section, checked against real files.
//!
//! A [`Subject`] says how to open the machine in a directory and how to make
//! a deterministic workload; [`run_all`] replays that workload through the
//! scenarios below and returns the first rule broken. Reopening a directory
//! is how a crash is simulated: whatever `apply` returned before the drop
//! must be durable, and nothing else may be half there.
//!
//! The suite expects snapshots to be deterministic (two replicas at the same
//! applied index produce identical bytes) and to be validated on restore (a
//! damaged snapshot is an error that leaves the state untouched).

use super::{CommittedCommand, StateMachine};
use crate::raft::LogIndex;
use std::path::Path;

/// A state machine under test and its workload.
pub trait Subject {
    /// The machine.
    type Machine: StateMachine;

    /// Opens the machine stored in `dir`, creating it if `dir` is empty.
    /// Opening the same `dir` again must find exactly the durable state.
    fn open(&self, dir: &Path) -> Result<Self::Machine, <Self::Machine as StateMachine>::Error>;

    /// `count` commands, the same on every call. Some should fail (so that
    /// recorded failures are covered) and some should be undecodable.
    fn commands(&self, count: usize) -> Vec<Vec<u8>>;

    /// Queries whose answers together describe the whole observable state.
    fn probes(&self) -> Vec<Vec<u8>>;
}

/// A rule the machine broke, or an error it returned where none was due.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The machine returned an error.
    #[error("{scenario}: the state machine failed: {message}")]
    Machine {
        /// Which scenario.
        scenario: &'static str,
        /// The error's text.
        message: String,
    },
    /// The machine answered, but wrongly.
    #[error("{scenario}: {message}")]
    Violated {
        /// Which scenario.
        scenario: &'static str,
        /// What was expected and what happened.
        message: String,
    },
}

/// One log slot: a command, or an entry that is not one (a leader's no-op or
/// a membership change) that the runtime reports with `skip_to`.
#[derive(Debug, Clone)]
struct Slot {
    index: LogIndex,
    command: Option<Vec<u8>>,
}

/// Every seventh entry is not a command, as after elections.
const BLANK_EVERY: u64 = 7;
/// Commands in the standard workload.
const WORKLOAD: usize = 60;

/// Runs every scenario, each in its own subdirectory of `scratch`.
pub fn run_all<S: Subject>(subject: &S, scratch: &Path) -> Result<(), Failure> {
    let log = build_log(subject.commands(WORKLOAD));
    apply_twice_equals_once(subject, &log, &scratch.join("twice"))?;
    replicas_agree(subject, &log, &scratch.join("replicas"))?;
    crash_between_batches(subject, &log, &scratch.join("crash"))?;
    snapshot_then_restore(subject, &log, &scratch.join("snapshot"))?;
    background_snapshot_is_pinned(subject, &log, &scratch.join("background"))?;
    damaged_snapshots_are_refused(subject, &log, &scratch.join("damaged"))?;
    skip_to_is_durable(subject, &log, &scratch.join("skip"))?;
    Ok(())
}

/// Numbers the commands, inserting a non-command slot every
/// [`BLANK_EVERY`] indexes; the log ends with a command so that re-applying
/// the last entry is observable.
fn build_log(commands: Vec<Vec<u8>>) -> Vec<Slot> {
    let mut log = Vec::new();
    let mut index = 0;
    for command in commands {
        index += 1;
        if index % BLANK_EVERY == 0 {
            log.push(Slot {
                index,
                command: None,
            });
            index += 1;
        }
        log.push(Slot {
            index,
            command: Some(command),
        });
    }
    log
}

/// The longest prefix of at most `length` slots that ends with a command, so
/// that a crash after it tests the applied index written by `apply` itself.
fn prefix_ending_in_command(log: &[Slot], length: usize) -> &[Slot] {
    let end = log[..length.min(log.len())]
        .iter()
        .rposition(|slot| slot.command.is_some())
        .map_or(0, |position| position + 1);
    &log[..end]
}

fn machine_error<E: std::error::Error>(scenario: &'static str) -> impl Fn(E) -> Failure {
    move |error| Failure::Machine {
        scenario,
        message: error.to_string(),
    }
}

fn check(
    scenario: &'static str,
    ok: bool,
    message: impl FnOnce() -> String,
) -> Result<(), Failure> {
    if ok {
        Ok(())
    } else {
        Err(Failure::Violated {
            scenario,
            message: message(),
        })
    }
}

/// Feeds `log` in batches of at most `batch` commands, as a runtime would:
/// consecutive commands go to `apply`, other entries to `skip_to`. Returns
/// the response of every command slot, in order.
fn feed<M: StateMachine>(
    scenario: &'static str,
    machine: &mut M,
    log: &[Slot],
    batch: usize,
) -> Result<Vec<Vec<u8>>, Failure> {
    let mut responses = Vec::new();
    let mut pending: Vec<CommittedCommand<'_>> = Vec::new();
    for slot in log {
        match &slot.command {
            Some(command) => pending.push(CommittedCommand {
                index: slot.index,
                term: 1,
                command,
            }),
            None => {
                responses.extend(flush(scenario, machine, &mut pending)?);
                machine
                    .skip_to(slot.index)
                    .map_err(machine_error(scenario))?;
            }
        }
        if pending.len() >= batch {
            responses.extend(flush(scenario, machine, &mut pending)?);
        }
    }
    responses.extend(flush(scenario, machine, &mut pending)?);
    Ok(responses)
}

fn flush<M: StateMachine>(
    scenario: &'static str,
    machine: &mut M,
    pending: &mut Vec<CommittedCommand<'_>>,
) -> Result<Vec<Vec<u8>>, Failure> {
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let responses = machine.apply(pending).map_err(machine_error(scenario))?;
    check(scenario, responses.len() == pending.len(), || {
        format!(
            "{} commands got {} responses",
            pending.len(),
            responses.len()
        )
    })?;
    pending.clear();
    Ok(responses)
}

/// What an observer can see: the applied index and every probe's answer.
fn fingerprint<S: Subject>(
    scenario: &'static str,
    subject: &S,
    machine: &S::Machine,
) -> Result<(LogIndex, Vec<Vec<u8>>), Failure> {
    let answers = subject
        .probes()
        .iter()
        .map(|probe| machine.query(probe))
        .collect::<Result<Vec<_>, _>>()
        .map_err(machine_error(scenario))?;
    Ok((machine.applied_index(), answers))
}

fn open<S: Subject>(
    scenario: &'static str,
    subject: &S,
    dir: &Path,
) -> Result<S::Machine, Failure> {
    std::fs::create_dir_all(dir).map_err(machine_error(scenario))?;
    subject.open(dir).map_err(machine_error(scenario))
}

fn last_index(log: &[Slot]) -> LogIndex {
    log.last().map_or(0, |slot| slot.index)
}

/// Handing the same entries again changes nothing and answers with empty
/// responses (contract: entries at or below the applied index are skipped).
fn apply_twice_equals_once<S: Subject>(
    subject: &S,
    log: &[Slot],
    dir: &Path,
) -> Result<(), Failure> {
    const SCENARIO: &str = "apply twice = apply once";
    let mut machine = open(SCENARIO, subject, dir)?;
    feed(SCENARIO, &mut machine, log, 8)?;
    let once = fingerprint(SCENARIO, subject, &machine)?;
    check(SCENARIO, once.0 == last_index(log), || {
        format!(
            "applied index {} after a log ending at {}",
            once.0,
            last_index(log)
        )
    })?;
    let again = feed(SCENARIO, &mut machine, log, 5)?;
    check(SCENARIO, again.iter().all(Vec::is_empty), || {
        "re-applied entries got non-empty responses".into()
    })?;
    let twice = fingerprint(SCENARIO, subject, &machine)?;
    check(SCENARIO, once == twice, || {
        "re-applying entries changed the state".into()
    })
}

/// Two replicas fed the same log in different batch sizes give the same
/// responses, the same state and byte-identical snapshots.
fn replicas_agree<S: Subject>(subject: &S, log: &[Slot], dir: &Path) -> Result<(), Failure> {
    const SCENARIO: &str = "replicas agree";
    let mut first = open(SCENARIO, subject, &dir.join("a"))?;
    let mut second = open(SCENARIO, subject, &dir.join("b"))?;
    let first_responses = feed(SCENARIO, &mut first, log, 1)?;
    let second_responses = feed(SCENARIO, &mut second, log, 64)?;
    check(SCENARIO, first_responses == second_responses, || {
        "batching changed the responses".into()
    })?;
    check(
        SCENARIO,
        fingerprint(SCENARIO, subject, &first)? == fingerprint(SCENARIO, subject, &second)?,
        || "batching changed the state".into(),
    )?;
    let first_snapshot = first.snapshot().map_err(machine_error(SCENARIO))?;
    let second_snapshot = second.snapshot().map_err(machine_error(SCENARIO))?;
    check(SCENARIO, first_snapshot == second_snapshot, || {
        "two replicas at the same index produced different snapshots".into()
    })
}

/// A crash after some batches keeps exactly those batches; the runtime then
/// hands the whole log again and the result equals an uninterrupted run.
fn crash_between_batches<S: Subject>(subject: &S, log: &[Slot], dir: &Path) -> Result<(), Failure> {
    const SCENARIO: &str = "crash between batches";
    let mut reference = open(SCENARIO, subject, &dir.join("reference"))?;
    let reference_responses = feed(SCENARIO, &mut reference, log, 4)?;
    let expected = fingerprint(SCENARIO, subject, &reference)?;

    let crashed_dir = dir.join("crashed");
    let half = prefix_ending_in_command(log, log.len() / 2);
    let early_responses = {
        let mut machine = open(SCENARIO, subject, &crashed_dir)?;
        feed(SCENARIO, &mut machine, half, 4)?
        // Dropped here without any shutdown call: the "crash".
    };
    let mut machine = open(SCENARIO, subject, &crashed_dir)?;
    check(
        SCENARIO,
        machine.applied_index() == last_index(half),
        || {
            format!(
                "after reopening, applied index is {} instead of {}",
                machine.applied_index(),
                last_index(half)
            )
        },
    )?;
    let late_responses = feed(SCENARIO, &mut machine, log, 4)?;
    let mut combined = early_responses;
    combined.extend(late_responses.into_iter().skip(combined.len()));
    check(SCENARIO, combined == reference_responses, || {
        "responses differ from an uninterrupted run".into()
    })?;
    check(
        SCENARIO,
        fingerprint(SCENARIO, subject, &machine)? == expected,
        || "state differs from an uninterrupted run".into(),
    )
}

/// A snapshot restored into a machine that had other state reproduces the
/// source exactly, durably, and keeps working like it.
fn snapshot_then_restore<S: Subject>(subject: &S, log: &[Slot], dir: &Path) -> Result<(), Failure> {
    const SCENARIO: &str = "snapshot then restore";
    let head = prefix_ending_in_command(log, log.len() * 2 / 3);
    let tail = &log[head.len()..];
    let mut source = open(SCENARIO, subject, &dir.join("source"))?;
    feed(SCENARIO, &mut source, head, 8)?;
    let snapshot = source.snapshot().map_err(machine_error(SCENARIO))?;

    let target_dir = dir.join("target");
    {
        let mut target = open(SCENARIO, subject, &target_dir)?;
        // Unrelated earlier state that the restore must replace.
        feed(SCENARIO, &mut target, &log[..3], 8)?;
        target
            .restore(last_index(head), &snapshot)
            .map_err(machine_error(SCENARIO))?;
    }
    let mut target = open(SCENARIO, subject, &target_dir)?;
    check(
        SCENARIO,
        fingerprint(SCENARIO, subject, &target)? == fingerprint(SCENARIO, subject, &source)?,
        || "the restored state differs from the source (or was not durable)".into(),
    )?;
    let again = target.snapshot().map_err(machine_error(SCENARIO))?;
    check(SCENARIO, again == snapshot, || {
        "a restored machine snapshots differently".into()
    })?;
    let source_tail = feed(SCENARIO, &mut source, tail, 8)?;
    let target_tail = feed(SCENARIO, &mut target, tail, 3)?;
    check(SCENARIO, source_tail == target_tail, || {
        "after restore, the same entries got different responses".into()
    })?;
    check(
        SCENARIO,
        fingerprint(SCENARIO, subject, &target)? == fingerprint(SCENARIO, subject, &source)?,
        || "after restore, the same entries led to different states".into(),
    )
}

/// A snapshot begun with `begin_snapshot` and finished after more entries
/// were applied holds the state as of its beginning: the same bytes as a
/// plain `snapshot` taken at that point.
fn background_snapshot_is_pinned<S: Subject>(
    subject: &S,
    log: &[Slot],
    dir: &Path,
) -> Result<(), Failure> {
    const SCENARIO: &str = "background snapshot";
    let head = prefix_ending_in_command(log, log.len() / 2);
    let mut machine = open(SCENARIO, subject, dir)?;
    feed(SCENARIO, &mut machine, head, 8)?;
    let expected = machine.snapshot().map_err(machine_error(SCENARIO))?;
    let job = machine.begin_snapshot().map_err(machine_error(SCENARIO))?;
    feed(SCENARIO, &mut machine, &log[head.len()..], 8)?;
    let pinned = std::thread::spawn(move || super::snapshot_to_vec(job))
        .join()
        .map_err(|_| Failure::Machine {
            scenario: SCENARIO,
            message: "the snapshot job panicked".into(),
        })?
        .map_err(machine_error(SCENARIO))?;
    check(SCENARIO, pinned == expected, || {
        "a snapshot begun before later entries does not hold the state it was begun at".into()
    })
}

/// Damaged snapshot bytes are an error and leave the state as it was.
fn damaged_snapshots_are_refused<S: Subject>(
    subject: &S,
    log: &[Slot],
    dir: &Path,
) -> Result<(), Failure> {
    const SCENARIO: &str = "damaged snapshots are refused";
    let mut machine = open(SCENARIO, subject, dir)?;
    feed(SCENARIO, &mut machine, log, 8)?;
    let snapshot = machine.snapshot().map_err(machine_error(SCENARIO))?;
    let before = fingerprint(SCENARIO, subject, &machine)?;
    let index = machine.applied_index();
    let mut damaged = Vec::new();
    for position in [0, snapshot.len() / 2, snapshot.len().saturating_sub(1)] {
        let mut bytes = snapshot.clone();
        if let Some(byte) = bytes.get_mut(position) {
            *byte ^= 0x20;
            damaged.push(bytes);
        }
    }
    damaged.push(Vec::new());
    damaged.push(snapshot[..snapshot.len() / 2].to_vec());
    for bytes in &damaged {
        check(SCENARIO, machine.restore(index, bytes).is_err(), || {
            format!("a damaged snapshot of {} bytes was accepted", bytes.len())
        })?;
    }
    check(
        SCENARIO,
        fingerprint(SCENARIO, subject, &machine)? == before,
        || "a refused snapshot changed the state".into(),
    )
}

/// `skip_to` moves the applied index durably and past it nothing applies.
fn skip_to_is_durable<S: Subject>(subject: &S, log: &[Slot], dir: &Path) -> Result<(), Failure> {
    const SCENARIO: &str = "skip_to is durable";
    let target = last_index(log) + 5;
    {
        let mut machine = open(SCENARIO, subject, dir)?;
        feed(SCENARIO, &mut machine, log, 8)?;
        machine.skip_to(target).map_err(machine_error(SCENARIO))?;
    }
    let mut machine = open(SCENARIO, subject, dir)?;
    check(SCENARIO, machine.applied_index() == target, || {
        format!(
            "applied index {} after skip_to({target}) and reopen",
            machine.applied_index()
        )
    })?;
    machine.skip_to(1).map_err(machine_error(SCENARIO))?;
    check(SCENARIO, machine.applied_index() == target, || {
        "skip_to moved the applied index backwards".into()
    })
}
