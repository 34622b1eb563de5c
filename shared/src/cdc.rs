//! CDC normalisation, silver's first step: bronze rows in a table's change-feed format (Debezium
//! envelopes, AWS DMS rows with an `Op` column, or plain upserts) become one shape, a [`ChangeSet`]:
//! the row columns (the after-image; for a delete only the keys matter), `_seq` (the configured
//! `sequence_by`), `_op` (`U` upsert or `D` delete) and the tie-breakers `_bronze_version` and
//! `_source_row`. [`latest_per_key`] then keeps one event per key, so duplicate keys never reach MERGE.

use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray, StringBuilder,
    UInt32Array,
};
use deltalake::arrow::compute::{
    cast, filter_record_batch, lexsort_to_indices, take_record_batch, SortColumn, SortOptions,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::arrow::row::{RowConverter, SortField};
use serde_json::{Map, Value};

use crate::config::{CdcFormat, TableConfig};
use crate::error::{Error, Result};
use crate::read::json_cell;
use crate::schema::{self, SOURCE_KEY, SOURCE_ROW};

pub const SEQ: &str = "_seq";
pub const OP: &str = "_op";
pub const BRONZE_VERSION: &str = "_bronze_version";
pub const OP_UPSERT: &str = "U";
pub const OP_DELETE: &str = "D";

/// Default DMS operation column.
pub const DMS_OP_COLUMN: &str = "Op";

/// Normalised changes of one bronze version, and the rows that could not be normalised.
#[derive(Debug)]
pub struct ChangeSet {
    pub batch: RecordBatch,
    /// Rows that could not be normalised, for quarantine.
    pub rejected: Vec<RejectedChange>,
}

/// A bronze row silver could not use, with where it came from and why.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedChange {
    pub key: String,
    pub etag: String,
    pub row: i64,
    pub reason: String,
}

/// Turns bronze batches of one table into [`ChangeSet`]s.
#[derive(Debug, Clone)]
pub struct Normalizer {
    table: TableConfig,
    /// The row columns silver keeps.
    row_schema: SchemaRef,
    seq_type: DataType,
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a ArrayRef> {
    batch.column_by_name(name)
}

fn strings(array: &ArrayRef) -> Result<ArrayRef> {
    cast(array, &DataType::Utf8).map_err(|e| Error::arrow("reading CDC column as text", e))
}

impl Normalizer {
    /// `bronze_data` is the bronze table's schema without lineage columns.
    pub fn new(table: &TableConfig, bronze_data: &Schema) -> Result<Normalizer> {
        let row_schema: Schema = match (&table.row_columns, table.cdc) {
            (Some(cols), _) => {
                Schema::new(cols.iter().map(|c| c.arrow_field()).collect::<Vec<_>>())
            }
            (None, CdcFormat::Debezium) => {
                return Err(Error::config(
                    &table.name,
                    "row_columns",
                    "required for Debezium tables",
                ))
            }
            (None, cdc) => {
                let skip = match cdc {
                    CdcFormat::Dms => Some(table.op_column.as_deref().unwrap_or(DMS_OP_COLUMN)),
                    _ => table.delete_column.as_deref(),
                };
                Schema::new(
                    bronze_data
                        .fields()
                        .iter()
                        .filter(|f| Some(f.name().as_str()) != skip)
                        .map(|f| f.as_ref().clone())
                        .collect::<Vec<_>>(),
                )
            }
        };
        for k in &table.keys {
            if row_schema.field_with_name(k).is_err() {
                return Err(Error::config(
                    &table.name,
                    "keys",
                    format!("key `{k}` is not a row column"),
                ));
            }
        }
        let seq_type = match table.sequence_by.as_deref() {
            None => DataType::Int64,
            Some(s)
                if table.cdc == CdcFormat::Debezium
                    && (s == "ts_ms" || s.starts_with("source.")) =>
            {
                DataType::Int64
            }
            Some(s) => row_schema
                .field_with_name(s)
                .map(|f| f.data_type().clone())
                .map_err(|_| {
                    Error::config(
                        &table.name,
                        "sequence_by",
                        format!("`{s}` is not a row column"),
                    )
                })?,
        };
        Ok(Normalizer {
            table: table.clone(),
            row_schema: Arc::new(row_schema),
            seq_type,
        })
    }

