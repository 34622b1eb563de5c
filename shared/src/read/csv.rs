//! CSV: a header names the columns (or `c0, c1, ...` without one), every record must have as many
//! fields as the header, and its raw text is kept for quarantine.

use std::io::{BufRead, Read};

use super::chunk::TextChunk;
use super::object::StorageFault;
use super::{Destination, ReadError, ReadOutcome, CHUNK_ROWS};
use crate::config::{TableConfig, UnknownFields};
use crate::schema::BadRow;

pub(super) fn csv_reader<R: Read>(reader: R, table: &TableConfig) -> ::csv::Reader<R> {
    ::csv::ReaderBuilder::new()
        .delimiter(table.csv_delimiter)
        .has_headers(table.csv_header)
        .flexible(true)
        .from_reader(reader)
}

pub(super) fn csv_headers<R: Read>(
    rdr: &mut ::csv::Reader<R>,
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

fn csv_raw(record: &::csv::ByteRecord, delimiter: u8) -> String {
    let mut w = ::csv::WriterBuilder::new()
        .delimiter(delimiter)
        .from_writer(Vec::new());
    let _ = w.write_byte_record(record);
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes)
        .trim_end_matches(['\n', '\r'])
        .to_string()
}

pub(super) fn parse_csv(
    reader: impl BufRead,
    table: &TableConfig,
    mut dest: Destination,
) -> Result<ReadOutcome, ReadError> {
    let target = dest.target;
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
    let mut chunk = TextChunk::new(target.fields().len());
    let mut record = ::csv::ByteRecord::new();
    let mut cells: Vec<Option<String>> = vec![None; target.fields().len()];
    loop {
        match rdr.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                if let ::csv::ErrorKind::Io(io) = e.kind() {
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
            chunk.flush(&mut dest, &mut out)?;
        }
    }
    chunk.flush(&mut dest, &mut out)?;
    Ok(out)
}
