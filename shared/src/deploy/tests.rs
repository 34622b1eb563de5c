//! Window classes and schedules from a pipeline file, and the template written from them.

use super::template::{render, BASE};
use super::*;

const MIXED: &str = r#"
    [landing]
    uri = "s3://landing/incoming"
    [lake]
    uri = "file:///tmp/lake"

    [[table]]
    name = "clicks"
    format = "jsonl"
    keys = ["id"]
    batch_size = 1
    batch_window_seconds = 0

    [[table]]
    name = "orders"
    format = "jsonl"
    keys = ["id"]

    [[table]]
    name = "payments"
    format = "jsonl"
    keys = ["id"]

    [[table]]
    name = "stock"
    format = "jsonl"
    keys = ["id"]
    batch_size = 1000
    batch_window_seconds = 300

    [[table]]
    name = "burst"
    format = "jsonl"
    keys = ["id"]
    batch_size = 500
    batch_window_seconds = 0.5

    [[table]]
    name = "ledger"
    format = "jsonl"
    keys = ["id"]
    batch_window_seconds = 86400

    [[table]]
    name = "fx"
    format = "jsonl"
    keys = ["id"]
    batch_window_seconds = 86400

    [[table]]
    name = "audit"
    format = "jsonl"
    batch_window_seconds = 21700

    [[gold]]
    name = "revenue"
    sql = "SELECT id, COUNT(*) AS n FROM orders GROUP BY id"
    keys = ["id"]
    sources = ["orders"]

    [[gold]]
    name = "daily_close"
    sql = "SELECT id, COUNT(*) AS n FROM ledger GROUP BY id"
    keys = ["id"]
    sources = ["ledger"]
    batch_window_seconds = 86400

    [[gold]]
    name = "daily_orders"
    sql = "SELECT id, COUNT(*) AS n FROM orders GROUP BY id"
    keys = ["id"]
    sources = ["orders"]
    batch_window_seconds = 86400
"#;

fn mixed() -> PipelineConfig {
    PipelineConfig::from_toml(MIXED, "mixed.toml").unwrap()
}

fn class<'a>(plan: &'a Plan, id: &str) -> &'a BronzeClass {
    plan.bronze.iter().find(|c| c.id() == id).unwrap()
}

fn tables(c: &BronzeClass) -> Vec<&str> {
    c.tables.iter().map(|(t, _)| t.as_str()).collect()
}

#[test]
fn tables_share_a_bronze_queue_per_window_and_batch_size() {
    let plan = Plan::of(&mixed());
    let ids: Vec<String> = plan.bronze.iter().map(BronzeClass::id).collect();
    assert_eq!(ids, ["W0B1", "W0B10", "W1B100", "W300B100", "W300B1000"]);
    assert_eq!(tables(class(&plan, "W1B100")), ["orders", "payments"]);
    // Half a second is no whole second: no window, so at most 10 messages per batch.
    assert_eq!(tables(class(&plan, "W0B10")), ["burst"]);
    // Long windows: bronze waits a fifteenth of the window, at most 300 s; the bronze-only table has
    // no silver schedule.
    assert_eq!(tables(class(&plan, "W300B100")), ["ledger", "fx", "audit"]);
    assert_eq!(
        class(&plan, "W1B100").tables[0],
        ("orders".to_string(), "incoming/orders/".to_string())
    );
}

#[test]
fn windows_above_an_event_source_mapping_get_schedules() {
    let plan = Plan::of(&mixed());
    let got: Vec<(Downstream, String, Vec<String>)> = plan
        .schedules
        .iter()
        .map(|s| (s.step, s.expression(), s.names.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                Downstream::Silver,
                "rate(1 day)".to_string(),
                vec!["ledger".to_string(), "fx".to_string()]
            ),
            // daily_close reads a daily table: it follows that table's scheduled commits instead.
            (
                Downstream::Gold,
                "rate(1 day)".to_string(),
                vec!["daily_orders".to_string()]
            ),
        ]
    );
    let every = |m| Schedule {
        step: Downstream::Silver,
        every_minutes: m,
        part: 1,
        names: vec![],
    };
    assert_eq!(every(5).expression(), "rate(5 minutes)");
    assert_eq!(every(1).expression(), "rate(1 minute)");
    assert_eq!(every(120).expression(), "rate(2 hours)");
    assert_eq!(every(4320).expression(), "rate(3 days)");
    assert_eq!(
        serde_json::to_value(plan.schedules[0].input()).unwrap(),
        serde_json::json!({"type": "scheduled", "step": "silver", "names": ["ledger", "fx"]})
    );
    assert_eq!(
        plan.scheduled_list(),
        "silver:ledger,silver:fx,gold:daily_orders"
    );
    let cfg = mixed();
    let view = |n: &str| cfg.view(n).unwrap();
    assert_eq!(view_staleness(&cfg, view("revenue")).as_secs(), 1);
    assert_eq!(
        view_staleness(&cfg, view("daily_close")).as_secs(),
        86_400 + 300
    );
    assert_eq!(
        view_staleness(&cfg, view("daily_orders")).as_secs(),
        86_400 + 1
    );
}