    pub fn row_schema(&self) -> &SchemaRef {
        &self.row_schema
    }

    pub fn keys(&self) -> &[String] {
        &self.table.keys
    }

    /// Schema of a [`ChangeSet`] batch.
    pub fn change_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .row_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(SEQ, self.seq_type.clone(), true));
        fields.push(Field::new(OP, DataType::Utf8, false));
        fields.push(Field::new(BRONZE_VERSION, DataType::Int64, false));
        fields.push(Field::new(SOURCE_ROW, DataType::Int64, false));
        Arc::new(Schema::new(fields))
    }

    /// Normalises one bronze batch read from bronze version `bronze_version`.
    pub fn normalize(&self, bronze: &RecordBatch, bronze_version: i64) -> Result<ChangeSet> {
        let n = bronze.num_rows();
        let keys_of = column(bronze, SOURCE_KEY).map(strings).transpose()?;
        let etags_of = column(bronze, schema::SOURCE_ETAG)
            .map(strings)
            .transpose()?;
        let rows_of = column(bronze, SOURCE_ROW)
            .map(|a| cast(a, &DataType::Int64))
            .transpose()
            .map_err(|e| Error::arrow("source rows", e))?;
        // Per row: the text cells of the row columns and the sequence, the op, or a rejection reason.
        let mut cells: Vec<StringBuilder> = self
            .row_schema
            .fields()
            .iter()
            .map(|_| StringBuilder::new())
            .collect();
        let mut seq = StringBuilder::new();
        let mut ops: Vec<&'static str> = Vec::with_capacity(n);
        let mut reasons: Vec<Option<String>> = vec![None; n];
        let mut skip = vec![false; n];
        match self.table.cdc {
            CdcFormat::Debezium => self.debezium(
                bronze,
                &mut cells,
                &mut seq,
                &mut ops,
                &mut reasons,
                &mut skip,
            )?,
            CdcFormat::Dms | CdcFormat::Upsert => {
                self.tabular(bronze, &mut cells, &mut seq, &mut ops, &mut reasons)?
            }
        }
        let sources: Vec<ArrayRef> = cells
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        // Deletes only need their keys: other columns may be absent or null whatever their nullability.
        let relaxed = Schema::new(
            self.row_schema
                .fields()
                .iter()
                .map(|f| {
                    f.as_ref()
                        .clone()
                        .with_nullable(f.is_nullable() || !self.table.keys.contains(f.name()))
                })
                .collect::<Vec<_>>(),
        );
        let (mut typed, reasons) = schema::cast_columns(&relaxed, sources, n, &reasons);
        let seq_source: ArrayRef = Arc::new(seq.finish());
        let (mut seq_typed, reasons) = schema::cast_columns(
            &Schema::new(vec![Field::new(
                self.table.sequence_by.as_deref().unwrap_or(SEQ),
                self.seq_type.clone(),
                true,
            )]),
            vec![seq_source],
            n,
            &reasons,
        );
        typed.append(&mut seq_typed);
        typed.push(Arc::new(StringArray::from(ops.clone())));
        typed.push(Arc::new(Int64Array::from(vec![bronze_version; n])));
        typed.push(match &rows_of {
            Some(r) => r.clone(),
            None => Arc::new(Int64Array::from_iter_values(1..=n as i64)),
        });
        // Upserts must carry every required column; SCD2 history is ordered by the sequence, so every
        // event needs one.
        let mut reasons = reasons;
        let seq_values = &typed[self.row_schema.fields().len()];
        for (i, op) in ops.iter().enumerate() {
            if reasons[i].is_none() && !skip[i] && self.table.scd_type == 2 && seq_values.is_null(i)
            {
                reasons[i] = Some(format!(
                    "sequence `{}` is required for SCD type 2 but is null or missing",
                    self.table.sequence_by.as_deref().unwrap_or(SEQ)
                ));
            }
            if reasons[i].is_none() && *op == OP_UPSERT {
                for (f, col) in self.row_schema.fields().iter().zip(&typed) {
                    if !f.is_nullable() && col.is_null(i) {
                        reasons[i] = Some(format!(
                            "column `{}` is required but is null or missing",
                            f.name()
                        ));
                        break;
                    }
                }
            }
        }
        // Rejected and skipped rows may hold nulls anywhere: filter them out under an all-nullable
        // schema, then state the real one.
        let final_schema = self.change_schema_relaxed(&relaxed);
        let loose = Schema::new(
            final_schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        );
        let all = RecordBatch::try_new(Arc::new(loose), typed)
            .map_err(|e| Error::arrow("building changes", e))?;
        let keep = BooleanArray::from(
            (0..n)
                .map(|i| reasons[i].is_none() && !skip[i])
                .collect::<Vec<_>>(),
        );
        let kept =
            filter_record_batch(&all, &keep).map_err(|e| Error::arrow("filtering changes", e))?;
        let kept = RecordBatch::try_new(final_schema, kept.columns().to_vec())
            .map_err(|e| Error::arrow("building changes", e))?;
        let rejected = reasons
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !skip[*i])
            .filter_map(|(i, r)| {
                r.map(|reason| {
                    let text = |a: &Option<ArrayRef>| {
                        a.as_ref()
                            .and_then(|a| text_at(a, i))
                            .unwrap_or_default()
                            .to_string()
                    };
                    let row = rows_of
                        .as_ref()
                        .map(|a| {
                            a.as_primitive::<deltalake::arrow::datatypes::Int64Type>()
                                .value(i)
                        })
                        .unwrap_or(i as i64 + 1);
                    RejectedChange {
                        key: text(&keys_of),
                        etag: text(&etags_of),
                        row,
                        reason,
                    }
                })
            })
            .collect();
        Ok(ChangeSet {
            batch: kept,
            rejected,
        })
    }

    fn change_schema_relaxed(&self, relaxed: &Schema) -> SchemaRef {
        let mut fields: Vec<Field> = relaxed
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.extend(
            self.change_schema()
                .fields()
                .iter()
                .skip(relaxed.fields().len())
                .map(|f| f.as_ref().clone()),
        );
        Arc::new(Schema::new(fields))
    }

    /// Upsert and DMS rows: the row columns are bronze columns; the op comes from the DMS `Op` column or
    /// the upsert delete flag.
    fn tabular(
        &self,
        bronze: &RecordBatch,
        cells: &mut [StringBuilder],
        seq: &mut StringBuilder,
        ops: &mut Vec<&'static str>,
        reasons: &mut [Option<String>],
    ) -> Result<()> {
        let n = bronze.num_rows();
        let text_cols: Vec<Option<ArrayRef>> = self
            .row_schema
            .fields()
            .iter()
            .map(|f| column(bronze, f.name()).map(strings).transpose())
            .collect::<Result<_>>()?;
        let seq_col = self
            .table
            .sequence_by
            .as_deref()
            .and_then(|s| column(bronze, s))
            .map(strings)
            .transpose()?;
        let (op_name, is_dms) = match self.table.cdc {
            CdcFormat::Dms => (
                Some(self.table.op_column.as_deref().unwrap_or(DMS_OP_COLUMN)),
                true,
            ),
            _ => (self.table.delete_column.as_deref(), false),
        };
        let op_col = op_name
            .and_then(|c| column(bronze, c))
            .map(strings)
            .transpose()?;
        for (i, reason) in reasons.iter_mut().enumerate().take(n) {
            for (b, col) in cells.iter_mut().zip(&text_cols) {
                b.append_option(col.as_ref().and_then(|c| text_at(c, i)));
            }
            seq.append_option(seq_col.as_ref().and_then(|c| text_at(c, i)));
            let flag = op_col
                .as_ref()
                .and_then(|c| text_at(c, i))
                .map(|s| s.trim().to_ascii_uppercase());
            let op = match (is_dms, flag.as_deref()) {
                // DMS full-load files have no Op column: every row is an insert.
                (true, None) | (true, Some("I")) | (true, Some("U")) => OP_UPSERT,
                (true, Some("D")) => OP_DELETE,
                (true, Some(other)) => {
                    *reason = Some(format!(
                        "unknown DMS operation `{other}` (expected I, U or D)"
                    ));
                    OP_UPSERT
                }
                (false, Some("TRUE" | "1" | "Y" | "YES" | "T")) => OP_DELETE,
                (false, _) => OP_UPSERT,
            };
            ops.push(op);
        }
        Ok(())
    }

    /// Debezium envelopes: `{before, after, op, ts_ms, source}`, with or without the outer
    /// `{schema, payload}` wrapper. Creates, reads (snapshots) and updates take the after-image; deletes
    /// take the keys from `before`.
    fn debezium(
        &self,
        bronze: &RecordBatch,
        cells: &mut [StringBuilder],
        seq: &mut StringBuilder,
        ops: &mut Vec<&'static str>,
        reasons: &mut [Option<String>],
        skip: &mut [bool],
    ) -> Result<()> {
        let n = bronze.num_rows();
        let text: Vec<(String, ArrayRef)> = bronze
            .schema()
            .fields()
            .iter()
            .filter(|f| !schema::is_lineage(f.name()))
            .map(|f| {
                Ok((
                    f.name().clone(),
                    strings(
                        bronze
                            .column_by_name(f.name())
                            .ok_or_else(|| Error::Task("column vanished".into()))?,
                    )?,
                ))
            })
            .collect::<Result<_>>()?;
        for i in 0..n {
            let envelope = envelope_at(&text, i);
            let (op, image) = match envelope
                .as_ref()
                .map(|e| (e.get("op").and_then(Value::as_str), e))
            {
                Ok((Some("c" | "r" | "u"), e)) => (OP_UPSERT, e.get("after")),
                Ok((Some("d"), e)) => (OP_DELETE, e.get("before")),
                Ok((Some(other), _)) => {
                    reasons[i] = Some(format!(
                        "unknown Debezium op `{other}` (expected c, r, u or d)"
                    ));
                    (OP_UPSERT, None)
                }
                Ok((None, _)) => {
                    // A tombstone (payload null) or a schema-change record: nothing to apply.
                    skip[i] = true;
                    (OP_UPSERT, None)
                }
                Err(reason) => {
                    reasons[i] = Some(reason.clone());
                    (OP_UPSERT, None)
                }
            };
            ops.push(op);
            let image = image.and_then(Value::as_object);
            if reasons[i].is_none() && !skip[i] && image.is_none() {
                reasons[i] = Some(format!(
                    "Debezium `{}` event without its {} image",
                    if op == OP_DELETE { "d" } else { "c/r/u" },
                    if op == OP_DELETE { "before" } else { "after" }
                ));
            }
            for (b, f) in cells.iter_mut().zip(self.row_schema.fields()) {
                let cell = match image.and_then(|m| m.get(f.name())) {
                    Some(v) => match json_cell(v, f) {
                        Ok(c) => c,
                        Err(e) => {
                            reasons[i].get_or_insert(e);
                            None
                        }
                    },
                    None => None,
                };
                b.append_option(cell);
            }
            let seq_value = match (self.table.sequence_by.as_deref(), envelope.as_ref()) {
                (Some("ts_ms"), Ok(e)) => e.get("ts_ms").cloned(),
                (Some(s), Ok(e)) if s.starts_with("source.") => e
                    .get("source")
                    .and_then(|src| src.get(&s["source.".len()..]))
                    .cloned(),
                (Some(s), Ok(_)) => image.and_then(|m| m.get(s)).cloned(),
                _ => None,
            };
            seq.append_option(seq_value.and_then(|v| match v {
                Value::Null => None,
                Value::String(s) => Some(s),
                other => Some(other.to_string()),
            }));
        }
        Ok(())
    }
}

