//! Readers for landing objects: JSON lines, CSV and Parquet, each optionally gzip-compressed. Objects are
//! streamed (text formats never sit whole in memory), parsed in chunks, conformed to the table schema, and
//! every row that does not fit becomes a [`BadRow`] with its line number, raw text and reason.

use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use bytes::Bytes;
use deltalake::arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use flate2::read::MultiGzDecoder;
use futures::TryStreamExt;
use object_store::{GetOptions, GetResult, ObjectMeta, ObjectStoreExt};
use serde_json::{Map, Value};

use crate::config::{CdcFormat, Compression, Format, TableConfig, UnknownFields};
use crate::error::Error;
use crate::schema::{self, BadRow, Lineage};
use crate::storage::StoreRef;

/// Rows per conformed chunk (and per record batch handed to the writer).
pub const CHUNK_ROWS: usize = 8192;

/// Why an object could not be (fully) read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Storage said no (missing, denied, network): a retry may succeed, so the event is not acknowledged.
    #[error("storage: {0}")]
    Unavailable(String),
    /// The bytes are not a valid file of the declared format (corrupt gzip, not Parquet...): retrying
    /// cannot help, so the object goes to quarantine as a whole.
    #[error("{0}")]
    Malformed(String),
    /// Writing the parsed rows failed (lake side).
    #[error(transparent)]
    Sink(#[from] Error),
}

/// What one object produced.
#[derive(Debug, Default)]
pub struct ReadOutcome {
    pub rows_ok: u64,
    pub bad: Vec<BadRow>,
}

/// Marks an I/O error that came from the storage stream rather than from decoding its bytes.
#[derive(Debug)]
struct StorageFault(String);
impl std::fmt::Display for StorageFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for StorageFault {}

fn classify(e: std::io::Error, what: &str) -> ReadError {
    if let Some(fault) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<StorageFault>())
    {
        return ReadError::Unavailable(fault.0.clone());
    }
    ReadError::Malformed(format!("{what}: {e}"))
}

pub fn is_gzip(table: &TableConfig, key: &str) -> bool {
    match table.compression {
        Compression::Gzip => true,
        Compression::None => false,
        Compression::Auto => key.ends_with(".gz"),
    }
}

fn object_path(key: &str) -> Result<deltalake::Path, ReadError> {
    // `Path::parse` keeps the key as-is (`Path::from` would percent-encode non-ASCII and `%`, naming
    // another object). It only refuses keys with empty, `.` or `..` segments, which we cannot address.
    deltalake::Path::parse(key)
        .map_err(|e| ReadError::Unavailable(format!("unaddressable key `{key}`: {e}")))
}

/// The version of `key` now in storage (etag, size, mtime), without reading it.
pub async fn head(store: &StoreRef, key: &str) -> Result<ObjectMeta, ReadError> {
    store
        .head(&object_path(key)?)
        .await
        .map_err(|e| ReadError::Unavailable(e.to_string()))
}

/// The version tag used in idempotency markers and lineage: the etag (unquoted), else the event's etag,
/// else size and mtime.
pub fn version_tag(meta: &ObjectMeta, event_etag: Option<&str>) -> String {
    meta.e_tag
        .as_deref()
        .map(crate::events::clean_etag)
        .or_else(|| event_etag.map(str::to_string))
        .unwrap_or_else(|| format!("{}-{}", meta.size, meta.last_modified.timestamp_millis()))
}

/// Opens exactly the version `meta` describes (`If-Match` on its etag): if the object was replaced since,
/// this fails (and the event is retried) rather than reading other bytes under this version's marker.
pub async fn open(store: &StoreRef, key: &str, meta: &ObjectMeta) -> Result<GetResult, ReadError> {
    let options = GetOptions {
        if_match: meta.e_tag.clone(),
        ..Default::default()
    };
    store
        .get_opts(&object_path(key)?, options)
        .await
        .map_err(|e| ReadError::Unavailable(e.to_string()))
}

