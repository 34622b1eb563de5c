//! JSON documents (`format = "json"`): one document per object, as APIs and exports write them: a
//! top-level array of records, one object (one record), or an object holding the array at a path
//! (`json_path = "data.items"`); pretty-printed or not. Records are streamed out of the document one by
//! one (never the whole document in memory: each record is bounded by `limits.max_line_mb`) and then
//! read like JSON lines: the same cells, schema inference and quarantine rules. A document broken
//! part-way keeps the records before the break; the break itself is quarantined with its position.

use std::cell::Cell;
use std::fmt;
use std::io::{BufRead, Read};
use std::rc::Rc;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::chunk::TextChunk;
use super::jsonl::{push_record, record_cells};
use super::{Destination, ReadError, ReadOutcome};
use crate::config::TableConfig;

/// Why a walk stopped early on purpose (the caller had enough, or its sink failed).
const STOP: &str = "\u{0}lakehouse: stop";

/// Calls `each(row, record_text)` for every record of the document `reader` holds (`path`: the keys
/// leading to the records). `Err` is why the document is not valid JSON or has no records where
/// `path` says (records before the error were already passed on); `each` returning `false` stops the
/// walk quietly.
pub(super) fn records(
    reader: impl Read,
    path: &[String],
    max_record: usize,
    each: &mut dyn FnMut(u64, &str) -> bool,
) -> Result<u64, String> {
    let since = Rc::new(Cell::new(0usize));
    let counted = Counted {
        inner: reader,
        since: since.clone(),
        max: max_record,
    };
    let mut de = serde_json::Deserializer::from_reader(counted);
    let mut walk = Walk {
        path,
        depth: 0,
        row: 0,
        since,
        each,
    };
    let result = (&mut walk).deserialize(&mut de).and_then(|()| de.end());
    match result {
        Ok(()) => Ok(walk.row),
        Err(e) if e.to_string().starts_with(STOP) => Ok(walk.row),
        Err(e) if e.is_io() && e.to_string().contains("limits.max_line_mb") => Err(format!(
            "record {} is larger than limits.max_line_mb ({} MiB): the records after it are not read",
            walk.row + 1,
            max_record / (1024 * 1024)
        )),
        Err(e) => Err(format!(
            "the document is not valid JSON ({e}): the records after record {} are not read",
            walk.row
        )),
    }
}

/// The reader, failing once a record (or a value on the way to the records) passes `max` bytes.
struct Counted<R> {
    inner: R,
    since: Rc<Cell<usize>>,
    max: usize,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.since.set(self.since.get() + n);
        if self.since.get() > self.max {
            return Err(std::io::Error::other("a record passes limits.max_line_mb"));
        }
        Ok(n)
    }
}

struct Walk<'a> {
    path: &'a [String],
    depth: usize,
    row: u64,
    since: Rc<Cell<usize>>,
    each: &'a mut dyn FnMut(u64, &str) -> bool,
}

impl Walk<'_> {
    fn record<E: de::Error>(&mut self, text: &str) -> Result<(), E> {
        self.row += 1;
        self.since.set(0);
        match (self.each)(self.row, text) {
            true => Ok(()),
            false => Err(E::custom(STOP)),
        }
    }

    fn at_records(&self) -> bool {
        self.depth == self.path.len()
    }

    fn where_(&self) -> String {
        match self.depth {
            0 => "at the top of the document".into(),
            d => format!("at `{}`", self.path[..d].join(".")),
        }
    }
}

impl<'de> DeserializeSeed<'de> for &mut Walk<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for &mut Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records or an object")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if !self.at_records() {
            return Err(de::Error::custom(format!(
                "expected an object holding `{}` {}, found an array",
                self.path[self.depth],
                self.where_()
            )));
        }
        self.since.set(0);
        while let Some(record) = seq.next_element::<Box<RawValue>>()? {
            self.record(record.get())?;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.at_records() {
            // The object is the one record: its entries, each value's exact text, written back.
            let mut text = String::from("{");
            while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                if text.len() > 1 {
                    text.push(',');
                }
                text.push_str(&serde_json::to_string(&k).map_err(de::Error::custom)?);
                text.push(':');
                text.push_str(v.get());
            }
            text.push('}');
            return self.record(&text);
        }
        let mut found = false;
        while let Some(key) = map.next_key::<String>()? {
            self.since.set(0);
            if !found && key == self.path[self.depth] {
                found = true;
                self.depth += 1;
                map.next_value_seed(&mut *self)?;
                self.depth -= 1;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        match found {
            true => Ok(()),
            false => Err(de::Error::custom(format!(
                "no `{}` {} (json_path = \"{}\")",
                self.path[self.depth],
                self.where_(),
                self.path.join(".")
            ))),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(format!("found null {}", self.where_())))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(format!("found a boolean {}", self.where_())))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(format!("found a number {}", self.where_())))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(format!("found a number {}", self.where_())))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(format!("found a number {}", self.where_())))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(format!("found a string {}", self.where_())))
    }
}

