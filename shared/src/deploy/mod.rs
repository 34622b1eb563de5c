//! Deploying a pipeline on AWS: which queue, event source mapping or schedule keeps each table's and
//! view's trigger window ([`Plan`]), and the SAM template that wires them ([`template`]).
//!
//! A window is kept once, end to end (see the README's "Trigger windows"): on AWS by the bronze queue's
//! event source mapping (`BatchSize`, `MaximumBatchingWindowInSeconds`), silver and gold then follow each
//! commit at once. An event source mapping waits at most 300 s, so a longer window is kept by an
//! EventBridge Scheduler schedule that runs the silver step (or the gold view) directly; bronze still
//! ingests such a table within a fifteenth of its window, at most 300 s ([`scheduled_bronze_window_s`]),
//! so the raw layer stays fresh.
//!
//! Tables are grouped into **classes**, one per distinct (window, batch size) of their bronze queue:
//! each class has its own queue, DLQ and event source mapping, and EventBridge rules route each
//! table's landing prefix to its class's queue. Long windows get one schedule per period and layer (a
//! few names each). A gold view follows its tables' silver commits unless its window is above 300 s
//! and longer than one of its tables' (then it has a schedule of its own): a daily view over daily
//! tables runs right after their scheduled silver steps.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{GoldView, PipelineConfig, TriggerWindow, EVENT_SOURCE_MAX_WAIT};
use crate::events::Scheduled;
use crate::handler::{Downstream, Windows};

pub mod template;

/// The bronze window of a table whose window `w` only a schedule can keep: a fifteenth of it, at most
/// what a mapping waits. A scheduled silver step sees what landed up to this long before it, so rows
/// are at most ~7% later than the window asks (16 min for 15, 24 h 5 min for a day), the raw layer is
/// at most 5 minutes stale, and a daily table's bronze runs 12 steps an hour, not 60.
pub fn scheduled_bronze_window_s(w: &TriggerWindow) -> u64 {
    (w.max_wait.as_secs() / 15).min(EVENT_SOURCE_MAX_WAIT.as_secs())
}
/// An SQS event source mapping takes at most 10 messages per batch without a batching window.
pub const UNWINDOWED_MAX_BATCH: usize = 10;

/// A bronze trigger class: the tables whose landing events share one queue and event source mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BronzeClass {
    /// `MaximumBatchingWindowInSeconds`.
    pub window_s: u64,
    /// `BatchSize`.
    pub batch_size: usize,
    /// The tables, and the landing key prefix of each (what the class's EventBridge rules match).
    pub tables: Vec<(String, String)>,
}

impl BronzeClass {
    /// Its name in the template's logical ids (`W60B100`: 60 s, 100 messages).
    pub fn id(&self) -> String {
        format!("W{}B{}", self.window_s, self.batch_size)
    }
}

/// A schedule: every `every_minutes`, the `step` of `names` (silver tables or gold views).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub step: Downstream,
    pub every_minutes: u64,
    /// 1, 2, ...: a period's names are split so one invocation runs them in one wave.
    pub part: usize,
    pub names: Vec<String>,
}

/// Most names one schedule runs: one invocation (300 s) runs them together, as many at once as a
/// batch's tables (`TABLE_CONCURRENCY`), and a failed one makes Lambda retry them all.
pub const NAMES_PER_SCHEDULE: usize = 4;

impl Schedule {
    /// Its name among the function's events (`Every1440Minutes`, then `Every1440MinutesPart2`...).
    pub fn id(&self) -> String {
        match self.part {
            1 => format!("Every{}Minutes", self.every_minutes),
            k => format!("Every{}MinutesPart{k}", self.every_minutes),
        }
    }

    /// EventBridge Scheduler's rate expression (a unit is singular for 1).
    pub fn expression(&self) -> String {
        let m = self.every_minutes;
        let (n, unit) = if m.is_multiple_of(1440) {
            (m / 1440, "day")
        } else if m.is_multiple_of(60) {
            (m / 60, "hour")
        } else {
            (m, "minute")
        };
        format!("rate({n} {unit}{})", if n == 1 { "" } else { "s" })
    }

    /// What the schedule sends the function.
    pub fn input(&self) -> Scheduled {
        Scheduled::new(self.step.name(), self.names.clone())
    }
}

/// Where each table's and view's window is kept on AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub bronze: Vec<BronzeClass>,
    pub schedules: Vec<Schedule>,
}

/// Whether view `v` needs a schedule of its own: its window is above what a mapping waits and longer
/// than one of its tables' (whose commits would run it too early). Otherwise it follows their commits.
pub(crate) fn view_scheduled(config: &PipelineConfig, v: &GoldView) -> bool {
    v.trigger.scheduled_on_lambda()
        && v.sources.iter().any(|s| {
            config
                .table(s)
                .is_none_or(|t| t.trigger.max_wait < v.trigger.max_wait)
        })
}