/// A blocking `Read` over the object's byte stream (for use inside `spawn_blocking`), decompressed when
/// needed. Storage errors surface as [`StorageFault`] I/O errors so [`classify`] can tell them apart.
pub fn blocking_reader(get: GetResult, gzip: bool) -> Box<dyn BufRead + Send> {
    let stream = get
        .into_stream()
        .map_err(|e| std::io::Error::other(StorageFault(e.to_string())));
    let bridge = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    if gzip {
        Box::new(BufReader::with_capacity(
            1 << 20,
            MultiGzDecoder::new(bridge),
        ))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, bridge))
    }
}

/// Whole object as bytes (Parquet needs random access to its footer), decompressed when needed.
pub async fn read_all(get: GetResult, gzip: bool) -> Result<Bytes, ReadError> {
    let bytes = get
        .bytes()
        .await
        .map_err(|e| ReadError::Unavailable(e.to_string()))?;
    if !gzip {
        return Ok(bytes);
    }
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        MultiGzDecoder::new(bytes.as_ref())
            .read_to_end(&mut out)
            .map_err(|e| classify(e, "gzip"))?;
        Ok(Bytes::from(out))
    })
    .await
    .map_err(|e| ReadError::Sink(Error::Task(e.to_string())))?
}

// ---------------------------------------------------------------- text chunks

/// Accumulates text rows as string columns aligned to the target schema, then conforms them.
struct TextChunk<'a> {
    target: &'a SchemaRef,
    lineage: &'a Lineage,
    builders: Vec<StringBuilder>,
    rows: Vec<u64>,
    raws: Vec<String>,
}

impl<'a> TextChunk<'a> {
    fn new(target: &'a SchemaRef, lineage: &'a Lineage) -> Self {
        TextChunk {
            target,
            lineage,
            builders: target
                .fields()
                .iter()
                .map(|_| StringBuilder::new())
                .collect(),
            rows: Vec::with_capacity(CHUNK_ROWS),
            raws: Vec::with_capacity(CHUNK_ROWS),
        }
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn push(&mut self, row: u64, raw: String, cells: &[Option<&str>]) {
        for (b, c) in self.builders.iter_mut().zip(cells) {
            b.append_option(*c);
        }
        self.rows.push(row);
        self.raws.push(raw);
    }

    fn flush(
        &mut self,
        out: &mut ReadOutcome,
        sink: &mut dyn FnMut(RecordBatch) -> Result<(), Error>,
    ) -> Result<(), ReadError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let cols: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let conformed = schema::conform(self.target, cols, &self.rows, &[], self.lineage)?;
        for (i, reason) in conformed.rejected {
            out.bad.push(BadRow {
                row: Some(self.rows[i]),
                raw: Some(std::mem::take(&mut self.raws[i])),
                reason,
            });
        }
        out.rows_ok += conformed.batch.num_rows() as u64;
        if conformed.batch.num_rows() > 0 {
            sink(conformed.batch)?;
        }
        self.rows.clear();
        self.raws.clear();
        Ok(())
    }
}

// ---------------------------------------------------------------- JSON lines

/// A numbered line: its text, or `Err(lossy text)` when it is not valid UTF-8.
type NumberedLine = (u64, Result<String, String>);

/// Reads lines, tracking 1-based line numbers; blank lines are skipped. Invalid UTF-8 yields `Err(raw)`.
struct Lines<R> {
    reader: R,
    line: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R) -> Self {
        Lines {
            reader,
            line: 0,
            buf: Vec::with_capacity(4096),
        }
    }

    fn next_line(&mut self) -> Result<Option<NumberedLine>, ReadError> {
        loop {
            self.buf.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| classify(e, "reading"))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                self.buf.pop();
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let text = match std::str::from_utf8(&self.buf) {
                Ok(s) => Ok(s.to_string()),
                Err(_) => Err(String::from_utf8_lossy(&self.buf).into_owned()),
            };
            return Ok(Some((self.line, text)));
        }
    }
}

enum JsonLine {
    Object(Map<String, Value>),
    /// A bare `null`: a Debezium tombstone (the Kafka compaction marker after a delete).
    Null,
    Bad(String),
}