fn text_at(array: &ArrayRef, i: usize) -> Option<&str> {
    let s = array.as_string::<i32>();
    s.is_valid(i).then(|| s.value(i))
}

/// The Debezium envelope of row `i` as a JSON object: from the `payload` column (wrapped form) or from
/// the envelope columns themselves (`before`/`after`/`source` hold JSON text in bronze).
fn envelope_at(
    columns: &[(String, ArrayRef)],
    i: usize,
) -> std::result::Result<Map<String, Value>, String> {
    let get = |name: &str| {
        columns
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, a)| text_at(a, i))
    };
    if columns.iter().any(|(n, _)| n == "payload") {
        return match get("payload") {
            None => Ok(Map::new()),
            Some(p) => match serde_json::from_str::<Value>(p) {
                Ok(Value::Object(m)) => Ok(m),
                Ok(Value::Null) => Ok(Map::new()),
                Ok(_) | Err(_) => Err("Debezium `payload` is not a JSON object".to_string()),
            },
        };
    }
    let mut m = Map::new();
    for (name, _) in columns {
        let Some(text) = get(name) else { continue };
        let value = match name.as_str() {
            "before" | "after" | "source" | "transaction" => {
                match serde_json::from_str::<Value>(text) {
                    Ok(v) => v,
                    Err(e) => return Err(format!("Debezium `{name}` is not JSON: {e}")),
                }
            }
            "ts_ms" => text
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or(Value::String(text.to_string())),
            _ => Value::String(text.to_string()),
        };
        m.insert(name.clone(), value);
    }
    Ok(m)
}

