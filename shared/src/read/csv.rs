//! CSV: a header names the columns (or `c0, c1, ...` without one), every record must have as many
//! fields as the header, and its raw text is kept for quarantine.
//!
//! The records come from [`Records`], a small RFC 4180 reader of our own rather than the `csv` crate,
//! because a strict pipeline needs three things that crate does not say: whether a field was quoted (an
//! empty unquoted field is NULL, `""` is the empty string: how AWS DMS and Spark tell them apart),
//! whether the file ended inside quotes (an unterminated quote must not swallow the rest of the file
//! into one "valid" field: the quote's record is rejected and the lines after it are read again one
//! record per line, Spark's non-multiline rule), and each record's exact bytes, read in linear time
//! with a length cap.

use std::io::BufRead;

use deltalake::arrow::datatypes::DataType;

use super::chunk::TextChunk;
use super::object::classify;
use super::{Destination, ReadError, ReadOutcome};
use crate::config::{TableConfig, UnknownFields};

/// One record as read.
#[derive(Default)]
pub(super) struct Record {
    /// Field contents, back to back in `data`: (end offset, quoted).
    ends: Vec<(usize, bool)>,
    data: Vec<u8>,
    /// The record's bytes as written (without its line end), at most the reader's `max` of them.
    raw: Vec<u8>,
    /// Full length in bytes (`raw` may hold fewer).
    len: usize,
    /// 1-based line the record starts on.
    pub(super) line: u64,
    /// Why the record is not well-formed, if it is not.
    flaw: Option<String>,
}

impl Record {
    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Field `i`: its bytes and whether it was quoted.
    pub(super) fn field(&self, i: usize) -> (&[u8], bool) {
        let start = if i == 0 { 0 } else { self.ends[i - 1].0 };
        let (end, quoted) = self.ends[i];
        (&self.data[start..end], quoted)
    }