fn parse_json_line(text: &str) -> JsonLine {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => JsonLine::Object(map),
        Ok(Value::Null) => JsonLine::Null,
        Ok(other) => JsonLine::Bad(format!(
            "expected a JSON object, found {}",
            json_type(&other)
        )),
        Err(e) => JsonLine::Bad(format!("invalid JSON: {e}")),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Text cells of one JSON object for the target columns, or the reason it does not fit structurally.
/// The text of one JSON value for column `field` (cast to its type later). Nested values are kept as
/// JSON text in string columns and rejected elsewhere.
pub(crate) fn json_cell(v: &Value, field: &Field) -> Result<Option<String>, String> {
    Ok(match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(_) | Value::Object(_) if field.data_type() == &DataType::Utf8 => {
            Some(v.to_string())
        }
        other => {
            return Err(format!(
                "column `{}`: expected a scalar, found {}",
                field.name(),
                json_type(other)
            ))
        }
    })
}

fn json_cells(
    map: &Map<String, Value>,
    target: &Schema,
    unknown: UnknownFields,
) -> Result<Vec<Option<String>>, String> {
    let mut cells = Vec::with_capacity(target.fields().len());
    let mut matched = 0;
    for f in target.fields() {
        let cell = match map.get(f.name()) {
            None => None,
            Some(v) => {
                matched += 1;
                json_cell(v, f)?
            }
        };
        cells.push(cell);
    }
    // Evolve added the fields its sample saw; one it did not see is still not dropped silently.
    if unknown != UnknownFields::Ignore && matched < map.len() {
        if let Some(k) = map.keys().find(|k| target.field_with_name(k).is_err()) {
            return Err(format!("unknown field `{k}` (not in the table schema)"));
        }
    }
    Ok(cells)
}

fn parse_jsonl(
    reader: impl BufRead,
    table: &TableConfig,
    target: &SchemaRef,
    lineage: &Lineage,
    sink: &mut dyn FnMut(RecordBatch) -> Result<(), Error>,
) -> Result<ReadOutcome, ReadError> {
    let mut out = ReadOutcome::default();
    let mut chunk = TextChunk::new(target, lineage);
    let mut lines = Lines::new(reader);
    while let Some((row, text)) = lines.next_line()? {
        let text = match text {
            Ok(t) => t,
            Err(raw) => {
                out.bad.push(BadRow {
                    row: Some(row),
                    raw: Some(raw),
                    reason: "line is not valid UTF-8".into(),
                });
                continue;
            }
        };
        let cells = match parse_json_line(&text) {
            JsonLine::Object(map) => json_cells(&map, target, table.unknown_fields),
            // The delete event before it carries everything; a tombstone adds nothing to keep.
            JsonLine::Null if table.cdc == CdcFormat::Debezium => continue,
            JsonLine::Null => Err("expected a JSON object, found null".to_string()),
            JsonLine::Bad(reason) => Err(reason),
        };
        match cells {
            Ok(cells) => {
                let refs: Vec<Option<&str>> = cells.iter().map(|c| c.as_deref()).collect();
                chunk.push(row, text, &refs);
            }
            Err(reason) => out.bad.push(BadRow {
                row: Some(row),
                raw: Some(text),
                reason,
            }),
        }
        if chunk.len() >= CHUNK_ROWS {
            chunk.flush(&mut out, sink)?;
        }
    }
    chunk.flush(&mut out, sink)?;
    Ok(out)
}

// ---------------------------------------------------------------- CSV

fn csv_reader<R: Read>(reader: R, table: &TableConfig) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .delimiter(table.csv_delimiter)
        .has_headers(table.csv_header)
        .flexible(true)
        .from_reader(reader)
}

fn csv_headers<R: Read>(
    rdr: &mut csv::Reader<R>,
    table: &TableConfig,
    width: usize,
) -> Result<Vec<String>, ReadError> {
    if table.csv_header {
        let h = rdr
            .headers()
            .map_err(|e| ReadError::Malformed(format!("CSV header: {e}")))?;
        Ok(h.iter().map(|s| s.trim().to_string()).collect())
    } else {
        Ok((0..width).map(|i| format!("c{i}")).collect())
    }
}