/// Keeps the latest event per key: highest `_seq` (nulls lowest), then highest `_bronze_version`, then
/// highest `_source_row`. The result has exactly one row per key, in key order.
pub fn latest_per_key(changes: &RecordBatch, keys: &[String]) -> Result<RecordBatch> {
    if changes.num_rows() == 0 {
        return Ok(changes.clone());
    }
    let col = |name: &str| -> Result<ArrayRef> {
        changes
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| Error::Task(format!("change batch has no column `{name}`")))
    };
    let asc = SortOptions {
        descending: false,
        nulls_first: true,
    };
    let mut sort: Vec<SortColumn> = keys
        .iter()
        .map(|k| {
            Ok(SortColumn {
                values: col(k)?,
                options: Some(asc),
            })
        })
        .collect::<Result<_>>()?;
    for tie in [SEQ, BRONZE_VERSION, SOURCE_ROW] {
        sort.push(SortColumn {
            values: col(tie)?,
            options: Some(asc),
        });
    }
    let order = lexsort_to_indices(&sort, None).map_err(|e| Error::arrow("ordering changes", e))?;
    let sorted =
        take_record_batch(changes, &order).map_err(|e| Error::arrow("ordering changes", e))?;
    let key_cols: Vec<ArrayRef> = keys
        .iter()
        .map(|k| {
            sorted
                .column_by_name(k)
                .cloned()
                .ok_or_else(|| Error::Task(format!("no key column `{k}`")))
        })
        .collect::<Result<_>>()?;
    let converter = RowConverter::new(
        key_cols
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )
    .map_err(|e| Error::arrow("comparing keys", e))?;
    let rows = converter
        .convert_columns(&key_cols)
        .map_err(|e| Error::arrow("comparing keys", e))?;
    let n = sorted.num_rows();
    let last_of_group: Vec<u32> = (0..n)
        .filter(|&i| i + 1 == n || rows.row(i) != rows.row(i + 1))
        .map(|i| i as u32)
        .collect();
    take_record_batch(&sorted, &UInt32Array::from(last_of_group))
        .map_err(|e| Error::arrow("keeping latest per key", e))
}