    pub(super) fn raw(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// Text cell `i`: `None` for an empty unquoted field (NULL), the text otherwise.
    pub(super) fn cell(&self, i: usize) -> Result<Option<&str>, ()> {
        let (bytes, quoted) = self.field(i);
        if bytes.is_empty() && !quoted {
            return Ok(None);
        }
        std::str::from_utf8(bytes).map(Some).map_err(|_| ())
    }

    fn blank(&self) -> bool {
        self.ends.len() == 1 && !self.ends[0].1 && self.data.iter().all(u8::is_ascii_whitespace)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: the field's end, or the first of an escaped `""`.
    QuoteInQuoted,
}

/// Streams CSV records from a reader (linear time; memory bounded by `max` bytes per record).
pub(super) struct Records<R> {
    reader: R,
    delimiter: u8,
    max: usize,
    line: u64,
    /// A UTF-8 byte-order mark is skipped once, at the start.
    started: bool,
    /// Bytes to read before `reader`'s: what an unterminated quote had swallowed, read again.
    pending: Option<std::io::Cursor<Vec<u8>>>,
    /// After an unterminated quote, every line is one record (Spark's non-multiline rule): quotes
    /// no longer span lines, so one stray quote costs one record, in linear time.
    line_mode: bool,
}

impl<R: BufRead> Records<R> {
    pub(super) fn new(reader: R, table: &TableConfig) -> Self {
        Records {
            reader,
            delimiter: table.csv_delimiter,
            max: table.limits.max_line_bytes,
            line: 1,
            started: false,
            pending: None,
            line_mode: false,
        }
    }

    /// Reads the next non-blank record into `rec`; `false` at the end of the input.
    pub(super) fn next(&mut self, rec: &mut Record) -> Result<bool, ReadError> {
        loop {
            if !self.read(rec)? {
                return Ok(false);
            }
            if !rec.blank() || rec.flaw.is_some() {
                return Ok(true);
            }
        }
    }

    fn read(&mut self, rec: &mut Record) -> Result<bool, ReadError> {
        rec.ends.clear();
        rec.data.clear();
        rec.raw.clear();
        rec.len = 0;
        rec.flaw = None;
        rec.line = self.line;
        if !self.started {
            self.started = true;
            let head = self.reader.fill_buf().map_err(|e| classify(e, "reading"))?;
            if head.starts_with(b"\xEF\xBB\xBF") {
                self.reader.consume(3);
            }
        }
        let (max, delimiter) = (self.max, self.delimiter);
        let mut state = State::FieldStart;
        let mut quoted = false;
        let mut any = false;
        loop {
            let from_pending = self
                .pending
                .as_ref()
                .is_some_and(|p| (p.position() as usize) < p.get_ref().len());
            let buf = match self.pending.as_mut() {
                Some(p) if from_pending => p.fill_buf().map_err(|e| classify(e, "reading"))?,
                _ => self.reader.fill_buf().map_err(|e| classify(e, "reading"))?,
            };
            if buf.is_empty() {
                if !any {
                    return Ok(false);
                }
                if state == State::Quoted {
                    rec.flaw = Some(format!(
                        "unterminated quoted field: the file ends inside quotes opened on or after line {}{}",
                        rec.line,
                        if rec.len > max {
                            " (what followed was longer than limits.max_line_mb and is not read again)"
                        } else {
                            ""
                        }
                    ));
                }
                end_field(rec, quoted, max);
                self.recover(rec, max, false);
                return Ok(true);
            }
            any = true;
            let mut used = 0;
            let mut done = false;
            let line_mode = self.line_mode;
            for &b in buf {
                used += 1;
                if b == b'\n' && (state != State::Quoted || line_mode) {
                    done = true;
                    break;
                }
                rec.len += 1;
                if rec.raw.len() < max {
                    rec.raw.push(b);
                }
                if b == b'\n' {
                    self.line += 1;
                }
                match state {
                    State::FieldStart if b == b'"' => {
                        state = State::Quoted;
                        quoted = true;
                    }
                    State::FieldStart | State::Unquoted if b == delimiter => {
                        end_field(rec, quoted, max);
                        quoted = false;
                        state = State::FieldStart;
                    }
                    State::FieldStart | State::Unquoted => {
                        state = State::Unquoted;
                        push(rec, max, b);
                    }
                    State::Quoted if b == b'"' => state = State::QuoteInQuoted,
                    State::Quoted => push(rec, max, b),
                    State::QuoteInQuoted if b == b'"' => {
                        push(rec, max, b'"');
                        state = State::Quoted;
                    }
                    State::QuoteInQuoted if b == delimiter => {
                        end_field(rec, quoted, max);
                        quoted = false;
                        state = State::FieldStart;
                    }
                    State::QuoteInQuoted if b == b'\r' => {}
                    State::QuoteInQuoted => {
                        rec.flaw.get_or_insert_with(|| {
                            format!(
                                "text after the closing quote of field {}",
                                rec.ends.len() + 1
                            )
                        });
                        push(rec, max, b);
                        state = State::Unquoted;
                    }
                }
            }
            match self.pending.as_mut() {
                Some(p) if from_pending => p.consume(used),
                _ => self.reader.consume(used),
            }
            if done {
                if state == State::Quoted {
                    rec.flaw.get_or_insert_with(|| {
                        format!("unterminated quoted field on line {}", rec.line)
                    });
                }
                self.line += 1;
                // A CRLF line end: the `\r` is not part of an unquoted last field.
                if state != State::QuoteInQuoted && rec.data.last() == Some(&b'\r') {
                    rec.data.pop();
                }
                if rec.raw.last() == Some(&b'\r') {
                    rec.raw.pop();
                }
                end_field(rec, quoted, max);
                self.recover(rec, max, true);
                return Ok(true);
            }
        }
    }
}

impl<R: BufRead> Records<R> {
    /// A malformed record that ran over several lines (a quote opened and never properly closed
    /// swallows the lines after it): only its first line is rejected, and the lines it swallowed are
    /// read again, one record per line from then on. `newline`: the record ended at a line end (which
    /// the lines read again must keep).
    fn recover(&mut self, rec: &mut Record, max: usize, newline: bool) {
        let Some(flaw) = rec.flaw.as_ref() else {
            return;
        };
        if self.line_mode || rec.len > max {
            return;
        }
        let Some(end) = rec.raw.iter().position(|&b| b == b'\n') else {
            return;
        };
        let flaw = flaw.clone();
        let mut rest = rec.raw.split_off(end + 1);
        if newline {
            rest.push(b'\n');
        }
        rec.raw.truncate(end);
        if rec.raw.last() == Some(&b'\r') {
            rec.raw.pop();
        }
        rec.len = rec.raw.len();
        rec.flaw = Some(format!(
            "{flaw}: the quoted field opened on line {} runs over the lines after it; this line is rejected and the lines after it are read again, one record per line",
            rec.line
        ));
        self.line = rec.line + 1;
        self.pending = Some(std::io::Cursor::new(rest));
        self.line_mode = true;
    }
}

fn push(rec: &mut Record, max: usize, b: u8) {
    // Past the cap the record is rejected anyway: stop holding its bytes.
    if rec.len <= max {
        rec.data.push(b);
    }
}

fn end_field(rec: &mut Record, quoted: bool, max: usize) {
    if rec.len > max {
        rec.flaw.get_or_insert_with(|| {
            format!(
                "record is {} bytes, over the limit of {max} (limits.max_line_mb); its first bytes are kept",
                rec.len
            )
        });
    }
    rec.ends.push((rec.data.len(), quoted));
}

/// The header of a CSV object (first record), checked: every name present and distinct
/// (case-insensitively, as Delta compares them), and at most `limits.max_columns` of them.
pub(super) fn read_header<R: BufRead>(
    records: &mut Records<R>,
    table: &TableConfig,
) -> Result<Option<Vec<String>>, ReadError> {
    let mut rec = Record::default();
    if !records.next(&mut rec)? {
        return Ok(None);
    }
    if let Some(flaw) = &rec.flaw {
        return Err(ReadError::Malformed(format!("CSV header: {flaw}")));
    }
    let names = (0..rec.len())
        .map(|i| {
            std::str::from_utf8(rec.field(i).0)
                .map(|s| s.trim().to_string())
                .map_err(|_| ReadError::Malformed("CSV header is not valid UTF-8".into()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    super::infer::check_names(names.iter().map(String::as_str), &table.limits)
        .map_err(|e| ReadError::Malformed(format!("CSV header: {e}")))?;
    Ok(Some(names))
}

pub(super) fn parse_csv(
    reader: impl BufRead,
    table: &TableConfig,
    mut dest: Destination,
) -> Result<ReadOutcome, ReadError> {
    let target = dest.target;
    let mut out = ReadOutcome::new(table.limits);
    let mut records = Records::new(reader, table);
    let headers: Vec<String> = if table.csv_header {
        match read_header(&mut records, table)? {
            Some(h) => h,
            None => return Ok(out),
        }
    } else {
        target.fields().iter().map(|f| f.name().clone()).collect()
    };
    // Where each header column goes in the target (None: unknown column).
    let slots: Vec<Option<usize>> = headers.iter().map(|h| target.index_of(h).ok()).collect();
    // `""` is the empty string in a string column; elsewhere no value can be meant: NULL.
    let text_slot: Vec<bool> = target
        .fields()
        .iter()
        .map(|f| f.data_type() == &DataType::Utf8)
        .collect();
    let unknown_header = headers
        .iter()
        .zip(&slots)
        .find(|(_, s)| s.is_none())
        .map(|(h, _)| h.clone());
    let mut chunk = TextChunk::new(target.fields().len());
    let mut rec = Record::default();
    while records.next(&mut rec)? {
        let row = rec.line;
        let reason = if let Some(flaw) = &rec.flaw {
            Some(flaw.clone())
        } else if rec.len() != headers.len() {
            Some(format!(
                "expected {} fields, found {}",
                headers.len(),
                rec.len()
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
            out.reject(Some(row), Some(rec.raw()), reason);
            continue;
        }
        let mut cells: Vec<Option<&str>> = vec![None; target.fields().len()];
        let mut utf8_error = false;
        for (i, slot) in slots.iter().enumerate() {
            let Some(s) = slot else { continue };
            match rec.cell(i) {
                Ok(Some("")) if !text_slot[*s] => {}
                Ok(c) => cells[*s] = c,
                Err(()) => utf8_error = true,
            }
        }
        if utf8_error {
            out.reject(
                Some(row),
                Some(rec.raw()),
                "field is not valid UTF-8".into(),
            );
            continue;
        }
        chunk.push(row, rec.raw(), &cells);
        if chunk.full() {
            chunk.flush(&mut dest, &mut out)?;
        }
    }
    chunk.flush(&mut dest, &mut out)?;
    Ok(out)
}
