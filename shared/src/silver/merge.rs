//! The MERGE of a silver step. SCD1: the latest event per key; update or delete only when the event is
//! newer than the row (sequence, then bronze version, then source row), so out-of-order delivery is
//! safe. SCD2: the recomputed history rows ([`super::scd2`]) by key and `valid_from`.

use deltalake::arrow::array::RecordBatch;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::merge::MergeMetrics;
use deltalake::DeltaTable;

use super::columns::{silver_schema, silver_table_schema};
use super::scd2;
use crate::cdc::{Normalizer, BRONZE_VERSION, OP, OP_DELETE, SEQ};
use crate::config::{Location, TableConfig};
use crate::error::{Error, Result};
use crate::lake::{self, key_predicate, quote};
use crate::schema::SOURCE_ROW;

/// `s` is newer than `t`: by sequence (nulls lowest), then bronze version, then source row.
fn newer() -> String {
    let (seq, bv, row) = (quote(SEQ), quote(BRONZE_VERSION), quote(SOURCE_ROW));
    format!(
        "(s.{seq} > t.{seq}) OR (t.{seq} IS NULL AND s.{seq} IS NOT NULL) OR \
         ((s.{seq} = t.{seq} OR (s.{seq} IS NULL AND t.{seq} IS NULL)) AND \
          (s.{bv} > t.{bv} OR (s.{bv} = t.{bv} AND s.{row} > t.{row})))"
    )
}

/// SCD1: one MERGE of the latest event per key; update or delete only when the event is newer.
pub(super) async fn merge_into(
    silver: DeltaTable,
    location: &Location,
    changes: &RecordBatch,
    normalizer: &Normalizer,
    table: &TableConfig,
    props: CommitProperties,
) -> Result<(DeltaTable, MergeMetrics)> {
    let is_delete = format!("s.{} = '{OP_DELETE}'", quote(OP));
    let is_upsert = format!("s.{} <> '{OP_DELETE}'", quote(OP));
    let clauses = lake::MergeClauses {
        on: key_predicate(&table.keys),
        delete_when: format!("{is_delete} AND ({})", newer()),
        update_when: format!("{is_upsert} AND ({})", newer()),
        insert_when: is_upsert,
    };
    let columns = silver_schema(normalizer);
    lake::run_merge(silver, changes.clone(), &columns, clauses, props)
        .await
        .map_err(|e| Error::delta(location.url.to_string(), "merge", e))
}

/// SCD2: applies [`history_changes`] by key and `valid_from`.
pub(super) async fn merge_history(
    silver: DeltaTable,
    location: &Location,
    source: RecordBatch,
    normalizer: &Normalizer,
    table: &TableConfig,
    props: CommitProperties,
) -> Result<(DeltaTable, MergeMetrics)> {
    if source.num_rows() == 0 {
        return Ok((silver, MergeMetrics::default()));
    }
    let clauses = lake::MergeClauses {
        on: format!(
            "{} AND t.{vf} = s.{vf}",
            key_predicate(&table.keys),
            vf = quote(scd2::VALID_FROM)
        ),
        delete_when: lake::action_is(lake::ACTION_DELETE),
        update_when: lake::action_is(lake::ACTION_UPSERT),
        insert_when: lake::action_is(lake::ACTION_UPSERT),
    };
    let columns = silver_table_schema(normalizer, table)?;
    lake::run_merge(silver, source, &columns, clauses, props)
        .await
        .map_err(|e| Error::delta(location.url.to_string(), "merge (SCD2)", e))
}