#[cfg(test)]
mod tests {
    //! Samples shaped as the tools write them: Debezium 2.x PostgreSQL connector events (plain and with
    //! the JSON-converter `schema`/`payload` wrapper, with the delete + tombstone pair) and AWS DMS CSV
    //! CDC files (no header; `Op` first, then the `timestampColumnName` column). They go through the
    //! real bronze reader first, so the test covers file → bronze → changes.
    use super::*;
    use crate::config::PipelineConfig;
    use crate::read;
    use deltalake::arrow::datatypes::Int64Type;

    fn table(extra: &str) -> TableConfig {
        let text = format!("[landing]\nuri = \"s3://l\"\n[lake]\nuri = \"s3://k\"\n[[table]]\nname = \"t\"\n{extra}\n");
        PipelineConfig::from_toml(&text, "test")
            .unwrap()
            .tables
            .remove(0)
    }

    /// File bytes → bronze batch (schema declared or inferred, as bronze would) → changes.
    fn changes(t: &TableConfig, input: &str, version: i64) -> ChangeSet {
        let data = match t.declared_schema() {
            Some(s) => s,
            None => Arc::new(read::infer_text(input.as_bytes(), t).unwrap().unwrap()),
        };
        let lineage = schema::Lineage {
            key: "landing/t/f".into(),
            etag: "e".into(),
            ingested_at_us: 0,
        };
        let mut batches = Vec::new();
        let out = read::parse_text(input.as_bytes(), t, &data, &lineage, &mut |b| {
            batches.push(b);
            Ok(())
        })
        .unwrap();
        assert!(
            out.bad.is_empty(),
            "bronze rejected sample rows: {:?}",
            out.bad
        );
        let bronze =
            deltalake::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        Normalizer::new(t, &data)
            .unwrap()
            .normalize(&bronze, version)
            .unwrap()
    }