/// A table's bronze event source mapping: (window in whole seconds, batch size). A window is rounded
/// down to whole seconds (never later than asked); without a window a mapping takes at most 10
/// messages.
fn bronze_mapping(w: &TriggerWindow) -> (u64, usize) {
    let window_s = if w.scheduled_on_lambda() {
        scheduled_bronze_window_s(w)
    } else {
        w.max_wait.as_secs()
    };
    let batch = if window_s == 0 {
        w.max_batch.min(UNWINDOWED_MAX_BATCH)
    } else {
        w.max_batch
    };
    (window_s, batch)
}

/// A long window's schedule period, in whole minutes (rounded down; never under 5, as windows above
/// 300 s are the only ones scheduled).
fn schedule_minutes(w: &TriggerWindow) -> Option<u64> {
    w.scheduled_on_lambda().then_some(w.max_wait.as_secs() / 60)
}

impl Plan {
    pub fn of(config: &PipelineConfig) -> Plan {
        let landing = config.landing.prefix();
        let mut classes: BTreeMap<(u64, usize), Vec<(String, String)>> = BTreeMap::new();
        let mut schedules: BTreeMap<(Downstream, u64), Vec<String>> = BTreeMap::new();
        for t in &config.tables {
            let prefix = if landing.is_empty() {
                t.prefix.clone()
            } else {
                format!("{landing}/{}", t.prefix)
            };
            classes
                .entry(bronze_mapping(&t.trigger))
                .or_default()
                .push((t.name.clone(), prefix));
            if let (Some(m), true) = (schedule_minutes(&t.trigger), t.has_silver()) {
                schedules
                    .entry((Downstream::Silver, m))
                    .or_default()
                    .push(t.name.clone());
            }
        }
        for v in config.gold.iter().filter(|v| view_scheduled(config, v)) {
            if let Some(m) = schedule_minutes(&v.trigger) {
                schedules
                    .entry((Downstream::Gold, m))
                    .or_default()
                    .push(v.name.clone());
            }
        }
        Plan {
            bronze: classes
                .into_iter()
                .map(|((window_s, batch_size), tables)| BronzeClass {
                    window_s,
                    batch_size,
                    tables,
                })
                .collect(),
            schedules: schedules
                .into_iter()
                .flat_map(|((step, every_minutes), names)| {
                    names
                        .chunks(NAMES_PER_SCHEDULE)
                        .enumerate()
                        .map(|(i, names)| Schedule {
                            step,
                            every_minutes,
                            part: i + 1,
                            names: names.to_vec(),
                        })
                        .collect::<Vec<_>>()
                })
                .collect(),
        }
    }

    /// What the functions are told the schedules run ([`crate::handler::SCHEDULED_ENV`]).
    pub fn scheduled_list(&self) -> String {
        self.schedules
            .iter()
            .flat_map(|s| s.names.iter().map(|n| Windows::item(s.step, n)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// How stale a table's silver rows may get on AWS under this plan, beyond the steps' own time: its
/// bronze window, or for a scheduled one its schedule period plus the bronze window (rows that landed
/// just before a scheduled step wait for bronze, then for the next run).
pub fn aws_staleness(w: &TriggerWindow) -> Duration {
    match schedule_minutes(w) {
        Some(m) => Duration::from_secs(m * 60 + scheduled_bronze_window_s(w)),
        None => Duration::from_secs(bronze_mapping(w).0),
    }
}

/// How stale a view may get on AWS: its stalest table's bound, plus its own period when it has a
/// schedule (a change reaches silver, then waits for the view's next run).
pub fn view_staleness(config: &PipelineConfig, v: &GoldView) -> Duration {
    let sources = v
        .sources
        .iter()
        .filter_map(|s| config.table(s))
        .map(|t| aws_staleness(&t.trigger))
        .max()
        .unwrap_or_default();
    match (view_scheduled(config, v), schedule_minutes(&v.trigger)) {
        (true, Some(m)) => sources + Duration::from_secs(m * 60),
        _ => sources,
    }
}

/// Whether every window the pipeline asks for is one AWS keeps as asked (whole seconds up to
/// [`EVENT_SOURCE_MAX_WAIT`]; whole minutes above).
pub fn kept_exactly(w: &TriggerWindow) -> bool {
    let whole_s = w.max_wait.subsec_nanos() == 0;
    if w.max_wait <= EVENT_SOURCE_MAX_WAIT {
        whole_s && (w.max_wait.as_secs() > 0 || w.max_batch <= UNWINDOWED_MAX_BATCH)
    } else {
        whole_s && w.max_wait.as_secs().is_multiple_of(60)
    }
}

#[cfg(test)]
mod tests;
