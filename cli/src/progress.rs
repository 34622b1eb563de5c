//! The backfill's progress bar on stderr (hidden when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};
use lakehouse::backfill::Progress;

pub struct Bar(ProgressBar);

impl Bar {
    pub fn new(visible: bool) -> Bar {
        let bar = if visible {
            ProgressBar::new(0)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} objects ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Bar(bar)
    }
}

impl Progress for Bar {
    fn start(&self, objects: usize) {
        self.0.set_length(objects as u64);
    }
    fn stage(&self, stage: &str) {
        self.0.set_message(stage.to_string());
    }
    fn advance(&self, objects: usize) {
        self.0.inc(objects as u64);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