    fn ints(b: &RecordBatch, name: &str) -> Vec<Option<i64>> {
        let c = cast(b.column_by_name(name).unwrap(), &DataType::Int64).unwrap();
        c.as_primitive::<Int64Type>().iter().collect()
    }

    fn texts(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
        let c = cast(b.column_by_name(name).unwrap(), &DataType::Utf8).unwrap();
        c.as_string::<i32>()
            .iter()
            .map(|s| s.map(str::to_string))
            .collect()
    }

    const SOURCE: &str = r#"{"version":"2.5.0.Final","connector":"postgresql","name":"dbserver1","ts_ms":1764064800000,"snapshot":"false","db":"inventory","sequence":"[\"24023064\",\"24023128\"]","schema":"public","table":"customers","txId":565,"lsn":LSN,"xmin":null}"#;

    fn dbz(op: &str, before: &str, after: &str, lsn: i64, ts: i64) -> String {
        format!(
            r#"{{"before":{before},"after":{after},"source":{},"op":"{op}","ts_ms":{ts},"transaction":null}}"#,
            SOURCE.replace("LSN", &lsn.to_string())
        )
    }

    #[test]
    fn debezium_events_with_delete_and_tombstone() {
        let t = table(
            "format = \"jsonl\"\ncdc = \"debezium\"\nkeys = [\"id\"]\nsequence_by = \"source.lsn\"\nrow_columns = [\"id int not null\", \"first_name string not null\", \"email string\"]",
        );
        let anne = r#"{"id":1001,"first_name":"Anne","email":"annek@noanswer.org"}"#;
        let anne2 = r#"{"id":1001,"first_name":"Anne Marie","email":"annek@noanswer.org"}"#;
        let bob = r#"{"id":1002,"first_name":"Bob","email":null}"#;
        let input = [
            dbz("r", "null", bob, 100, 1764064800100),
            dbz("c", "null", anne, 200, 1764064800200),
            dbz("u", anne, anne2, 300, 1764064800300),
            dbz("d", anne2, "null", 400, 1764064800400),
            "null".to_string(), // the tombstone that follows a delete
        ]
        .join("\n");
        let set = changes(&t, &input, 7);
        assert!(set.rejected.is_empty(), "{:?}", set.rejected);
        let b = &set.batch;
        assert_eq!(
            ints(b, "id"),
            vec![Some(1002), Some(1001), Some(1001), Some(1001)]
        );
        assert_eq!(
            texts(b, OP),
            ["U", "U", "U", "D"].map(|s| Some(s.to_string()))
        );
        assert_eq!(
            ints(b, SEQ),
            vec![Some(100), Some(200), Some(300), Some(400)]
        );
        assert_eq!(texts(b, "first_name")[2].as_deref(), Some("Anne Marie"));
        assert_eq!(ints(b, BRONZE_VERSION), vec![Some(7); 4]);
        let latest = latest_per_key(b, &t.keys).unwrap();
        assert_eq!(ints(&latest, "id"), vec![Some(1001), Some(1002)]);
        assert_eq!(texts(&latest, OP), ["D", "U"].map(|s| Some(s.to_string())));
    }