/// Reads a JSON document's records into `dest`, like JSON lines.
pub(super) fn parse_json(
    reader: impl BufRead,
    table: &TableConfig,
    mut dest: Destination,
) -> Result<ReadOutcome, ReadError> {
    let target = dest.target;
    let mut out = ReadOutcome::new(table.limits);
    let mut chunk = TextChunk::new(target.fields().len());
    let mut failed: Option<ReadError> = None;
    let walked = records(
        reader,
        &table.json_path,
        table.limits.max_line_bytes,
        &mut |row, text| {
            if let Some(cells) = record_cells(text, target, table) {
                push_record(&mut chunk, &mut out, row, text.to_string(), cells);
            }
            if chunk.full() {
                if let Err(e) = chunk.flush(&mut dest, &mut out) {
                    failed = Some(e);
                    return false;
                }
            }
            true
        },
    );
    if let Some(e) = failed {
        return Err(e);
    }
    chunk.flush(&mut dest, &mut out)?;
    match walked {
        Ok(0) if out.rows_ok == 0 && out.rejected() == 0 => {}
        Ok(_) => {}
        // The break itself: one quarantine row (no row number: it is not a record).
        Err(reason) => out.reject(None, None, reason),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(doc: &str, path: &str, max: usize) -> (Vec<String>, Result<u64, String>) {
        let path: Vec<String> = path
            .split('.')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let mut got = Vec::new();
        let r = records(doc.as_bytes(), &path, max, &mut |_, t| {
            got.push(t.to_string());
            true
        });
        (got, r)
    }

    #[test]
    fn arrays_objects_and_paths_give_their_records() {
        let (got, r) = walk("[{\"a\":1},\n  {\"a\": 2.50}]", "", 1 << 20);
        assert_eq!(got, ["{\"a\":1}", "{\"a\": 2.50}"]);
        assert_eq!(r, Ok(2));
        let (got, _) = walk("{\n  \"a\": 1,\n  \"b\": [1, 2]\n}", "", 1 << 20);
        assert_eq!(got, ["{\"a\":1,\"b\":[1, 2]}"]);
        let doc =
            r#"{"meta":{"page":1,"big":[1,2,3]},"data":{"items":[{"id":1},{"id":2}],"next":null}}"#;
        let (got, r) = walk(doc, "data.items", 1 << 20);
        assert_eq!(got, ["{\"id\":1}", "{\"id\":2}"]);
        assert_eq!(r, Ok(2));
        assert_eq!(walk("[]", "", 1 << 20), (vec![], Ok(0)));
        // A single object at the path is one record.
        let (got, _) = walk(r#"{"data":{"items":{"id":7}}}"#, "data.items", 1 << 20);
        assert_eq!(got, ["{\"id\":7}"]);
    }

    #[test]
    fn broken_documents_keep_what_came_before_and_say_where() {
        let (got, r) = walk("[{\"a\":1},{\"a\":2},{\"a\":", "", 1 << 20);
        assert_eq!(got.len(), 2);
        let reason = r.unwrap_err();
        assert!(
            reason.contains("not valid JSON") && reason.contains("after record 2"),
            "{reason}"
        );
        let (_, r) = walk(r#"{"data":[]}"#, "records", 1 << 20);
        assert!(r.unwrap_err().contains("no `records`"));
        let (_, r) = walk(r#"[{"a":1}] trailing"#, "", 1 << 20);
        assert!(r.is_err());
        let (_, r) = walk("42", "", 1 << 20);
        assert!(r.unwrap_err().contains("found a number"));
        let big = format!("[{{\"a\":\"{}\"}}]", "x".repeat(5000));
        let (got, r) = walk(&big, "", 1000);
        assert!(got.is_empty());
        assert!(r.unwrap_err().contains("larger than limits.max_line_mb"));
    }
}
