//! The printer: the only place that writes to stdout and stderr.
//!
//! The command's result (a report, a plan, JSON) goes to stdout; messages, warnings, errors and
//! progress go to stderr. Progress bars are drawn only when stderr is a terminal.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{self, IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::Progress;

use super::args::GlobalArgs;
use crate::diagnostic::{Diagnostic, Severity};

pub struct Printer {
    pub json: bool,
    quiet: bool,
    verbose: u8,
    progress: bool,
}

impl Printer {
    /// How many `-v` were given: renderers show full detail above zero.
    pub fn verbose(&self) -> u8 {
        self.verbose
    }

    pub fn new(g: &GlobalArgs) -> Printer {
        let progress = !g.no_progress
            && !g.quiet
            && std::env::var_os("WHEELSLIM_NO_PROGRESS").is_none()
            && io::stderr().is_terminal();
        Printer {
            json: g.json,
            quiet: g.quiet,
            verbose: g.verbose,
            progress,
        }
    }

    /// Writes the command's result to stdout.
    pub fn result(&self, text: &str) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    /// Writes a JSON document (one line) to stdout.
    pub fn json_value<T: serde::Serialize>(&self, value: &T) -> io::Result<()> {
        let mut out = io::stdout().lock();
        serde_json::to_writer(&mut out, value).map_err(io::Error::other)?;
        out.write_all(b"\n")?;
        out.flush()
    }

    /// A message for people (stderr), unless `--quiet`.
    pub fn info(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }

    /// A warning that is not about a wheel (stderr), unless `--quiet`.
    pub fn warning(&self, msg: &str) {
        if !self.quiet {
            eprintln!("warning: {msg}");
        }
    }

    /// Detail shown with `-v`.
    pub fn detail(&self, msg: &str) {
        if self.verbose > 0 && !self.quiet {
            eprintln!("{msg}");
        }
    }

    pub fn diagnostic(&self, d: &Diagnostic) {
        if self.quiet && d.severity != Severity::Error {
            return;
        }
        let label = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        if d.location.is_empty() {
            eprintln!("{label}: {}", d.message);
        } else {
            eprintln!("{label}: {}: {}", d.location, d.message);
        }
        if let Some(h) = &d.hint {
            eprintln!("  hint: {h}");
        }
    }

    pub fn error(&self, e: &anyhow::Error) {
        eprintln!("error: {e}");
        for cause in e.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        if let Some(ws) = e.downcast_ref::<crate::Error>()
            && let Some(h) = ws.hint()
        {
            eprintln!("  hint: {h}");
        }
    }

    /// A progress bar over bytes whose length and message the library sets phase by phase
    /// (hidden when not on a terminal). It draws nothing until the library has set a total:
    /// a bar over 0 of 0 bytes would be a full bar at `0 B/0 B`.
    pub fn bytes_progress(&self) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        // A length of 0, not none: the inspect pass grows it wheel by wheel (`inc_length`).
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {msg:<24} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        // Shown once there is a total to show. Redrawn on a timer too: a phase change, or one
        // large member being rewritten, would otherwise leave the last rate-limited frame on
        // the screen.
        let watched = bar.clone();
        std::thread::spawn(move || {
            loop {
                if watched.is_finished() {
                    return;
                }
                if ready_to_draw(watched.length()) {
                    watched.set_draw_target(ProgressDrawTarget::stderr());
                    watched.enable_steady_tick(std::time::Duration::from_millis(200));
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        bar
    }
}

/// A bar is worth drawing once its total is known and not zero.
fn ready_to_draw(length: Option<u64>) -> bool {
    length.is_some_and(|l| l > 0)
}

/// The library counts, the command line draws: its progress is an indicatif bar.
impl Progress for ProgressBar {
    fn set_message(&self, message: &'static str) {
        ProgressBar::set_message(self, message);
    }
    fn set_length(&self, total: u64) {
        ProgressBar::set_length(self, total);
    }
    fn inc_length(&self, more: u64) {
        ProgressBar::inc_length(self, more);
    }
    fn set_position(&self, done: u64) {
        ProgressBar::set_position(self, done);
    }
    fn inc(&self, n: u64) {
        ProgressBar::inc(self, n);
    }
}

#[cfg(test)]
mod progress_tests {
    use super::*;

    #[test]
    fn no_frame_before_the_total_is_known() {
        assert!(!ready_to_draw(None));
        assert!(!ready_to_draw(Some(0)));
        assert!(ready_to_draw(Some(1)));
        // The library's phases: the inspect pass grows the total wheel by wheel.
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
        assert!(!ready_to_draw(bar.length()));
        bar.inc_length(0);
        assert!(!ready_to_draw(bar.length()));
        bar.inc_length(26705);
        assert!(ready_to_draw(bar.length()));
    }
}