fn csv_raw(record: &csv::ByteRecord, delimiter: u8) -> String {
    let mut w = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .from_writer(Vec::new());
    let _ = w.write_byte_record(record);
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .trim_end_matches(['\n', '\r'])
        .to_string()
}

fn parse_csv(
    reader: impl BufRead,
    table: &TableConfig,
    target: &SchemaRef,
    lineage: &Lineage,
    sink: &mut dyn FnMut(RecordBatch) -> Result<(), Error>,
) -> Result<ReadOutcome, ReadError> {
    let mut out = ReadOutcome::default();
    let mut rdr = csv_reader(reader, table);
    let headers: Vec<String> = if table.csv_header {
        csv_headers(&mut rdr, table, 0)?
    } else {
        target.fields().iter().map(|f| f.name().clone()).collect()
    };
    // Where each header column goes in the target (None: unknown column).
    let slots: Vec<Option<usize>> = headers.iter().map(|h| target.index_of(h).ok()).collect();
    let unknown_header = headers
        .iter()
        .zip(&slots)
        .find(|(_, s)| s.is_none())
        .map(|(h, _)| h.clone());
    let mut chunk = TextChunk::new(target, lineage);
    let mut record = csv::ByteRecord::new();
    let mut cells: Vec<Option<String>> = vec![None; target.fields().len()];
    loop {
        match rdr.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                if let csv::ErrorKind::Io(io) = e.kind() {
                    if io.get_ref().is_some_and(|i| i.is::<StorageFault>()) {
                        return Err(ReadError::Unavailable(io.to_string()));
                    }
                }
                return Err(ReadError::Malformed(format!("CSV: {e}")));
            }
        }
        let row = record.position().map(|p| p.line()).unwrap_or(0);
        let raw = csv_raw(&record, table.csv_delimiter);
        if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) && record.len() <= 1 {
            continue;
        }
        let reason = if record.len() != headers.len() {
            Some(format!(
                "expected {} fields, found {}",
                headers.len(),
                record.len()
            ))
        } else if let (Some(h), false) = (
            &unknown_header,
            table.unknown_fields == UnknownFields::Ignore,
        ) {
            Some(format!("unknown column `{h}` (not in the table schema)"))
        } else {
            None
        };
        if let Some(reason) = reason {
            out.bad.push(BadRow {
                row: Some(row),
                raw: Some(raw),
                reason,
            });
            continue;
        }
        cells.iter_mut().for_each(|c| *c = None);
        let mut utf8_error = false;
        for (field, slot) in record.iter().zip(&slots) {
            if let Some(i) = slot {
                match std::str::from_utf8(field) {
                    Ok("") => {}
                    Ok(s) => cells[*i] = Some(s.to_string()),
                    Err(_) => utf8_error = true,
                }
            }
        }
        if utf8_error {
            out.bad.push(BadRow {
                row: Some(row),
                raw: Some(raw),
                reason: "field is not valid UTF-8".into(),
            });
            continue;
        }
        let refs: Vec<Option<&str>> = cells.iter().map(|c| c.as_deref()).collect();
        chunk.push(row, raw, &refs);
        if chunk.len() >= CHUNK_ROWS {
            chunk.flush(&mut out, sink)?;
        }
    }
    chunk.flush(&mut out, sink)?;
    Ok(out)
}

// ---------------------------------------------------------------- Parquet

fn row_as_json(batch: &RecordBatch, row: usize) -> String {
    let mut obj = Map::new();
    for (f, col) in batch.schema().fields().iter().zip(batch.columns()) {
        let v = if col.is_null(row) {
            Value::Null
        } else {
            let text = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())
                .map(|fmt| fmt.value(row).to_string())
                .unwrap_or_default();
            Value::String(text)
        };
        obj.insert(f.name().clone(), v);
    }
    Value::Object(obj).to_string()
}

