//! Progress of a long command: a bar on a terminal, plain lines otherwise (Cloud Run, CI, pipes).

use std::io::IsTerminal;
use std::sync::Mutex;

/// Receives progress; shared by concurrent tasks.
pub trait Progress: Sync {
    /// `total` units to do, `skipped` already done before starting.
    fn start(&self, total: u64, skipped: u64);
    /// One unit done.
    fn step(&self, what: &str);
    /// All done.
    fn finish(&self);
    /// A line about the REST weight used (one per minute in `batch backfill`).
    fn weight(&self, line: &str);
}

/// The right reporter for stderr: a bar on a terminal, lines otherwise.
pub fn for_stderr() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(Bar(indicatif::ProgressBar::hidden()))
    } else {
        Box::new(Lines::default())
    }
}

/// An `indicatif` bar.
pub struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn start(&self, total: u64, skipped: u64) {
        self.0
            .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        self.0.set_length(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} eta {eta} {msg}",
        ) {
            self.0.set_style(style.progress_chars("=> "));
        }
        self.0
            .println(format!("{total} to load, {skipped} already complete"));
    }
    fn step(&self, what: &str) {
        self.0.set_message(what.to_owned());
        self.0.inc(1);
    }
    fn finish(&self) {
        self.0.finish();
    }
    fn weight(&self, line: &str) {
        self.0.println(line);
    }
}

/// One line per unit on stderr: `progress 12/120 BTCUSDT 2026-01-03 1440 rows`.
#[derive(Default)]
pub struct Lines {
    /// (done, total)
    state: Mutex<(u64, u64)>,
}

impl Progress for Lines {
    fn start(&self, total: u64, skipped: u64) {
        *self.state.lock().expect("progress lock") = (0, total);
        eprintln!("progress 0/{total} ({skipped} already complete)");
    }
    fn step(&self, what: &str) {
        let mut s = self.state.lock().expect("progress lock");
        s.0 += 1;
        eprintln!("progress {}/{} {what}", s.0, s.1);
    }
    fn finish(&self) {
        let s = self.state.lock().expect("progress lock");
        eprintln!("progress done {}/{}", s.0, s.1);
    }
    fn weight(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// Reports nothing (tests, library callers).
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: u64, _: u64) {}
    fn step(&self, _: &str) {}
    fn finish(&self) {}
    fn weight(&self, _: &str) {}
}
