//! Progress for long operations: a bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use tollway_lab::lab::Progress;

/// Shows [`Progress`] steps.
pub struct Reporter {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Reporter {
    /// A reporter on stderr; `quiet` prints nothing (for `-o json`).
    pub fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(1);
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(100));
            bar
        });
        Reporter { bar, quiet }
    }

    /// Show one step.
    pub fn step(&mut self, p: Progress) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(p.total as u64);
                bar.set_position(p.done as u64);
                bar.set_message(p.message);
                if p.done >= p.total {
                    bar.finish_with_message(bar.message());
                }
            }
            None if !self.quiet => eprintln!("[{}/{}] {}", p.done, p.total, p.message),
            None => {}
        }
    }
}