fn parquet_reader(bytes: Bytes) -> Result<ParquetRecordBatchReaderBuilder<Bytes>, ReadError> {
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| ReadError::Malformed(format!("not a readable Parquet file: {e}")))
}

/// Parses a whole Parquet file (already in memory).
pub fn parse_parquet(
    bytes: Bytes,
    table: &TableConfig,
    target: &SchemaRef,
    lineage: &Lineage,
    sink: &mut dyn FnMut(RecordBatch) -> Result<(), Error>,
) -> Result<ReadOutcome, ReadError> {
    let mut out = ReadOutcome::default();
    let reader = parquet_reader(bytes)?
        .with_batch_size(CHUNK_ROWS)
        .build()
        .map_err(|e| ReadError::Malformed(format!("Parquet: {e}")))?;
    let mut offset: u64 = 0;
    for batch in reader {
        let batch = batch.map_err(|e| ReadError::Malformed(format!("Parquet: {e}")))?;
        let n = batch.num_rows();
        let rows: Vec<u64> = (offset + 1..=offset + n as u64).collect();
        offset += n as u64;
        let unknown = batch
            .schema()
            .fields()
            .iter()
            .find(|f| target.field_with_name(f.name()).is_err())
            .map(|f| f.name().clone());
        let pre: Vec<Option<String>> = match (unknown, table.unknown_fields) {
            (Some(name), UnknownFields::Quarantine | UnknownFields::Evolve) => {
                vec![Some(format!("unknown column `{name}` (not in the table schema)")); n]
            }
            _ => Vec::new(),
        };
        let sources: Vec<ArrayRef> = target
            .fields()
            .iter()
            .map(|f| {
                batch
                    .column_by_name(f.name())
                    .cloned()
                    .unwrap_or_else(|| deltalake::arrow::array::new_null_array(f.data_type(), n))
            })
            .collect();
        let conformed = schema::conform(target, sources, &rows, &pre, lineage)?;
        for (i, reason) in conformed.rejected {
            out.bad.push(BadRow {
                row: Some(rows[i]),
                raw: Some(row_as_json(&batch, i)),
                reason,
            });
        }
        out.rows_ok += conformed.batch.num_rows() as u64;
        if conformed.batch.num_rows() > 0 {
            sink(conformed.batch)?;
        }
    }
    Ok(out)
}

/// Parses a text-format object (JSON lines or CSV) from a blocking reader.
pub fn parse_text(
    reader: impl BufRead,
    table: &TableConfig,
    target: &SchemaRef,
    lineage: &Lineage,
    sink: &mut dyn FnMut(RecordBatch) -> Result<(), Error>,
) -> Result<ReadOutcome, ReadError> {
    match table.format {
        Format::Jsonl => parse_jsonl(reader, table, target, lineage, sink),
        Format::Csv => parse_csv(reader, table, target, lineage, sink),
        Format::Parquet => Err(ReadError::Malformed("parquet is not a text format".into())),
    }
    .map(sorted)
}

/// Bad rows in source order (structural rejects are found before type rejects of the same chunk).
fn sorted(mut out: ReadOutcome) -> ReadOutcome {
    out.bad.sort_by_key(|b| b.row);
    out
}

// ---------------------------------------------------------------- inference

