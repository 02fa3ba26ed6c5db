//! Progress bars for long work (SPEC §14 "Progress"): drawn on standard
//! error when a person is watching (standard output and standard error
//! are terminals and `--json` was not given), absent otherwise, so scripts
//! and logs see only the result.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Whether a person is watching this command's output.
fn for_a_person(json: bool) -> bool {
    !json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

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
        if !for_a_person(json) {
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

/// A bar of `len` steps labelled `label` with the time left, or a hidden
/// one (every call on it is then a no-op), for work counted from several
/// places (bench workers, import).
pub fn bar(json: bool, len: u64, label: &str) -> ProgressBar {
    if !for_a_person(json) {
        return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta} left)") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_string());
    bar
}
