//! Config parsing, routing and the errors that name table and field.

use super::*;

const GOOD: &str = r#"
    [landing]
    uri = "s3://landing/incoming"
    [lake]
    uri = "file:///tmp/lake"

    [[table]]
    name = "orders"
    format = "jsonl"
    columns = ["order_id long not null", "amount decimal(10,2)", "placed_at timestamp"]
    keys = ["order_id"]
    sequence_by = "placed_at"

    [[table]]
    name = "customers"
    prefix = "crm/customers/"
    format = "csv"
"#;

#[test]
fn parses_a_valid_file() {
    let cfg = PipelineConfig::from_toml(GOOD, "test").unwrap();
    assert_eq!(cfg.tables.len(), 2);
    let orders = cfg.table("orders").unwrap();
    assert_eq!(orders.prefix, "orders/");
    assert_eq!(
        orders.columns.as_ref().unwrap()[1].data_type,
        ColumnType::Decimal(10, 2)
    );
    assert!(!orders.columns.as_ref().unwrap()[0].nullable);
    assert!(cfg.table("customers").unwrap().columns.is_none());
    assert_eq!(
        cfg.bronze_location("orders").url.as_str(),
        "file:///tmp/lake/bronze/orders"
    );
}

#[test]
fn routes_keys_by_bucket_and_prefix() {
    let cfg = PipelineConfig::from_toml(GOOD, "test").unwrap();
    assert_eq!(
        cfg.route("landing", "incoming/orders/a.jsonl")
            .unwrap()
            .name,
        "orders"
    );
    assert_eq!(
        cfg.route("landing", "incoming/crm/customers/x.csv")
            .unwrap()
            .name,
        "customers"
    );
    assert!(cfg.route("other", "incoming/orders/a.jsonl").is_none());
    assert!(cfg.route("landing", "orders/a.jsonl").is_none());
    assert!(cfg.route("landing", "incoming/unknown/a.jsonl").is_none());
    assert!(cfg.route("landing", "incomingorders/a.jsonl").is_none());
    // Keys no object store can address as a plain path are never routed (rejected, not retried).
    for key in [
        "incoming/orders/",
        "incoming/orders//a.jsonl",
        "incoming/orders/../orders/a.jsonl",
        "incoming/orders/./a.jsonl",
    ] {
        assert!(cfg.route("landing", key).is_none(), "{key}");
        assert!(unaddressable(key).is_some(), "{key}");
    }
}

fn err_of(text: &str) -> String {
    PipelineConfig::from_toml(text, "test")
        .unwrap_err()
        .to_string()
}

#[test]
fn the_local_example_pipeline_is_valid() {
    for (k, v) in [
        ("LANDING_BUCKET", "landing"),
        ("LAKE_BUCKET", "lake"),
        ("LOCALSTACK_ENDPOINT", "http://127.0.0.1:4566"),
        ("MINIO_ENDPOINT", "http://127.0.0.1:9000"),
        ("MINIO_ROOT_USER", "u"),
        ("MINIO_ROOT_PASSWORD", "p"),
        ("BRONZE_QUEUE", "b"),
        ("SILVER_QUEUE", "s"),
        ("GOLD_QUEUE", "g"),
    ] {
        if std::env::var(k).is_err() {
            std::env::set_var(k, v);
        }
    }
    let cfg = PipelineConfig::from_toml(
        include_str!("../../../infra/local/pipeline.toml"),
        "infra/local/pipeline.toml",
    )
    .unwrap();
    assert_eq!(cfg.notify.len(), 3);
    assert_eq!(cfg.views_on("orders").count(), 1);
}

