//! Readers for landing objects: JSON lines, CSV and Parquet, each optionally gzip-compressed. Objects are
//! streamed (text formats never sit whole in memory), parsed in chunks, conformed to the table schema, and
//! every row that does not fit becomes a [`BadRow`] with its line number, raw text and reason.
//!
//! [`object`] is storage access; [`jsonl`], [`csv`] and [`parquet`] the formats; [`infer`] schema
//! inference; [`chunk`] the text rows' way into typed batches.

use std::io::BufRead;

use deltalake::arrow::array::{ArrayRef, RecordBatch};
use deltalake::arrow::datatypes::SchemaRef;

use crate::config::{Format, TableConfig};
use crate::error::Error;
use crate::schema::{self, BadRow, Lineage};

mod chunk;
mod csv;
mod infer;
pub(crate) mod jsonl;
pub mod object;
mod parquet;

pub use infer::{infer_parquet, infer_text};
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
            out.bad.push(BadRow {
                row: Some(rows[i]),
                raw: Some(raw(i)),
                reason,
            });
        }
        out.rows_ok += conformed.batch.num_rows() as u64;
        if conformed.batch.num_rows() > 0 {
            (self.sink)(conformed.batch)?;
        }
        Ok(())
    }
}

/// Parses a text-format object (JSON lines or CSV) from a blocking reader.
pub fn parse_text(
    reader: impl BufRead,
    table: &TableConfig,
    dest: Destination,
) -> Result<ReadOutcome, ReadError> {
    match table.format {
        Format::Jsonl => jsonl::parse_jsonl(reader, table, dest),
        Format::Csv => csv::parse_csv(reader, table, dest),
        Format::Parquet => Err(ReadError::Malformed("parquet is not a text format".into())),
    }
    .map(sorted)
}

/// Bad rows in source order (structural rejects are found before type rejects of the same chunk).
fn sorted(mut out: ReadOutcome) -> ReadOutcome {
    out.bad.sort_by_key(|b| b.row);
    out
}

#[cfg(test)]
mod tests;
