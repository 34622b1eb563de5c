//! Readers for landing objects: JSON lines, CSV and Parquet, each optionally gzip-compressed. Objects are
//! streamed (text formats never sit whole in memory), parsed in chunks, conformed to the table schema, and
//! every row that does not fit becomes a [`BadRow`] with its line number, raw text and reason.
//!
//! [`object`] is storage access; [`jsonl`], [`csv`] and [`parquet`] the formats; [`infer`] schema
//! inference; [`chunk`] the text rows' way into typed batches.

use std::io::BufRead;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;

use crate::config::{Format, TableConfig};
use crate::error::Error;
use crate::schema::{BadRow, Lineage};

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

/// Parses a text-format object (JSON lines or CSV) from a blocking reader.
pub fn parse_text(
    reader: impl BufRead,
    table: &TableConfig,
    target: &SchemaRef,
    lineage: &Lineage,
    sink: &mut dyn FnMut(RecordBatch) -> Result<(), Error>,
) -> Result<ReadOutcome, ReadError> {
    match table.format {
        Format::Jsonl => jsonl::parse_jsonl(reader, table, target, lineage, sink),
        Format::Csv => csv::parse_csv(reader, table, target, lineage, sink),
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
