//! Progress bars for long work (SPEC §14 "Progress"): drawn on a terminal,
//! absent when standard output is not one or `--json` was given, so
//! scripts and logs see only the result.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A progress bar, or nothing when output is not for a person.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar counting bytes, labelled `message`.
    pub fn bytes(json: bool, message: &'static str) -> Self {
        Self::with_template(
            json,
            message,
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
        )
    }

    /// A bar counting steps (e.g. nodes written), labelled `message`.
    pub fn steps(json: bool, message: &'static str) -> Self {
        Self::with_template(json, message, "{msg} [{bar:30}] {pos}/{len}")
    }

    fn with_template(json: bool, message: &'static str, template: &str) -> Self {
        if json || !std::io::stdout().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::new(0).with_message(message);
        // The templates are constants; a bad one would only lose the style.
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress { bar: Some(bar) }
    }

    /// `done` of `total` so far.
    pub fn set(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    /// Removes the bar, before the result is printed.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