    #[test]
    fn debezium_wrapped_payload_and_bad_events() {
        let t = table(
            "format = \"jsonl\"\ncdc = \"debezium\"\nkeys = [\"id\"]\nsequence_by = \"ts_ms\"\nrow_columns = [\"id long not null\", \"qty int\"]",
        );
        let schema = r#"{"type":"struct","fields":[{"type":"struct","fields":[{"type":"int64","optional":false,"field":"id"}],"optional":true,"name":"dbserver1.inventory.orders.Value","field":"before"}],"optional":false,"name":"dbserver1.inventory.orders.Envelope"}"#;
        let wrap = |payload: &str| format!(r#"{{"schema":{schema},"payload":{payload}}}"#);
        let input = [
            wrap(&dbz("c", "null", r#"{"id":5,"qty":2}"#, 1, 1000)),
            wrap(&dbz(
                "u",
                r#"{"id":5,"qty":2}"#,
                r#"{"id":5,"qty":"many"}"#,
                2,
                2000,
            )),
            wrap(&dbz("x", "null", r#"{"id":6,"qty":1}"#, 3, 3000)),
            wrap(&dbz("c", "null", r#"{"qty":1}"#, 4, 4000)),
            wrap("null"),
        ]
        .join("\n");
        let set = changes(&t, &input, 1);
        assert_eq!(ints(&set.batch, "id"), vec![Some(5)]);
        assert_eq!(ints(&set.batch, SEQ), vec![Some(1000)]);
        let reasons: Vec<&str> = set.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(
            reasons[0].contains("`many` is not a valid int"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].contains("unknown Debezium op `x`"),
            "{reasons:?}"
        );
        assert!(reasons[2].contains("`id` is required"), "{reasons:?}");
        assert_eq!(
            set.rejected.iter().map(|r| r.row).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
    }

    #[test]
    fn dms_csv_cdc_file() {
        let t = table(
            "format = \"csv\"\ncdc = \"dms\"\ncsv_header = false\nkeys = [\"id\"]\nsequence_by = \"commit_ts\"\ncolumns = [\"Op string\", \"commit_ts timestamp\", \"id long not null\", \"name string\", \"balance decimal(10,2)\"]",
        );
        let input = "I,2026-11-25 10:00:00.000001,1,Anne,10.50\n\
                     I,2026-11-25 10:00:00.000002,2,Bob,0.00\n\
                     U,2026-11-25 10:00:01.000000,1,Anne,12.00\n\
                     D,2026-11-25 10:00:02.000000,2,Bob,0.00\n\
                     X,2026-11-25 10:00:03.000000,3,Eve,1.00\n";
        let set = changes(&t, input, 3);
        assert_eq!(set.rejected.len(), 1);
        assert!(set.rejected[0].reason.contains("unknown DMS operation `X`"));
        assert!(
            set.batch.column_by_name("Op").is_none(),
            "the op column is not a row column"
        );
        let latest = latest_per_key(&set.batch, &t.keys).unwrap();
        assert_eq!(ints(&latest, "id"), vec![Some(1), Some(2)]);
        assert_eq!(texts(&latest, OP), ["U", "D"].map(|s| Some(s.to_string())));
        assert_eq!(texts(&latest, "balance")[0].as_deref(), Some("12.00"));
    }

    #[test]
    fn upsert_delete_flag_and_ties_break_by_version_then_row() {
        let t = table("format = \"jsonl\"\nkeys = [\"k\"]\nsequence_by = \"seq\"\ndelete_column = \"deleted\"\ncolumns = [\"k string not null\", \"seq long\", \"v long\", \"deleted boolean\"]");
        let v1 = changes(&t, "{\"k\":\"a\",\"seq\":5,\"v\":1}\n{\"k\":\"a\",\"seq\":5,\"v\":2}\n{\"k\":\"b\",\"seq\":1,\"v\":1}\n", 1);
        let v2 = changes(&t, "{\"k\":\"a\",\"seq\":4,\"v\":3}\n{\"k\":\"b\",\"seq\":1,\"v\":9,\"deleted\":true}\n{\"k\":\"c\",\"v\":1}\n", 2);
        assert!(v1.batch.column_by_name("deleted").is_none());
        let all =
            deltalake::arrow::compute::concat_batches(&v1.batch.schema(), [&v1.batch, &v2.batch])
                .unwrap();
        let latest = latest_per_key(&all, &t.keys).unwrap();
        // a: seq 5 beats the later-arriving seq 4; between the two seq-5 rows the later row wins.
        // b: same seq, later bronze version wins (the delete). c: no sequence, kept.
        assert_eq!(
            texts(&latest, "k"),
            ["a", "b", "c"].map(|s| Some(s.to_string()))
        );
        assert_eq!(ints(&latest, "v"), vec![Some(2), Some(9), Some(1)]);
        assert_eq!(
            texts(&latest, OP),
            ["U", "D", "U"].map(|s| Some(s.to_string()))
        );
    }
}