#[test]
fn errors_name_table_and_field() {
    let base = "[landing]\nuri = \"s3://l\"\n[lake]\nuri = \"s3://k\"\n";
    let e = err_of(&format!(
        "{base}[[table]]\nname = \"t1\"\nformat = \"xml\"\n"
    ));
    assert!(
        e.contains("`t1`") && e.contains("`format`") && e.contains("xml"),
        "{e}"
    );
    let e = err_of(&format!("{base}[[table]]\nname = \"t1\"\nformat = \"csv\"\ncolumns = [\"a long\"]\nkeys = [\"b\"]\n"));
    assert!(e.contains("`keys`") && e.contains("`b`"), "{e}");
    let e = err_of(&format!(
        "{base}[[table]]\nname = \"t1\"\nformat = \"csv\"\ncolumns = [\"a lng\"]\n"
    ));
    assert!(e.contains("`columns`") && e.contains("lng"), "{e}");
    let e = err_of(&format!(
        "{base}[[table]]\nname = \"a\"\nformat = \"csv\"\n[[table]]\nname = \"b\"\nprefix = \"a/x/\"\nformat = \"csv\"\n"
    ));
    assert!(e.contains("`b`") && e.contains("overlaps"), "{e}");
    let e = err_of(&format!(
        "{base}[[table]]\nname = \"t1\"\nformat = \"csv\"\nscd_type = 3\n"
    ));
    assert!(e.contains("scd_type"), "{e}");
    let e = err_of(&format!(
        "{base}[[table]]\nname = \"t1\"\nformat = \"csv\"\ncdc = \"dms\"\n"
    ));
    assert!(e.contains("`keys`"), "{e}");
    let e = err_of(&format!(
        "{base}[[table]]\nname = \"t1\"\nformat = \"jsonl\"\ncdc = \"debezium\"\nkeys = [\"id\"]\n"
    ));
    assert!(e.contains("`row_columns`"), "{e}");
    let ok = PipelineConfig::from_toml(
        &format!("{base}[[table]]\nname = \"t1\"\nformat = \"jsonl\"\ncdc = \"debezium\"\nkeys = [\"id\"]\nrow_columns = [\"id long not null\"]\nsequence_by = \"source.lsn\"\n"),
        "test",
    );
    assert!(ok.is_ok(), "{ok:?}");
    // SCD2, retention, evolution, trigger windows and gold views name their table and field too.
    let t = "[[table]]\nname = \"t1\"\nformat = \"csv\"\ncolumns = [\"id long\", \"seq long\"]\n";
    for (extra, field) in [
        ("scd_type = 2\nkeys = [\"id\"]\n", "`sequence_by`"),
        ("scd_type = 2\nsequence_by = \"seq\"\n", "`keys`"),
        (
            "tombstone_retention_days = 0\n",
            "`tombstone_retention_days`",
        ),
        (
            "keys = [\"id\"]\nsequence_by = \"seq\"\nscd_type = 2\ntombstone_retention_days = 3\n",
            "`tombstone_retention_days`",
        ),
        (
            "csv_header = false\nunknown_fields = \"evolve\"\n",
            "`unknown_fields`",
        ),
        ("batch_size = 0\n", "`batch_size`"),
        ("batch_window_seconds = -1\n", "`batch_window_seconds`"),
    ] {
        let e = err_of(&format!("{base}{t}{extra}"));
        assert!(e.contains("`t1`") && e.contains(field), "{extra}: {e}");
    }
    let gold = |sql: &str, keys: &str, sources: &str| {
        err_of(&format!("{base}{t}[[gold]]\nname = \"v\"\nsql = \"{sql}\"\nkeys = {keys}\nsources = {sources}\n"))
    };
    let e = gold("SELEC id FROM t1", "[\"id\"]", "[\"t1\"]");
    assert!(e.contains("`v`") && e.contains("`gold.sql`"), "{e}");
    let e = gold("SELECT id FROM t1", "[]", "[\"t1\"]");
    assert!(e.contains("`gold.keys`"), "{e}");
    let e = gold("SELECT id FROM t2", "[\"id\"]", "[\"t2\"]");
    assert!(e.contains("`gold.sources`") && e.contains("`t2`"), "{e}");
    let e = err_of(&format!(
        "{base}[[table]]\nname = \"t1\"\nformat = \"csv\"\nkeyz = []\n"
    ));
    assert!(e.contains("keyz"), "{e}");
    let e = err_of("[landing]\nuri = \"http://x\"\n[lake]\nuri = \"s3://k\"\n[[table]]\nname=\"a\"\nformat=\"csv\"\n");
    assert!(e.contains("landing.uri"), "{e}");
    let e = err_of("[landing]\nuri = \"s3://${LAKEHOUSE_TEST_UNSET_VAR}\"\n[lake]\nuri = \"s3://k\"\n[[table]]\nname=\"a\"\nformat=\"csv\"\n");
    assert!(e.contains("LAKEHOUSE_TEST_UNSET_VAR"), "{e}");
}

