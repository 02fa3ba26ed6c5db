//! The scenario-file format shared by the Raft scenarios (`scenarios.rs`)
//! and the 2PC scenarios (`twopc_scenarios.rs`), after etcd's `datadriven`
//! package.
//!
//! A scenario file is a list of commands, each followed by `----` and the
//! output it must produce, and a blank line. Lines starting with `#` are
//! comments. [`run_directory`] runs every `*.txt` file of a directory
//! against a fresh world each and fails with every mismatch; with
//! `REWRITE=1` it writes the actual output into the files instead, for an
//! intended behaviour change (then review the diff).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

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

/// One command line: its name, its `key=value` options and the other
/// words, in order.
pub struct Command {
    /// The first word.
    pub name: String,
    /// The whole line, for commands with a syntax of their own.
    #[allow(dead_code)] // the 2PC world has none
    pub line: String,
    /// The words after the name that are not options.
    pub positional: Vec<String>,
    /// The `key=value` words.
    pub options: BTreeMap<String, String>,
}

impl Command {
    /// Splits `line` into its name, positional words and options.
    pub fn parse(line: &str) -> Command {
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
            line: line.to_string(),
            positional,
            options,
        }
    }

    /// The positional argument `at` as a number (0 when absent).
    pub fn number(&self, at: usize) -> u64 {
        self.positional
            .get(at)
            .and_then(|word| word.parse().ok())
            .unwrap_or(0)
    }

    /// The option `key` as a number, or `default`.
    #[allow(dead_code)] // not every world has numeric options
    pub fn option(&self, key: &str, default: u64) -> u64 {
        self.options
            .get(key)
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    }
}

/// Runs every `*.txt` scenario of `directory`, each against a world made by
/// `new_world`, with `run` giving a command's output lines; panics with
/// every mismatch, or rewrites the files under `REWRITE=1`.
pub fn run_directory<W>(
    directory: &Path,
    new_world: impl Fn() -> W,
    run: impl Fn(&mut W, &Command) -> Vec<String>,
) {
    let rewrite = std::env::var_os("REWRITE").is_some();
    let mut paths: Vec<_> = fs::read_dir(directory)
        .unwrap_or_else(|error| panic!("{}: {error}", directory.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "txt"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no scenario in {}", directory.display());
    let mut failures = Vec::new();
    for path in paths {
        let text = fs::read_to_string(&path).expect("scenario readable");
        let mut blocks = parse(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let mut world = new_world();
        let mut mismatches = Vec::new();
        for block in &mut blocks {
            if let Block::Command { line, expected } = block {
                let actual = run(&mut world, &Command::parse(line));
                if actual != *expected {
                    mismatches.push(format!(
                        "command {line:?}\n--- expected\n{}\n--- actual\n{}",
                        expected.join("\n"),
                        actual.join("\n")
                    ));
                    *expected = actual;
                }
            }
        }
        if mismatches.is_empty() {
            continue;
        }
        if rewrite {
            fs::write(&path, render(&blocks)).expect("scenario writable");
        } else {
            failures.push(format!("{}:\n{}", path.display(), mismatches.join("\n\n")));
        }
    }
    assert!(
        failures.is_empty(),
        "scenario mismatches (REWRITE=1 to accept):\n{}",
        failures.join("\n\n")
    );
}
