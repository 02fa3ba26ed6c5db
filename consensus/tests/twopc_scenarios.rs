//! Scenario tests of two-phase commit, in the style of etcd's `datadriven`
//! tests and of the Raft scenarios (`scenarios.rs`), through the public API
//! only.
//!
//! A scenario file (`consensus/src/twopc/testdata/*.txt`) is a list of
//! commands, each followed by `----` and the output it must produce, and a
//! blank line. Lines starting with `#` are comments. Run with `REWRITE=1`
//! to regenerate the expected output after an intended behaviour change,
//! then review the diff.
//!
//! The world (`world.rs`) is one `CoordinatorDriver` per transaction and
//! one participant per node, each with an in-memory resource manager
//! driven by the real `VoteDriver` and `AckDriver` (the read-index wait,
//! wait-die voting within its budget, acknowledging only what was applied
//! or failing after the decision timeout) and the real recovery functions. The
//! log is a list of decision entries; the first decision for a
//! transaction wins. Commands (node ids are numbers):
//!
//! - `members 1 2 3`: the membership the coordinators' nodes know; adds
//!   participants holding `mail` at version 1.
//! - `put ID NAME=VERSION`, `policy ID abort|commit`: a participant's state.
//! - `start TX coordinator=ID NAME=VERSION`: a delete of NAME at VERSION.
//! - `deliver [drop=(2,3)]`: one round of message delivery; messages to or
//!   from the dropped nodes are lost.
//! - `commit`: every proposed decision reaches the log and is applied by
//!   every live participant; coordinators learn the logged decision.
//! - `time N`: the clock moves to N; due deadlines tick (coordinators',
//!   votes held under wait-die, Decides waiting for their decision).
//! - `crash ID`, `restart ID`: a node loses its messages and coordinators
//!   (its prepared rows are durable); a restarted one applies what it
//!   missed.
//! - `recover ID`: the participant asks the log about transactions
//!   prepared at least the decision timeout ago; with no decision, the
//!   leader logs an abort.
//! - `state`: every participant's resources, locks and applied decisions.
//!

#[path = "twopc_scenarios/world.rs"]
mod world;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use world::World;

/// One parsed block of a scenario file.
enum Block {
    Text(String),
    Command { line: String, expected: Vec<String> },
}

fn parse(text: &str) -> Result<Vec<Block>, String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((number, line)) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            blocks.push(Block::Text(line.to_string()));
            continue;
        }
        if !matches!(lines.next(), Some((_, "----"))) {
            return Err(format!(
                "line {}: command {line:?} must be followed by ----",
                number + 1
            ));
        }
        let mut expected = Vec::new();
        while let Some((_, output)) = lines.next_if(|(_, output)| !output.is_empty()) {
            expected.push(output.to_string());
        }
        blocks.push(Block::Command {
            line: line.to_string(),
            expected,
        });
    }
    Ok(blocks)
}

fn render(blocks: &[Block]) -> String {
    let mut text = String::new();
    for block in blocks {
        match block {
            Block::Text(line) => text.push_str(line),
            Block::Command { line, expected } => {
                text.push_str(line);
                text.push_str("\n----");
                for output in expected {
                    text.push('\n');
                    text.push_str(output);
                }
            }
        }
        text.push('\n');
    }
    text
}

/// One command line: its name, positional words and `key=value` options.
struct Command {
    name: String,
    positional: Vec<String>,
    options: BTreeMap<String, String>,
}

impl Command {
    fn parse(line: &str) -> Command {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default().to_string();
        let mut positional = Vec::new();
        let mut options = BTreeMap::new();
        for word in words {
            match word.split_once('=') {
                Some((key, value)) => {
                    options.insert(key.to_string(), value.to_string());
                }
                None => positional.push(word.to_string()),
            }
        }
        Command {
            name,
            positional,
            options,
        }
    }

    /// The positional argument `at` as a number (0 when absent).
    fn number(&self, at: usize) -> u64 {
        self.positional
            .get(at)
            .and_then(|word| word.parse().ok())
            .unwrap_or(0)
    }
}

/// Runs one scenario file; returns the rewritten text and whether every
/// command produced its expected output.
fn run_file(path: &Path) -> (String, Vec<String>) {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut blocks = match parse(&text) {
        Ok(blocks) => blocks,
        Err(error) => return (text, vec![format!("{}: {error}", path.display())]),
    };
    let mut world = World::default();
    let mut mismatches = Vec::new();
    for block in &mut blocks {
        if let Block::Command { line, expected } = block {
            let actual = world.run(&Command::parse(line));
            if actual != *expected {
                mismatches.push(format!(
                    "{}: {line}\nexpected:\n{}\nactual:\n{}",
                    path.display(),
                    expected.join("\n"),
                    actual.join("\n")
                ));
                *expected = actual;
            }
        }
    }
    (render(&blocks), mismatches)
}

#[test]
fn scenarios() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/twopc/testdata");
    let rewrite = std::env::var_os("REWRITE").is_some();
    let mut paths: Vec<_> = fs::read_dir(&directory)
        .expect("src/twopc/testdata exists")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "txt"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no scenario in {}", directory.display());
    let mut failures = Vec::new();
    for path in &paths {
        let (text, mismatches) = run_file(path);
        if rewrite && !mismatches.is_empty() {
            fs::write(path, text).expect("scenario file is writable");
        } else {
            failures.extend(mismatches);
        }
    }
    assert!(
        failures.is_empty(),
        "scenario mismatches (REWRITE=1 to accept):\n{}",
        failures.join("\n\n")
    );
}
