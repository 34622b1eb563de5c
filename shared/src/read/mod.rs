//! Readers for landing objects: JSON lines, CSV and Parquet, each optionally gzip-compressed. Objects are
//! streamed (text formats never sit whole in memory), parsed in chunks, conformed to the table schema, and
//! every row that does not fit becomes a [`BadRow`] with its line number, raw text and reason.
//!
//! [`object`] is storage access; [`jsonl`], [`csv`] and [`parquet`] the formats; [`infer`] schema
//! inference; [`chunk`] the text rows' way into typed batches.

use std::io::BufRead;

use deltalake::arrow::array::{ArrayRef, RecordBatch};
use deltalake::arrow::datatypes::SchemaRef;

use crate::config::{Format, Limits, TableConfig};
use crate::error::Error;
use crate::schema::{self, BadRow, Lineage};

mod avro;
mod chunk;
mod csv;
mod infer;
mod json;
pub(crate) mod jsonl;
pub mod object;
mod parquet;

pub use avro::parse_avro;
pub use infer::{check_names, infer_avro, infer_parquet, infer_text};
pub use object::{blocking_reader, head, is_gzip, open, read_all, version_tag};
pub use parquet::parse_parquet;

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
    limits: Limits,
    /// Rejected rows past `limits.max_rejected_rows`: counted, not kept (count, first and last row).
    overflow: Option<(u64, u64, u64)>,
    /// Whether `bad` ends with the entry summarising `overflow` (added by `finish`).
    summarised: bool,
}

impl ReadOutcome {
    pub(crate) fn new(limits: Limits) -> Self {
        ReadOutcome {
            limits,
            ..Default::default()
        }
    }

    /// Every rejected row, kept or only counted.
    pub fn rejected(&self) -> u64 {
        let kept = self.bad.len() as u64 - u64::from(self.summarised);
        kept + self.overflow.map_or(0, |o| o.0)
    }

    /// Records a rejected row: kept with its raw text (cut at `limits.max_raw_bytes`) up to
    /// `limits.max_rejected_rows`, counted past that, so a file of bad rows cannot exhaust memory.
    pub(crate) fn reject(&mut self, row: Option<u64>, raw: Option<String>, mut reason: String) {
        if self.bad.len() >= self.limits.max_rejected_rows {
            let r = row.unwrap_or(0);
            let o = self.overflow.get_or_insert((0, r, r));
            o.0 += 1;
            o.1 = o.1.min(r);
            o.2 = o.2.max(r);
            return;
        }
        let raw = raw.map(|text| cut_raw(text, self.limits.max_raw_bytes, &mut reason));
        self.bad.push(BadRow { row, raw, reason });
    }

    /// Bad rows in source order (structural rejects are found before type rejects of the same chunk),
    /// then one entry for the rows only counted.
    fn finish(mut self) -> Self {
        self.bad.sort_by_key(|b| b.row);
        if let Some((n, first, last)) = self.overflow {
            self.bad.push(BadRow {
                row: None,
                raw: None,
                reason: format!(
                    "{n} more rejected rows (rows {first}..={last}) are not kept here: over limits.max_rejected_rows = {}; the object is untouched in landing",
                    self.limits.max_rejected_rows
                ),
            });
            self.summarised = true;
        }
        self
    }
}

/// Where one object's rows go: the schema they are conformed to, the lineage they carry, and the
/// consumer of each conformed chunk (bronze's Parquet writer).
pub struct Destination<'a> {
    pub target: &'a SchemaRef,
    pub lineage: &'a Lineage,
    pub sink: Box<dyn FnMut(RecordBatch) -> Result<(), Error> + 'a>,
}

impl Destination<'_> {
    /// Conforms one chunk (`columns` aligned with the target, `rows` their 1-based numbers, `pre`
    /// reasons found before conforming) and hands what fits to the sink; each row that does not fit
    /// goes to `out.bad` with its raw text, `raw(i)`.
    fn deliver(
        &mut self,
        columns: Vec<ArrayRef>,
        rows: &[u64],
        pre: &[Option<String>],
        mut raw: impl FnMut(usize) -> String,
        out: &mut ReadOutcome,
    ) -> Result<(), ReadError> {
        let conformed = schema::conform(self.target, columns, rows, pre, self.lineage)?;
        for (i, reason) in conformed.rejected {
            out.reject(Some(rows[i]), Some(raw(i)), reason);
        }
        out.rows_ok += conformed.batch.num_rows() as u64;
        if conformed.batch.num_rows() > 0 {
            (self.sink)(conformed.batch)?;
        }
        Ok(())
    }
}

/// Runs a reader on the blocking pool. A panic inside it (a dependency's bug on crafted input, e.g. a
/// Parquet decoder) becomes this object's quarantine reason, not the end of the process and of every
/// other object in the batch.
pub async fn contained<T: Send + 'static>(
    what: String,
    f: impl FnOnce() -> Result<T, ReadError> + Send + 'static,
) -> Result<T, ReadError> {
    let run = move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    match tokio::task::spawn_blocking(run).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(panicked(&what, panic.as_ref())),
        Err(join) if join.is_panic() => Err(panicked(&what, join.into_panic().as_ref())),
        Err(source) => Err(ReadError::Sink(Error::Task { what, source })),
    }
}

fn panicked(what: &str, panic: &(dyn std::any::Any + Send)) -> ReadError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    ReadError::Malformed(format!(
        "the {what} failed on this object (panicked: {message})"
    ))
}

/// Parses a text-format object (JSON lines or CSV) from a blocking reader.
pub fn parse_text(
    reader: impl BufRead,
    table: &TableConfig,
    dest: Destination,
) -> Result<ReadOutcome, ReadError> {
    match table.format {
        Format::Jsonl => jsonl::parse_jsonl(reader, table, dest),
        Format::Json => json::parse_json(reader, table, dest),
        Format::Csv => csv::parse_csv(reader, table, dest),
        Format::Parquet | Format::Avro | Format::Binary => Err(ReadError::Malformed(
            "parquet, avro and binary objects are not text formats".into(),
        )),
    }
    .map(ReadOutcome::finish)
}

/// A rejected row's raw text, cut at `max` bytes (on a character boundary); the reason then says so.
pub(crate) fn cut_raw(mut text: String, max: usize, reason: &mut String) -> String {
    if text.len() > max {
        let cut = (0..=max)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        reason.push_str(&format!(
            " (raw text cut to its first {cut} of {} bytes: limits.max_raw_kb)",
            text.len()
        ));
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
