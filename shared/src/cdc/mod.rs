//! CDC normalisation, silver's first step: bronze rows in a table's change-feed format (Debezium
//! envelopes, AWS DMS rows with an `Op` column, or plain upserts) become one shape, a [`ChangeSet`]:
//! the row columns (the after-image; for a delete only the keys matter), `_seq` (the configured
//! `sequence_by`), `_op` (`U` upsert or `D` delete) and the tie-breakers `_bronze_version` and
//! `_source_row`. [`latest_per_key`] then keeps one event per key, so duplicate keys never reach MERGE.
//!
//! [`debezium`] reads Debezium envelopes; [`latest`] is the dedupe step.

use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, StringArray, StringBuilder,
};
use deltalake::arrow::compute::{cast, filter_record_batch};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::config::{CdcFormat, TableConfig, UnknownFields};
use crate::error::{Error, Result};
use crate::schema::{self, SOURCE_KEY, SOURCE_ROW, VALUE_SOURCES};

pub use crate::schema::{BRONZE_VERSION, OP, SEQ};
pub const OP_UPSERT: &str = "U";
pub const OP_DELETE: &str = "D";
/// A truncate of the whole table as of its sequence (Debezium `t`): no key, only a sequence.
pub const OP_TRUNCATE: &str = "T";

/// Default DMS operation column.
pub const DMS_OP_COLUMN: &str = "Op";

/// Normalised changes of one bronze version, and the rows that could not be normalised.
#[derive(Debug)]
pub struct ChangeSet {
    pub batch: RecordBatch,
    /// Rows that could not be normalised, for quarantine.
    pub rejected: Vec<RejectedChange>,
    /// Rows skipped on purpose (Debezium tombstones and schema-change records).
    pub skipped: usize,
    /// Fields the events carry that the table lacks, under `unknown_fields = "evolve"`: the step adds
    /// them as columns and reads the events again (nothing is dropped).
    pub discovered: Vec<Field>,
    /// The newest truncate (Debezium `t`) among the rows: its sequence as an integer (timestamps in
    /// µs). Truncates are not rows of `batch`.
    pub truncate: Option<i64>,
}

/// A bronze row silver could not use, with where it came from and why.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedChange {
    pub key: String,
    pub etag: String,
    pub row: i64,
    pub reason: String,
    /// The event as bronze holds it (cut at `limits.max_raw_kb`): a Debezium payload, or the row's
    /// columns as a JSON object.
    pub raw: Option<String>,
}

/// Turns bronze batches of one table into [`ChangeSet`]s.
#[derive(Debug, Clone)]
pub struct Normalizer {
    table: TableConfig,
    /// The row columns silver keeps.
    row_schema: SchemaRef,
    seq_type: DataType,
    /// The value meaning "not sent, unchanged" (`unavailable_value`), as text and as base64 (how a
    /// bytes column carries it), when the table has one.
    unavailable: Option<(String, String)>,
    /// Row columns (indices) in which an update's null means "unchanged" (`ignore_null_updates`).
    null_unchanged: Vec<usize>,
}

