//! Trigger windows: how many messages, or how long, a table or view waits before its batch runs.

use std::time::Duration;

use crate::error::{Error, Result};

/// A trigger window: a batch is handed to the function when it holds `max_batch` messages or its
/// oldest message has waited `max_wait`, whichever comes first (Lambda's `BatchSize` and
/// `MaximumBatchingWindowInSeconds`). Per-event: 1 and 0 s; daily: large and 86,400 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerWindow {
    pub max_batch: usize,
    pub max_wait: Duration,
}

impl Default for TriggerWindow {
    fn default() -> Self {
        TriggerWindow {
            max_batch: 100,
            max_wait: Duration::from_secs(1),
        }
    }
}

/// `1 s / 100 messages`: how the runner's log and the AWS template's header name a window.
impl std::fmt::Display for TriggerWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} s / {} messages",
            self.max_wait.as_secs_f64(),
            self.max_batch
        )
    }
}

/// The longest an AWS Lambda SQS event source mapping waits to fill a batch
/// (`MaximumBatchingWindowInSeconds`).
pub const EVENT_SOURCE_MAX_WAIT: Duration = Duration::from_secs(300);

impl TriggerWindow {
    /// Whether, on Lambda, this window is kept by a schedule rather than by a queue: it is longer than
    /// an event source mapping can wait.
    pub fn scheduled_on_lambda(&self) -> bool {
        self.max_wait > EVENT_SOURCE_MAX_WAIT
    }

    pub(super) fn from_raw(
        table: &str,
        batch_size: Option<usize>,
        window_s: Option<f64>,
    ) -> Result<Self> {
        let d = TriggerWindow::default();
        let max_batch = batch_size.unwrap_or(d.max_batch);
        if !(1..=10_000).contains(&max_batch) {
            return Err(Error::config(
                table,
                "batch_size",
                "must be between 1 and 10000",
            ));
        }
        let max_wait = match window_s {
            None => d.max_wait,
            Some(w) if (0.0..=86_400.0).contains(&w) => Duration::from_secs_f64(w),
            Some(_) => {
                return Err(Error::config(
                    table,
                    "batch_window_seconds",
                    "must be between 0 and 86400",
                ))
            }
        };
        Ok(TriggerWindow {
            max_batch,
            max_wait,
        })
    }
}
