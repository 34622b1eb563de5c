//! Silver of a snapshot table (`cdc = "snapshot"`): silver becomes exactly the newest complete
//! snapshot.
//!
//! Bronze records each complete snapshot with a marker (`bronze::snapshot`); silver records the one it
//! holds in its table property `lakehouse.snapshot`. A step whose newest complete snapshot is newer
//! than silver's computes the differences in DataFusion, under a memory limit with spilling to disk
//! (a sort-merge join, so neither table is held whole in memory): the snapshot's rows that are new or
//! differ from silver's (an upsert each) and silver's keys the snapshot lacks (a delete each). Those go
//! through silver's usual step (normalisation, quarantine, the clustered MERGE, tombstones, the change
//! data feed), ordered by `_seq` = the bronze version the step reads up to, so unchanged rows are
//! neither rewritten nor in the change feed. An incomplete snapshot, one older than silver's, or a
//! redelivered one changes nothing. The property is set in a commit after the data commit: a crash in
//! between makes the next step compute the differences again, which are then none.

use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::execution::memory_pool::FairSpillPool;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::kernel::{Action, MetadataExt};
use deltalake::protocol::DeltaOperation;
use deltalake::{DeltaTable, DeltaTableError};

use crate::bronze::snapshot::{CLEAN, COMPLETE};
use crate::cdc::SEQ;
use crate::config::{Location, PipelineConfig, TableConfig};
use crate::error::{Error, Result};
use crate::lake::{self, quote, TableTxns};
use crate::schema::{self, ACTION, SOURCE_KEY, SOURCE_ROW};

/// Silver's table property naming the snapshot it holds.
pub const APPLIED: &str = "lakehouse.snapshot";

/// Memory the differences may use before DataFusion spills to disk.
const DIFF_MEMORY_BYTES: usize = 512 << 20;

/// The snapshot silver holds, if any.
pub fn applied(silver: &DeltaTable) -> Option<String> {
    silver
        .snapshot()
        .ok()?
        .metadata()
        .configuration()
        .get(APPLIED)
        .cloned()
}

/// The newest complete snapshot in bronze (its markers), when it is newer than silver's: snapshots
/// are ordered by their folder's (or single object's) name.
/// Also whether every row of it reached bronze (else its absent keys are not deletes).
pub fn pending(bronze_markers: &TableTxns, silver: &DeltaTable) -> Option<(String, bool)> {
    let (newest, marker) = bronze_markers.with_prefix(COMPLETE).max()?;
    match applied(silver) {
        Some(a) if a.as_str() >= newest => None,
        _ => Some((newest.to_string(), marker == CLEAN)),
    }
}

