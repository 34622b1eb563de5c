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
    /// Raw bytes held: a chunk is also full at [`CHUNK_BYTES`], so long lines cannot pile up.
    bytes: usize,
}

/// Most raw text a chunk holds before it is conformed and handed on (with the typed copy, a text
/// object's rows in flight stay near twice this whatever its lines' lengths).
const CHUNK_BYTES: usize = 32 << 20;

impl TextChunk {
    /// A chunk of `width` columns (the target's).
    pub(super) fn new(width: usize) -> Self {
        TextChunk {
            builders: (0..width).map(|_| StringBuilder::new()).collect(),
            rows: Vec::with_capacity(CHUNK_ROWS),
            raws: Vec::with_capacity(CHUNK_ROWS),
            bytes: 0,
        }
    }

    /// Whether the chunk should be flushed before taking more rows.
    pub(super) fn full(&self) -> bool {
        self.rows.len() >= CHUNK_ROWS || self.bytes >= CHUNK_BYTES
    }

    pub(super) fn push(&mut self, row: u64, raw: String, cells: &[Option<&str>]) {
        for (b, c) in self.builders.iter_mut().zip(cells) {
            b.append_option(*c);
        }
        self.rows.push(row);
        self.bytes += raw.len();
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
        self.bytes = 0;
        Ok(())
    }
}

/// A numbered line: its text, or why it cannot be used with its raw text (lossy, cut at the limit).
pub(super) type NumberedLine = (u64, Result<String, (String, String)>);

/// Reads lines, tracking 1-based line numbers; blank lines are skipped, a UTF-8 byte-order mark at the
/// start is dropped. A line longer than `max` bytes is consumed to its end without being held: its
/// first `max` bytes come back with the reason.
pub(super) struct Lines<R> {
    reader: R,
    line: u64,
    buf: Vec<u8>,
    max: usize,
}

impl<R: BufRead> Lines<R> {
    pub(super) fn new(reader: R, max: usize) -> Self {
        Lines {
            reader,
            line: 0,
            buf: Vec::with_capacity(4096),
            max,
        }
    }

    /// Appends bytes up to the next newline (consumed, not kept) to `buf`, keeping at most `max` of
    /// them. Returns the line's full length and whether anything was read.
    fn read_line(&mut self) -> Result<(usize, bool), ReadError> {
        let (mut len, mut any) = (0usize, false);
        loop {
            let available = self.reader.fill_buf().map_err(|e| classify(e, "reading"))?;
            if available.is_empty() {
                return Ok((len, any));
            }
            any = true;
            let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (&available[..i], Some(i + 1)),
                None => (available, None),
            };
            let room = (self.max + 1).saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            len += chunk.len();
            let used = done.unwrap_or(available.len());
            self.reader.consume(used);
            if done.is_some() {
                return Ok((len, any));
            }
        }
    }

    pub(super) fn next_line(&mut self) -> Result<Option<NumberedLine>, ReadError> {
        loop {
            self.buf.clear();
            let (len, any) = self.read_line()?;
            if !any {
                return Ok(None);
            }
            self.line += 1;
            if self.line == 1 && self.buf.starts_with(b"\xEF\xBB\xBF") {
                self.buf.drain(..3);
            }
            while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                self.buf.pop();
            }
            if len > self.max {
                self.buf.truncate(self.max);
                let raw = String::from_utf8_lossy(&self.buf).into_owned();
                let reason = format!(
                    "line is {len} bytes, over the limit of {} (limits.max_line_mb); its first bytes are kept",
                    self.max
                );
                return Ok(Some((self.line, Err((raw, reason)))));
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let text = match std::str::from_utf8(&self.buf) {
                Ok(s) => Ok(s.to_string()),
                Err(_) => Err((
                    String::from_utf8_lossy(&self.buf).into_owned(),
                    "line is not valid UTF-8".to_string(),
                )),
            };
            return Ok(Some((self.line, text)));
        }
    }
}
