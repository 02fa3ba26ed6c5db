//! The one place a client command's result is printed: with `--json`
//! exactly one JSON document (the shapes of SPEC §8) on standard output,
//! otherwise text for a person. Commands build both and never test
//! `--json` themselves, so the two cannot drift apart command by command.

use serde_json::Value;

/// Prints `document` as one line of JSON when `json` is set, otherwise the
/// text `text` makes (only built when it is printed).
pub fn print(json: bool, document: Value, text: impl FnOnce() -> String) {
    if json {
        println!("{document}");
    } else {
        let text = text();
        if !text.is_empty() {
            println!("{}", text.trim_end_matches('\n'));
        }
    }
}

/// A JSON value as table text: strings bare, null as `-`.
pub fn cell(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// Milliseconds since the Unix epoch as an RFC 3339 time in UTC, to the
/// second (`2026-12-02T14:08:56Z`); times before the epoch read as it.
pub fn time(ms: i64) -> String {
    let since_epoch = std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + since_epoch).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_show_strings_bare_and_null_as_a_dash() {
        assert_eq!(cell(&Value::String("node1".into())), "node1");
        assert_eq!(cell(&Value::Null), "-");
        assert_eq!(cell(&serde_json::json!(42)), "42");
    }

    #[test]
    fn times_are_rfc_3339_in_utc() {
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(time(1_764_684_536_000), "2025-12-02T14:08:56Z");
        assert_eq!(time(-5), "1970-01-01T00:00:00Z");
    }
}