/// The differences between snapshot `id` (bronze rows) and silver's current rows, as bronze-shaped
/// rows the normaliser reads: upserts with their bronze columns, deletes with the key columns (only
/// when `deletes`: a snapshot with rows in quarantine deletes nothing), each with `_seq` = the step's
/// bronze version and the action column true for deletes.
pub(super) async fn differences(
    config: &PipelineConfig,
    step: &super::Step<'_>,
    id: &str,
    deletes: bool,
) -> Result<Vec<RecordBatch>> {
    let (table, normalizer, seq) = (step.table, &step.normalizer, step.latest);
    let (bronze, silver, silver_loc) = (&step.bronze, &step.silver, &step.silver_loc);
    let what = format!("silver/{} (snapshot {id})", table.name);
    let query = |e| Error::query(&what, "snapshot differences", e);
    // A fair pool: each spilling sort gets its share, so one sort cannot starve the merges that follow
    // it (a greedy pool failed at 10M rows); and room kept for each sort's merge phase.
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(FairSpillPool::new(DIFF_MEMORY_BYTES)))
        .build_arc()
        .map_err(query)?;
    // Sort-merge joins spill; a hash join would hold one side whole.
    let mut session = SessionConfig::new().with_target_partitions(2);
    let options = session.options_mut();
    options.optimizer.prefer_hash_join = false;
    options.execution.sort_spill_reservation_bytes = DIFF_MEMORY_BYTES / 8;
    let ctx = SessionContext::new_with_config_rt(session, runtime);
    for (name, t) in [("bronze", bronze), ("silver", silver)] {
        let fail = |e: DeltaTableError| Error::delta(&what, "register", e);
        t.update_datafusion_session(&ctx.state()).map_err(fail)?;
        let provider = t.table_provider().await.map_err(|e| fail(e.into()))?;
        ctx.register_table(name, provider).map_err(query)?;
    }
    let silver_columns = lake::schema_of(silver, silver_loc)?;
    let keys = &table.keys;
    let compared: Vec<&str> = normalizer
        .row_schema()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|c| !keys.iter().any(|k| k == c) && silver_columns.field_with_name(c).is_ok())
        .collect();
    let prefix = snapshot_key(config, table, id);
    let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let on = keys
        .iter()
        .map(|k| format!("s.{q} = c.{q}", q = quote(k)))
        .collect::<Vec<_>>()
        .join(" AND ");
    let differs = compared
        .iter()
        .map(|c| format!("(s.{q} IS DISTINCT FROM c.{q})", q = quote(c)))
        .chain(std::iter::once("(c.__present IS NULL)".to_string()))
        .collect::<Vec<_>>()
        .join(" OR ");
    let current = match table.scd_type {
        2 => format!("WHERE {}", quote(schema::IS_CURRENT)),
        _ => String::new(),
    };
    let cur_columns = keys
        .iter()
        .map(String::as_str)
        .chain(compared.iter().copied())
        .map(quote)
        .collect::<Vec<_>>()
        .join(", ");
    let key_list = keys
        .iter()
        .map(|k| format!("c.{}", quote(k)))
        .collect::<Vec<_>>();
    // A key range rather than `starts_with`: bronze files' statistics prune it, so the step reads this
    // snapshot's files only, however many snapshots bronze keeps ('0' follows '/').
    let snap = format!(
        "SELECT * FROM bronze WHERE {sk} = {p} OR ({sk} >= {lo} AND {sk} < {hi})",
        sk = quote(SOURCE_KEY),
        p = lit(&prefix),
        lo = lit(&format!("{prefix}/")),
        hi = lit(&format!("{prefix}0")),
    );
    let cur = format!("SELECT {cur_columns}, 1 AS __present FROM silver {current}");
    let upserts = format!(
        "WITH snap AS ({snap}), cur AS ({cur}) \
         SELECT s.*, CAST({seq} AS BIGINT) AS {seq_col}, false AS {action} \
         FROM snap s LEFT JOIN cur c ON {on} WHERE {differs}",
        seq_col = quote(SEQ),
        action = quote(ACTION),
    );
    let delete_sql = format!(
        "WITH snap AS ({snap}), cur AS ({cur}) \
         SELECT {keys}, {p} AS {sk}, CAST(0 AS BIGINT) AS {row}, CAST({seq} AS BIGINT) AS {seq_col}, true AS {action} \
         FROM cur c WHERE NOT EXISTS (SELECT 1 FROM snap s WHERE {on})",
        keys = key_list.join(", "),
        p = lit(&prefix),
        sk = quote(SOURCE_KEY),
        row = quote(SOURCE_ROW),
        seq_col = quote(SEQ),
        action = quote(ACTION),
    );
    let mut out = Vec::new();
    // An empty silver (the first snapshot, a rebuild): every row is new, no join to make.
    let empty = silver
        .snapshot()
        .map_err(|e| Error::delta(silver_loc.url.to_string(), "read files", e))?
        .log_data()
        .num_files()
        == 0;
    let queries = match (empty, deletes) {
        (true, _) => vec![format!(
            "WITH snap AS ({snap}) SELECT s.*, CAST({seq} AS BIGINT) AS {seq_col}, false AS {action} FROM snap s",
            seq_col = quote(SEQ),
            action = quote(ACTION),
        )],
        (false, true) => vec![upserts, delete_sql],
        (false, false) => vec![upserts],
    };
    for sql in queries {
        let df = ctx.sql(&sql).await.map_err(query)?;
        out.extend(df.collect().await.map_err(query)?);
    }
    Ok(out)
}

/// The lineage key (`_source_key`) of snapshot `id`: its folder, or its single object.
fn snapshot_key(config: &PipelineConfig, table: &TableConfig, id: &str) -> String {
    let rel = format!("{}{id}", table.prefix);
    let base = config.landing.prefix();
    let full = match base.is_empty() {
        true => rel,
        false => format!("{base}/{rel}"),
    };
    config.lineage_key(&full).to_string()
}

/// Records snapshot `id` as silver's, in a metadata commit of its own.
pub async fn record(
    silver: &mut DeltaTable,
    location: &Location,
    table: &str,
    id: &str,
) -> Result<()> {
    let fail =
        |e: DeltaTableError| Error::delta(location.url.to_string(), "record the snapshot", e);
    let metadata = silver
        .snapshot()
        .map_err(fail)?
        .metadata()
        .clone()
        .add_config_key(APPLIED.to_string(), id.to_string())
        .map_err(|e| fail(e.into()))?;
    let info = HashMap::from([
        ("lakehouse.layer".to_string(), serde_json::json!("silver")),
        ("lakehouse.table".to_string(), serde_json::json!(table)),
        ("lakehouse.snapshot".to_string(), serde_json::json!(id)),
    ]);
    let operation = DeltaOperation::SetTableProperties {
        properties: HashMap::from([(APPLIED.to_string(), id.to_string())]),
    };
    lake::commit_actions(
        silver,
        vec![Action::Metadata(metadata)],
        Vec::new(),
        info,
        operation,
    )
    .await
    .map_err(fail)?;
    Ok(())
}
