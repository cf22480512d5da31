//! Progress of long-running commands: a bar on a terminal, plain log lines otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Reports progress of a task with a known number of steps.
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    done: u64,
    last_logged_percent: u64,
}

impl Progress {
    /// Starts reporting `total` steps of the task called `label`.
    pub fn new(label: &str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) =
                ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {elapsed_precise}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label.to_owned());
            bar
        });
        Self {
            bar,
            label: label.to_owned(),
            total: total.max(1),
            done: 0,
            last_logged_percent: 0,
        }
    }

    /// Marks `steps` more steps done.
    pub fn advance(&mut self, steps: u64) {
        self.done += steps;
        match &self.bar {
            Some(bar) => bar.inc(steps),
            None => {
                let percent = self.done * 100 / self.total;
                if percent >= self.last_logged_percent + 25 || self.done == self.total {
                    self.last_logged_percent = percent;
                    tracing::info!(
                        "{}: {}% ({}/{})",
                        self.label,
                        percent,
                        self.done,
                        self.total
                    );
                }
            }
        }
    }

    /// Ends the bar.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