/// Per bronze row, what a change format's reader fills in: the text cells of the row columns and of
/// the sequence, the operation, why the row cannot be used, or that it is to be skipped silently.
struct Events {
    cells: Vec<StringBuilder>,
    seq: StringBuilder,
    ops: Vec<&'static str>,
    reasons: Vec<Option<String>>,
    skip: Vec<bool>,
    /// Per row, the row columns (indices) whose value was not sent.
    unavailable: Vec<Vec<usize>>,
    /// New fields seen (`unknown_fields = "evolve"`), with the column type their values decode to.
    discovered: Vec<Field>,
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a ArrayRef> {
    batch.column_by_name(name)
}

fn strings(array: &ArrayRef) -> Result<ArrayRef> {
    if is_nested(array.data_type()) {
        return schema::json_text(array);
    }
    cast(array, &DataType::Utf8).map_err(|e| Error::arrow("reading CDC column as text", e))
}

/// Struct, list and map columns (a Parquet source's nested types): silver keeps them as JSON text.
fn is_nested(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Struct(_)
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::FixedSizeList(..)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::Map(..)
    )
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
                        .map(|f| match is_nested(f.data_type()) {
                            true => f.as_ref().clone().with_data_type(DataType::Utf8),
                            false => f.as_ref().clone(),
                        })
                        .collect::<Vec<_>>(),
                )
            }
        };
        // What reaches silver (`silver_columns` / `except_columns`).
        let selected = |name: &str| {
            table.keys.iter().any(|k| k == name)
                || table.sequence_by.as_deref() == Some(name)
                || (table
                    .silver_columns
                    .as_ref()
                    .is_none_or(|c| c.iter().any(|c| c == name))
                    && !table.except_columns.iter().any(|c| c == name))
        };
        let row_schema = Schema::new(
            row_schema
                .fields()
                .iter()
                .filter(|f| selected(f.name()))
                .map(|f| f.as_ref().clone())
                .collect::<Vec<_>>(),
        );
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
        let unavailable = table.unavailable_value.as_ref().map(|v| {
            use base64::Engine;
            (
                v.clone(),
                base64::engine::general_purpose::STANDARD.encode(v.as_bytes()),
            )
        });
        let all = table.ignore_null_updates.iter().any(|c| c == "*");
        let null_unchanged = row_schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                let name = f.name().as_str();
                !table.keys.iter().any(|k| k == name)
                    && table.sequence_by.as_deref() != Some(name)
                    && (all || table.ignore_null_updates.iter().any(|c| c == name))
            })
            .map(|(i, _)| i)
            .collect();
        Ok(Normalizer {
            table: table.clone(),
            row_schema: Arc::new(row_schema),
            seq_type,
            unavailable,
            null_unchanged,
        })
    }

    /// A Debezium table under `unknown_fields = "evolve"` also reads the columns schema evolution added
    /// to its silver table (`silver`: its schema), beyond `row_columns`.
    pub fn with_evolved(mut self, silver: &Schema) -> Normalizer {
        // Declared columns silver holds with a wider type (widened as the source widened, or by a
        // declaration since): values are decoded to silver's type, which holds them all.
        let declared: Vec<Field> = self
            .row_schema
            .fields()
            .iter()
            .map(|f| match silver.field_with_name(f.name()) {
                Ok(s) if schema::widens(f.data_type(), s.data_type()) => {
                    f.as_ref().clone().with_data_type(s.data_type().clone())
                }
                _ => f.as_ref().clone(),
            })
            .collect();
        self.row_schema = Arc::new(Schema::new(declared));
        if self.table.cdc != CdcFormat::Debezium
            || self.table.unknown_fields != UnknownFields::Evolve
        {
            return self;
        }
        let extra: Vec<Field> = silver
            .fields()
            .iter()
            .filter(|f| !schema::is_reserved(f.name()) && f.name() != VALUE_SOURCES)
            .filter(|f| self.row_schema.field_with_name(f.name()).is_err())
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        if extra.is_empty() {
            return self;
        }
        let declared = self.row_schema.fields().iter().map(|f| f.as_ref().clone());
        self.row_schema = Arc::new(Schema::new(declared.chain(extra).collect::<Vec<_>>()));
        self
    }

    /// Whether changes and silver rows record which values came from another event
    /// ([`VALUE_SOURCES`]): when the source has an "unchanged" placeholder or nulls mean unchanged.
    pub fn tracks_sources(&self) -> bool {
        self.unavailable.is_some() || !self.null_unchanged.is_empty()
    }

    pub fn row_schema(&self) -> &SchemaRef {
        &self.row_schema
    }

    /// The type of `_seq`.
    pub fn seq_type(&self) -> &DataType {
        &self.seq_type
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
        if self.tracks_sources() {
            fields.push(Field::new(VALUE_SOURCES, DataType::Utf8, true));
        }
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
        let mut events = Events {
            cells: (0..self.row_schema.fields().len())
                .map(|_| StringBuilder::new())
                .collect(),
            seq: StringBuilder::new(),
            ops: Vec::with_capacity(n),
            reasons: vec![None; n],
            skip: vec![false; n],
            unavailable: vec![Vec::new(); n],
            discovered: Vec::new(),
        };
        match self.table.cdc {
            CdcFormat::Debezium => self.debezium(bronze, &mut events)?,
            CdcFormat::Dms | CdcFormat::Upsert | CdcFormat::Snapshot => {
                self.tabular(bronze, &mut events)?
            }
        }
        let Events {
            mut cells,
            mut seq,
            ops,
            reasons,
            skip,
            mut unavailable,
            discovered,
        } = events;
        let sources: Vec<ArrayRef> = cells
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        // `ignore_null_updates`: an update's null in those columns was not sent, like a placeholder.
        for (i, op) in ops.iter().enumerate() {
            if *op == OP_UPSERT {
                for &c in &self.null_unchanged {
                    if sources[c].is_null(i) && !unavailable[i].contains(&c) {
                        unavailable[i].push(c);
                    }
                }
            }
        }
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
        let before_cast = reasons.clone();
        let (mut typed, mut reasons) = schema::cast_columns(&relaxed, sources, n, &reasons);
        // A truncate has no row: its (absent) row columns are not checked.
        for (i, op) in ops.iter().enumerate() {
            if *op == OP_TRUNCATE {
                reasons[i] = before_cast[i].clone();
            }
        }
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
        if self.tracks_sources() {
            // Columns not sent: no value known yet from this event (see `unavailable`).
            let sources: Vec<Option<String>> = unavailable
                .iter()
                .map(|cols| {
                    (!cols.is_empty()).then(|| {
                        let map: serde_json::Map<String, serde_json::Value> = cols
                            .iter()
                            .map(|&c| {
                                (
                                    self.row_schema.field(c).name().clone(),
                                    serde_json::Value::Null,
                                )
                            })
                            .collect();
                        serde_json::Value::Object(map).to_string()
                    })
                })
                .collect();
            typed.push(Arc::new(StringArray::from(sources)));
        }
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
            if reasons[i].is_none() && !skip[i] && *op == OP_TRUNCATE {
                // A truncate is ordered by its sequence alone: it needs one the step can compare.
                if seq_values.is_null(i) {
                    reasons[i] = Some(format!(
                        "a truncate without its sequence `{}` cannot be ordered against the table's rows",
                        self.table.sequence_by.as_deref().unwrap_or(SEQ)
                    ));
                } else if !matches!(
                    self.seq_type,
                    DataType::Int64 | DataType::Int32 | DataType::Timestamp(..)
                ) {
                    reasons[i] = Some(format!(
                        "a truncate needs an integer or timestamp sequence_by (`{}` is {})",
                        self.table.sequence_by.as_deref().unwrap_or(SEQ),
                        self.seq_type
                    ));
                }
                continue;
            }
            if reasons[i].is_none() && !skip[i] {
                let null_key = self.table.keys.iter().find(|k| {
                    self.row_schema
                        .index_of(k)
                        .is_ok_and(|j| typed[j].is_null(i))
                });
                if let Some(k) = null_key {
                    reasons[i] = Some(format!(
                        "key column `{k}` is null: a change without its key cannot be merged"
                    ));
                }
            }
            if reasons[i].is_none() && *op == OP_UPSERT {
                for (c, (f, col)) in self.row_schema.fields().iter().zip(&typed).enumerate() {
                    if !f.is_nullable() && col.is_null(i) && !unavailable[i].contains(&c) {
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
        // Truncates leave the batch: the step applies them table-wide (the newest one).
        let truncate = {
            let seq = cast(all.column(self.row_schema.fields().len()), &DataType::Int64)
                .map_err(|e| Error::arrow("truncate sequence", e))?;
            let seq = seq.as_primitive::<deltalake::arrow::datatypes::Int64Type>();
            (0..n)
                .filter(|&i| ops[i] == OP_TRUNCATE && reasons[i].is_none() && !skip[i])
                .filter(|&i| seq.is_valid(i))
                .map(|i| seq.value(i))
                .max()
        };
        let keep = BooleanArray::from(
            (0..n)
                .map(|i| reasons[i].is_none() && !skip[i] && ops[i] != OP_TRUNCATE)
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
                    let mut reason = reason;
                    let raw = raw_event(bronze, i, self.table.cdc).map(|t| {
                        crate::read::cut_raw(t, self.table.limits.max_raw_bytes, &mut reason)
                    });
                    RejectedChange {
                        key: text(&keys_of),
                        etag: text(&etags_of),
                        row,
                        reason,
                        raw,
                    }
                })
            })
            .collect();
        Ok(ChangeSet {
            batch: kept,
            rejected,
            skipped: skip.iter().filter(|s| **s).count(),
            discovered,
            truncate,
        })
    }

    /// Whether a cell's text is the table's "not sent" value (as text, or base64 in a bytes column).
    fn is_unavailable(&self, text: &str) -> bool {
        self.unavailable
            .as_ref()
            .is_some_and(|(plain, b64)| text == plain || text == b64)
    }

    /// [`Self::is_unavailable`] for a JSON value, without decoding it (checked for every cell).
    fn is_unavailable_json(&self, v: &serde_json::value::RawValue) -> bool {
        let t = v.get();
        self.unavailable.is_some()
            && t.len() >= 2
            && t.starts_with('"')
            && t.ends_with('"')
            && !t.contains('\\')
            && self.is_unavailable(&t[1..t.len() - 1])
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
    fn tabular(&self, bronze: &RecordBatch, events: &mut Events) -> Result<()> {
        let Events {
            cells,
            seq,
            ops,
            reasons,
            unavailable,
            ..
        } = events;
        let n = bronze.num_rows();
        let text_cols: Vec<Option<ArrayRef>> = self
            .row_schema
            .fields()
            .iter()
            .map(|f| column(bronze, f.name()).map(strings).transpose())
            .collect::<Result<_>>()?;
        // A snapshot's differences carry their order in `_seq` and deletes in the action column
        // (see `silver::snapshot`).
        let snapshot = self.table.cdc == CdcFormat::Snapshot;
        let seq_col = match snapshot {
            true => Some(SEQ),
            false => self.table.sequence_by.as_deref(),
        }
        .and_then(|s| column(bronze, s))
        .map(strings)
        .transpose()?;
        let (op_name, is_dms) = match self.table.cdc {
            CdcFormat::Dms => (
                Some(self.table.op_column.as_deref().unwrap_or(DMS_OP_COLUMN)),
                true,
            ),
            CdcFormat::Snapshot => (Some(schema::ACTION), false),
            _ => (self.table.delete_column.as_deref(), false),
        };
        let op_col = op_name
            .and_then(|c| column(bronze, c))
            .map(strings)
            .transpose()?;
        for (i, reason) in reasons.iter_mut().enumerate().take(n) {
            for (c, (b, col)) in cells.iter_mut().zip(&text_cols).enumerate() {
                let cell = col.as_ref().and_then(|col| text_at(col, i));
                if cell.is_some_and(|v| self.is_unavailable(v)) {
                    unavailable[i].push(c);
                    b.append_null();
                } else {
                    b.append_option(cell);
                }
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
}

/// Row `i` of a bronze batch as the event it was: a Debezium `payload` verbatim, otherwise its data
/// columns as one JSON object (Debezium envelope parts, which bronze keeps as JSON text, embedded as
/// JSON). The Connect `schema` is left out: it is the same for every event and often larger than it.
fn raw_event(bronze: &RecordBatch, i: usize, cdc: CdcFormat) -> Option<String> {
    let text = |name: &str| -> Option<String> {
        let c = strings(column(bronze, name)?).ok()?;
        text_at(&c, i).map(str::to_string)
    };
    if cdc == CdcFormat::Debezium {
        if let Some(p) = text("payload") {
            return Some(p);
        }
    }
    let mut out = serde_json::Map::new();
    for f in bronze.schema().fields() {
        let name = f.name();
        if schema::is_lineage(name)
            || (cdc == CdcFormat::Debezium && name == "schema")
            || (cdc == CdcFormat::Snapshot && schema::is_reserved(name))
        {
            continue;
        }
        let value = match text(name) {
            None => serde_json::Value::Null,
            Some(t) if cdc == CdcFormat::Debezium => {
                serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t))
            }
            Some(t) => serde_json::Value::String(t),
        };
        out.insert(name.clone(), value);
    }
    serde_json::to_string(&out).ok()
}

mod connect;
mod debezium;
mod latest;
pub mod unavailable;

use debezium::text_at;
pub use latest::latest_per_key;

#[cfg(test)]
mod tests;
