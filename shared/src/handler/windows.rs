//! Which steps a schedule runs instead of the queues. Off AWS (the runner) every window is kept on the
//! queues: nothing is scheduled. On Lambda an event source mapping waits at most 300 s, so the AWS
//! template schedules the silver steps of tables (and the gold views) whose window is longer, and tells
//! the functions which in [`SCHEDULED_ENV`]: nothing announces those, so each runs once per window.
//! The set comes from the deployment, not from the pipeline file, so a file whose windows changed
//! without a redeploy never leaves a table with neither announcements nor a schedule; the difference
//! is logged at cold start ([`Windows::disagreements`]).

use std::collections::BTreeSet;

use super::Downstream;
use crate::config::PipelineConfig;

/// The functions' environment variable naming the scheduled steps: `silver:<table>,gold:<view>`.
pub const SCHEDULED_ENV: &str = "LAKEHOUSE_SCHEDULED";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Windows {
    scheduled: BTreeSet<String>,
}

impl Windows {
    /// `silver:a,gold:b` (blanks and empty items ignored).
    pub fn parse(list: &str) -> Windows {
        Windows {
            scheduled: list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }

    /// What the deployment schedules ([`SCHEDULED_ENV`]; unset: nothing).
    pub fn from_env() -> Windows {
        Windows::parse(&std::env::var(SCHEDULED_ENV).unwrap_or_default())
    }

    /// The list's item for `step` of `name`.
    pub fn item(step: Downstream, name: &str) -> String {
        format!("{}:{name}", step.name())
    }

    /// Whether a schedule, not upstream commits, runs `step` of `name`.
    pub fn scheduled(&self, step: Downstream, name: &str) -> bool {
        self.scheduled.contains(&Self::item(step, name))
    }

    /// Whether bronze announces its commits of `table` to silver.
    pub fn announces(&self, table: &str) -> bool {
        !self.scheduled(Downstream::Silver, table)
    }

    /// Where the pipeline file and the deployment disagree: a table or view whose window only a
    /// schedule can keep on Lambda but that nothing schedules (it runs on every commit: fresher and
    /// dearer than asked), and a scheduled name the file does not have. Regenerating the template
    /// (`lakehouse aws-template`) and redeploying mends both.
    pub fn disagreements(&self, config: &PipelineConfig) -> Vec<String> {
        let mut out = Vec::new();
        for t in config.tables.iter().filter(|t| t.has_silver()) {
            if t.trigger.scheduled_on_lambda() && !self.scheduled(Downstream::Silver, &t.name) {
                out.push(format!(
                    "table {}: window above 300 s but no schedule deployed",
                    t.name
                ));
            }
        }
        for item in &self.scheduled {
            let known = match item.split_once(':') {
                Some(("silver", t)) => config.table(t).is_some(),
                Some(("gold", v)) => config.view(v).is_some(),
                _ => false,
            };
            if !known {
                out.push(format!(
                    "{SCHEDULED_ENV} names `{item}`, not in the pipeline file"
                ));
            }
        }
        out
    }

    /// Logs [`Windows::disagreements`] (a function's cold start).
    pub fn warn_disagreements(&self, config: &PipelineConfig) {
        for d in self.disagreements(config) {
            tracing::warn!(disagreement = %d, "the deployed schedules and the pipeline file disagree; regenerate the template");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployment_names_what_its_schedules_run() {
        let w = Windows::parse(" silver:ledger, gold:daily ,,");
        assert!(w.scheduled(Downstream::Silver, "ledger"));
        assert!(!w.announces("ledger"));
        assert!(w.announces("orders"));
        assert!(w.scheduled(Downstream::Gold, "daily"));
        assert!(!w.scheduled(Downstream::Gold, "ledger"));
        assert_eq!(Windows::default(), Windows::parse(""));
        let cfg = PipelineConfig::from_toml(
            "[landing]\nuri = \"s3://l\"\n[lake]\nuri = \"file:///tmp/l\"\n[[table]]\nname = \"ledger\"\nformat = \"jsonl\"\nkeys = [\"id\"]\nbatch_window_seconds = 86400\n[[table]]\nname = \"fx\"\nformat = \"jsonl\"\nkeys = [\"id\"]\nbatch_window_seconds = 3600\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            w.disagreements(&cfg),
            [
                "table fx: window above 300 s but no schedule deployed",
                "LAKEHOUSE_SCHEDULED names `gold:daily`, not in the pipeline file"
            ]
        );
    }
}