/// Infers a schema from the first rows of a text object. `None` when it has no parseable row.
pub fn infer_text(reader: impl BufRead, table: &TableConfig) -> Result<Option<Schema>, ReadError> {
    match table.format {
        Format::Jsonl => {
            let mut lines = Lines::new(reader);
            let mut samples = Vec::new();
            while samples.len() < schema::INFER_SAMPLE_ROWS {
                let Some((_, text)) = lines.next_line()? else {
                    break;
                };
                if let Ok(text) = text {
                    if let JsonLine::Object(map) = parse_json_line(&text) {
                        samples.push(map);
                    }
                }
            }
            Ok((!samples.is_empty()).then(|| schema::infer_from_json(&samples)))
        }
        Format::Csv => {
            let mut rdr = csv_reader(reader, table);
            let mut rows: Vec<Vec<Option<String>>> = Vec::new();
            let mut headers = if table.csv_header {
                Some(csv_headers(&mut rdr, table, 0)?)
            } else {
                None
            };
            for record in rdr.records().take(schema::INFER_SAMPLE_ROWS) {
                let Ok(record) = record else { continue };
                let width = headers
                    .get_or_insert_with(|| (0..record.len()).map(|i| format!("c{i}")).collect())
                    .len();
                if record.len() == width {
                    rows.push(
                        record
                            .iter()
                            .map(|s| (!s.is_empty()).then(|| s.to_string()))
                            .collect(),
                    );
                }
            }
            Ok(headers
                .filter(|h| !h.is_empty() && !rows.is_empty())
                .map(|h| schema::infer_from_text(&h, &rows)))
        }
        Format::Parquet => Err(ReadError::Malformed("parquet is not a text format".into())),
    }
}

