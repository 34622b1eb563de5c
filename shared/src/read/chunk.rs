//! Text rows on their way to a table: numbered lines, and chunks of string cells that are conformed to
//! the target schema (rows that do not fit become [`BadRow`]s with their line and raw text).

use std::io::BufRead;
use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, StringBuilder};

use super::object::classify;
use super::{Destination, ReadError, ReadOutcome, CHUNK_ROWS};

/// Accumulates text rows as string columns aligned to the target schema, then conforms them.
pub(super) struct TextChunk {
    builders: Vec<StringBuilder>,
    rows: Vec<u64>,
    raws: Vec<String>,
}

impl TextChunk {
    /// A chunk of `width` columns (the target's).
    pub(super) fn new(width: usize) -> Self {
        TextChunk {
            builders: (0..width).map(|_| StringBuilder::new()).collect(),
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
        dest: &mut Destination,
        out: &mut ReadOutcome,
    ) -> Result<(), ReadError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let cols: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        let raws = &mut self.raws;
        dest.deliver(cols, &self.rows, &[], |i| std::mem::take(&mut raws[i]), out)?;
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