#[test]
fn staleness_on_aws_is_the_window_or_the_schedule_plus_bronzes_minute() {
    let cfg = mixed();
    let stale = |t: &str| aws_staleness(&cfg.table(t).unwrap().trigger).as_secs();
    assert_eq!(stale("orders"), 1);
    assert_eq!(stale("stock"), 300);
    assert_eq!(stale("ledger"), 86_400 + 300);
    // 21,700 s is 361 minutes and 40 s: scheduled every 361 minutes.
    assert_eq!(stale("audit"), 361 * 60 + 300);
    // A 15-minute window: bronze waits 60 s, the schedule runs every 15 minutes.
    let quarter = TriggerWindow {
        max_batch: 100,
        max_wait: Duration::from_secs(900),
    };
    assert_eq!(scheduled_bronze_window_s(&quarter), 60);
    assert_eq!(aws_staleness(&quarter).as_secs(), 960);
    assert!(kept_exactly(&cfg.table("orders").unwrap().trigger));
    assert!(!kept_exactly(&cfg.table("burst").unwrap().trigger));
    assert!(!kept_exactly(&cfg.table("audit").unwrap().trigger));
}

#[test]
fn the_template_has_each_class_rule_mapping_and_schedule() {
    let text = render(&mixed(), "mixed.toml", BASE).unwrap();
    assert!(!text.contains("{{"), "a marker was left in the template");
    // A freshness alarm per announced silver table (audit is bronze-only; ledger and fx run on a
    // schedule), at its bound plus the margin, named after it.
    assert_eq!(text.matches("MetricName: FreshnessSeconds\n").count(), 5);
    assert!(text.contains("  FreshnessStockAlarm:\n"));
    assert!(text.contains("{ Name: Table, Value: \"stock\" }]\n      Statistic: Maximum\n      Period: 300\n      EvaluationPeriods: 1\n      Threshold: 420\n"));
    assert!(!text.contains("Value: \"ledger\" }]"));
    for id in ["W0B1", "W0B10", "W1B100", "W300B100", "W300B1000"] {
        for part in [
            "Queue:",
            "DeadLetterQueue:",
            "QueuePolicy:",
            "Rule1:",
            "DeadLetterAlarm:",
            "QueueAgeAlarm:",
        ] {
            assert!(
                text.contains(&format!("  Bronze{id}{part}\n")),
                "Bronze{id}{part}"
            );
        }
        assert!(text.contains(&format!("        Landing{id}:\n")));
    }
    assert!(text.contains(
        "            Queue: !GetAtt BronzeW300B1000Queue.Arn\n            BatchSize: 1000\n            MaximumBatchingWindowInSeconds: 300\n"
    ));
    assert!(text.contains("              - prefix: \"incoming/ledger/\"\n"));
    // The schedule's input, as written, is what the silver function parses.
    let input = text
        .lines()
        .find(|l| l.contains("Input: \"{") && l.contains("silver"))
        .unwrap();
    let json: String = serde_json::from_str(input.trim().trim_start_matches("Input: ")).unwrap();
    assert_eq!(
        <Vec<crate::events::LayerTrigger> as crate::events::Content>::parse_text(&json).ok(),
        Some(vec![crate::events::LayerTrigger::Scheduled(
            crate::events::Scheduled::new("silver", vec!["ledger".into(), "fx".into()])
        )])
    );
    assert!(text
        .contains("        LAKEHOUSE_SCHEDULED: \"silver:ledger,silver:fx,gold:daily_orders\"\n"));
    assert!(text.contains(
        "#   view daily_close: 86400 s / 100 messages -> follows its tables' silver commits; <= 86700 s\n"
    ));
    assert!(text.contains(
        "#   table burst: 0.5 s / 500 messages -> bronze class W0B10; <= 0 s (rounded down"
    ));
}

#[test]
fn a_class_with_many_tables_gets_several_rules() {
    let mut toml =
        String::from("[landing]\nuri = \"s3://landing\"\n[lake]\nuri = \"file:///tmp/l\"\n");
    for i in 0..90 {
        toml.push_str(&format!(
            "[[table]]\nname = \"t{i}\"\nformat = \"jsonl\"\nkeys = [\"id\"]\n"
        ));
    }
    let cfg = PipelineConfig::from_toml(&toml, "many.toml").unwrap();
    let text = render(&cfg, "many.toml", BASE).unwrap();
    // Short prefixes: 80 fit one rule's pattern.
    assert!(text.contains("  BronzeW1B100Rule2:\n"));
    assert!(!text.contains("  BronzeW1B100Rule3:\n"));
    assert_eq!(text.matches("              - prefix: ").count(), 90);
    assert_eq!(
        text.matches("                  - !GetAtt BronzeW1B100Rule")
            .count(),
        2
    );
    // Descriptions stay under AWS's 512 characters, saying how many names they leave out.
    let desc = text
        .lines()
        .find(|l| l.contains("Description: \"Landing objects"))
        .unwrap();
    assert!(desc.len() < 450 && desc.contains(" more\""), "{desc}");
    // Long prefixes: each rule's entries stay within the pattern's budget.
    let tables: Vec<(String, String)> = (0..40)
        .map(|i| {
            (
                format!("t{i}"),
                format!("incoming/erp/finance/general_ledger/entries_{i}/"),
            )
        })
        .collect();
    let chunks = super::template::rule_chunks(&tables);
    assert!(chunks.len() >= 2);
    assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 40);
    for c in chunks {
        let chars: usize = c.iter().map(|(_, p)| p.len() + 16).sum();
        assert!(chars <= 1_600, "{chars}");
    }
}

#[test]
fn a_base_without_its_markers_is_refused() {
    let e = render(&mixed(), "mixed.toml", "Resources: {}\n").unwrap_err();
    assert!(e.to_string().contains("{{bronze_queues}}"), "{e}");
}
