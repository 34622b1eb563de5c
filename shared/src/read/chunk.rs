//! Text rows on their way to a table: numbered lines, and chunks of string cells that are conformed to
//! the target schema (rows that do not fit become [`BadRow`]s with their line and raw text).

use std::io::BufRead;
use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, RecordBatch, StringBuilder};
use deltalake::arrow::datatypes::SchemaRef;

use super::object::classify;
use super::{ReadError, ReadOutcome, CHUNK_ROWS};
use crate::error::Error;
use crate::schema::{self, BadRow, Lineage};

/// Accumulates text rows as string columns aligned to the target schema, then conforms them.
pub(super) struct TextChunk<'a> {
    target: &'a SchemaRef,
    lineage: &'a Lineage,
    builders: Vec<StringBuilder>,
    rows: Vec<u64>,
    raws: Vec<String>,
}

impl<'a> TextChunk<'a> {
    pub(super) fn new(target: &'a SchemaRef, lineage: &'a Lineage) -> Self {
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

    pub(super) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(super) fn push(&mut self, row: u64, raw: String, cells: &[Option<&str>]) {
        for (b, c) in self.builders.iter_mut().zip(cells) {
            b.append_option(*c);
        }
        self.rows.push(row);
        self.raws.push(raw);
    }

    pub(super) fn flush(
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

/// A numbered line: its text, or `Err(lossy text)` when it is not valid UTF-8.
pub(super) type NumberedLine = (u64, Result<String, String>);

/// Reads lines, tracking 1-based line numbers; blank lines are skipped. Invalid UTF-8 yields `Err(raw)`.
pub(super) struct Lines<R> {
    reader: R,
    line: u64,
    buf: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    pub(super) fn new(reader: R) -> Self {
        Lines {
            reader,
            line: 0,
            buf: Vec::with_capacity(4096),
        }
    }

    pub(super) fn next_line(&mut self) -> Result<Option<NumberedLine>, ReadError> {
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