#[test]
fn hostile_settings_are_refused_at_load() {
    let base = "[landing]\nuri = \"s3://l\"\n[lake]\nuri = \"s3://k\"\n";
    let table = "[[table]]\nname = \"t\"\nformat = \"jsonl\"\nkeys = [\"id\"]\n";
    let view = |sql: &str, source: &str| {
        format!(
            "[[gold]]\nname = \"v\"\nsql = \"{sql}\"\nkeys = [\"id\"]\nsources = [\"{source}\"]\n"
        )
    };
    for sql in [
        "COPY (SELECT 1 AS id) TO '/tmp/out.csv'",
        "INSERT INTO t VALUES (1)",
        "CREATE TABLE x AS SELECT 1 AS id",
        "SELECT 1 AS id; SELECT 2 AS id",
    ] {
        let e = err_of(&format!("{base}{table}{}", view(sql, "t")));
        assert!(
            e.contains("`v`") && e.contains("read-only query"),
            "{sql}: {e}"
        );
    }
    assert!(PipelineConfig::from_toml(
        &format!(
            "{base}{table}{}",
            view("WITH a AS (SELECT id FROM t) SELECT id FROM a", "t")
        ),
        "test"
    )
    .is_ok());
    // A table without keys has no silver: a view cannot read it.
    let raw = "[[table]]\nname = \"raw\"\nformat = \"jsonl\"\n";
    let e = err_of(&format!(
        "{base}{table}{raw}{}",
        view("SELECT id FROM raw", "raw")
    ));
    assert!(e.contains("bronze-only"), "{e}");
    for (limits, field) in [
        ("max_line_mb = 0", "max_line_mb"),
        ("max_line_mb = 100000", "max_line_mb"),
        ("max_columns = 0", "max_columns"),
        ("max_object_gb = -1", "max_object_gb"),
        ("max_rejected_rows = 0", "max_rejected_rows"),
    ] {
        let e = err_of(&format!("{base}[limits]\n{limits}\n{table}"));
        assert!(e.contains(&format!("limits.{field}")), "{limits}: {e}");
    }
    let e = err_of(&format!(
        "{base}[[table]]\nname = \"t\"\nformat = \"csv\"\ncolumns = [\"id long\", \"ID string\"]\n"
    ));
    assert!(e.contains("case-insensitive"), "{e}");
    let e = err_of(&format!(
        "{base}[[table]]\nname = \"t\"\nformat = \"csv\"\ncolumns = [\"id long\"]\ncolumn_types = [\"id string\"]\n"
    ));
    assert!(e.contains("column_types"), "{e}");
    let cfg = PipelineConfig::from_toml(
        &format!(
            "{base}[limits]\nmax_columns = 50\n{table}column_types = [\"customer_id long\"]\n"
        ),
        "test",
    )
    .unwrap();
    assert_eq!(cfg.tables[0].limits.max_columns, 50);
    assert_eq!(cfg.tables[0].column_types[0].name, "customer_id");
}

#[test]
fn snapshot_json_and_column_options_are_checked() {
    let base = "[landing]\nuri = \"s3://l\"\n[lake]\nuri = \"s3://k\"\n[[table]]\nname = \"t\"\nformat = \"csv\"\ncolumns = [\"id long not null\", \"seq long\", \"a string\"]\nkeys = [\"id\"]\n";
    let cases = [
        (
            "cdc = \"snapshot\"\nsequence_by = \"seq\"\n",
            "`sequence_by`",
        ),
        (
            "silver_columns = [\"id\"]\nexcept_columns = [\"a\"]\n",
            "not both",
        ),
        ("except_columns = [\"id\"]\n", "a key or the sequence"),
        (
            "sequence_by = \"seq\"\nsilver_columns = [\"id\", \"a\"]\n",
            "`seq` is missing",
        ),
        ("except_columns = [\"zz\"]\n", "`zz`"),
        ("ignore_null_updates = [\"id\"]\n", "never \"unchanged\""),
        ("json_path = \"data\"\n", "only a `format = \"json\"`"),
    ];
    for (extra, want) in cases {
        let e = err_of(&format!("{base}{extra}"));
        assert!(e.contains(want), "{extra}: {e}");
    }
    let ok = PipelineConfig::from_toml(
        &format!("{base}cdc = \"snapshot\"\nscd_type = 2\nignore_null_updates = true\n"),
        "test",
    )
    .unwrap();
    assert_eq!(ok.tables[0].cdc, CdcFormat::Snapshot);
    let json = PipelineConfig::from_toml(
        "[landing]\nuri = \"s3://l\"\n[lake]\nuri = \"s3://k\"\n[[table]]\nname = \"t\"\nformat = \"json\"\njson_path = \"data.items\"\n",
        "test",
    )
    .unwrap();
    assert_eq!(json.tables[0].format, Format::Json);
    assert_eq!(json.tables[0].json_path, ["data", "items"]);
}