/// The schema of a Parquet file (all columns nullable).
pub fn infer_parquet(bytes: Bytes) -> Result<Option<Schema>, ReadError> {
    let builder = parquet_reader(bytes)?;
    let fields: Vec<_> = builder
        .schema()
        .fields()
        .iter()
        .filter(|f| !schema::is_lineage(f.name()))
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Ok((!fields.is_empty()).then(|| Schema::new(fields)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PipelineConfig;
    use deltalake::arrow::array::AsArray;
    use deltalake::arrow::datatypes::{DataType, Field, Int64Type};

    fn table(format: &str, extra: &str) -> TableConfig {
        let text = format!(
            "[landing]\nuri = \"s3://l\"\n[lake]\nuri = \"s3://k\"\n[[table]]\nname = \"t\"\nformat = \"{format}\"\n{extra}\n"
        );
        PipelineConfig::from_toml(&text, "test")
            .unwrap()
            .tables
            .remove(0)
    }

    fn target() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("amount", DataType::Float64, true),
        ]))
    }

    fn lineage() -> Lineage {
        Lineage {
            key: "landing/t/a".into(),
            etag: "abc".into(),
            ingested_at_us: 1,
        }
    }

    fn run(format: &str, extra: &str, input: &[u8]) -> (Vec<RecordBatch>, ReadOutcome) {
        let t = table(format, extra);
        let mut batches = Vec::new();
        let out = parse_text(input, &t, &target(), &lineage(), &mut |b| {
            batches.push(b);
            Ok(())
        })
        .unwrap();
        (batches, out)
    }

    #[test]
    fn jsonl_good_and_bad_rows_keep_line_numbers() {
        let input = b"{\"id\": 1, \"name\": \"a\", \"amount\": 1.5}\n\n{\"id\": \"x\"}\nnot json\n[1]\n{\"id\": 4, \"extra\": 1}\n{\"id\": 5, \"amount\": {\"n\": 1}}\n{\"name\": \"no id\"}\n{\"id\": 9}\r\n";
        let (batches, out) = run("jsonl", "", input);
        let ids: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(ids, vec![1, 9]);
        let rows: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column_by_name(schema::SOURCE_ROW)
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(rows, vec![1, 9]);
        let bad: Vec<(u64, &str)> = out
            .bad
            .iter()
            .map(|b| (b.row.unwrap(), b.reason.as_str()))
            .collect();
        assert_eq!(
            bad.iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![3, 4, 5, 6, 7, 8],
            "{bad:?}"
        );
        assert!(bad[0].1.contains("`x` is not a valid long"), "{bad:?}");
        assert!(bad[1].1.starts_with("invalid JSON"), "{bad:?}");
        assert!(bad[2].1.contains("expected a JSON object, found an array"));
        assert!(bad[3].1.contains("unknown field `extra`"));
        assert!(bad[4].1.contains("`amount`: expected a scalar"), "{bad:?}");
        assert!(bad[5].1.contains("`id` is required"));
        assert_eq!(
            out.bad
                .iter()
                .find(|b| b.row == Some(4))
                .unwrap()
                .raw
                .as_deref(),
            Some("not json")
        );
        assert_eq!(out.rows_ok, 2);
    }

    #[test]
    fn jsonl_ignore_policy_drops_unknown_fields() {
        let (batches, out) = run(
            "jsonl",
            "unknown_fields = \"ignore\"",
            b"{\"id\": 4, \"extra\": 1}\n",
        );
        assert_eq!(batches[0].num_rows(), 1);
        assert!(out.bad.is_empty());
    }

    #[test]
    fn csv_rows_quoting_and_field_counts() {
        let input = b"id,name,amount\n1,\"a, b\",2.5\n2,\"multi\nline\",\n3,x\nfoo,y,1\n";
        let (batches, out) = run("csv", "", input);
        let b = &batches[0];
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.column(1).as_string::<i32>().value(0), "a, b");
        assert_eq!(b.column(1).as_string::<i32>().value(1), "multi\nline");
        assert!(b.column(2).is_null(1));
        let rows: Vec<i64> = b
            .column_by_name(schema::SOURCE_ROW)
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(rows, vec![2, 3]);
        assert_eq!(out.bad.len(), 2);
        assert_eq!(out.bad[0].row, Some(5));
        assert!(out.bad[0].reason.contains("expected 3 fields, found 2"));
        assert_eq!(out.bad[0].raw.as_deref(), Some("3,x"));
        assert!(out.bad[1].reason.contains("`foo` is not a valid long"));
    }

    #[test]
    fn gzip_text_is_decompressed_and_corrupt_gzip_is_malformed() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"{\"id\": 1}\n{\"id\": 2}\n").unwrap();
        let gz = enc.finish().unwrap();
        let t = table("jsonl", "");
        let mut n = 0;
        let reader = BufReader::new(MultiGzDecoder::new(gz.as_slice()));
        let out = parse_text(reader, &t, &target(), &lineage(), &mut |b| {
            n += b.num_rows();
            Ok(())
        })
        .unwrap();
        assert_eq!((n, out.rows_ok), (2, 2));
        let corrupt = &gz[..gz.len() / 2];
        let reader = BufReader::new(MultiGzDecoder::new(corrupt));
        let err = parse_text(reader, &t, &target(), &lineage(), &mut |_| Ok(())).unwrap_err();
        assert!(matches!(err, ReadError::Malformed(_)), "{err}");
    }

    #[test]
    fn infers_csv_and_jsonl_schemas() {
        let t = table("csv", "");
        let s = infer_text(&b"a,b\n1,x\n2,y\n"[..], &t).unwrap().unwrap();
        assert_eq!(s.field(0).data_type(), &DataType::Int64);
        let t = table("jsonl", "");
        let s = infer_text(&b"garbage\n{\"a\": 1.5}\n"[..], &t)
            .unwrap()
            .unwrap();
        assert_eq!(s.field(0).data_type(), &DataType::Float64);
        assert!(infer_text(&b"garbage\n"[..], &t).unwrap().is_none());
    }

    #[test]
    fn parquet_rows_are_conformed() {
        use deltalake::arrow::array::{Int64Array, StringArray};
        use deltalake::parquet::arrow::ArrowWriter;
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("amount", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
                Arc::new(StringArray::from(vec![Some("1.25"), Some("2"), Some("zz")])),
            ],
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let t = table("parquet", "");
        let mut got = Vec::new();
        let out = parse_parquet(Bytes::from(buf), &t, &target(), &lineage(), &mut |b| {
            got.push(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(out.rows_ok, 1);
        assert_eq!(out.bad.len(), 2);
        assert_eq!(out.bad[0].row, Some(2));
        assert!(out.bad[1].raw.as_deref().unwrap().contains("zz"));
        let err = parse_parquet(
            Bytes::from_static(b"nope"),
            &t,
            &target(),
            &lineage(),
            &mut |_| Ok(()),
        )
        .unwrap_err();
        assert!(matches!(err, ReadError::Malformed(_)));
    }
}
