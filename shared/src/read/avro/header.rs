//! An Avro container file's header with its schema's full names split into name and namespace.
//!
//! The specification lets a named type spell its full name in `name` (`"name":
//! "dbserver1.public.customers.Value"`, as fastavro and other writers do); arrow-avro 59 then fails to
//! resolve a later reference to it ("Failed to resolve ..."). Java's and Apache Avro Python's writers
//! put the namespace apart, which arrow-avro reads. Splitting `name` at its last dot into `namespace`
//! and `name` means the same schema, so the header is rewritten that way before reading; the data
//! blocks after it are untouched. A header that cannot be parsed is left as it is (the reader then
//! says what is wrong with it).

use bytes::{Bytes, BytesMut};
use serde_json::Value;

const MAGIC: &[u8] = b"Obj\x01";
const SYNC_LEN: usize = 16;

/// `file` with its header's schema names split, or `file` itself when nothing needs to change.
pub(super) fn with_short_names(file: Bytes) -> Bytes {
    rewrite(&file).unwrap_or(file)
}

fn rewrite(file: &[u8]) -> Option<Bytes> {
    let mut at = MAGIC.len();
    if file.get(..at)? != MAGIC {
        return None;
    }
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    loop {
        let mut count = long(file, &mut at)?;
        if count == 0 {
            break;
        }
        if count < 0 {
            count = count.checked_neg()?;
            long(file, &mut at)?; // the block's size in bytes
        }
        for _ in 0..count {
            let key = bytes(file, &mut at)?.to_vec();
            let value = bytes(file, &mut at)?.to_vec();
            entries.push((key, value));
        }
    }
    let sync = file.get(at..at + SYNC_LEN)?;
    let rest = &file[at + SYNC_LEN..];
    let schema = entries.iter_mut().find(|(k, _)| k == b"avro.schema")?;
    let mut json: Value = serde_json::from_slice(&schema.1).ok()?;
    if !split_names(&mut json) {
        return None;
    }
    schema.1 = serde_json::to_vec(&json).ok()?;
    let mut out = BytesMut::with_capacity(file.len() + 64);
    out.extend_from_slice(MAGIC);
    put_long(&mut out, entries.len() as i64);
    for (k, v) in &entries {
        put_long(&mut out, k.len() as i64);
        out.extend_from_slice(k);
        put_long(&mut out, v.len() as i64);
        out.extend_from_slice(v);
    }
    put_long(&mut out, 0);
    out.extend_from_slice(sync);
    out.extend_from_slice(rest);
    Some(out.freeze())
}

/// Splits every named type's dotted `name` into `namespace` and `name`; whether any was.
fn split_names(schema: &mut Value) -> bool {
    match schema {
        Value::Array(items) => items.iter_mut().fold(false, |any, v| split_names(v) | any),
        Value::Object(map) => {
            let mut changed = false;
            let named = matches!(
                map.get("type").and_then(Value::as_str),
                Some("record" | "enum" | "fixed" | "error")
            );
            if named {
                if let Some((ns, short)) = map
                    .get("name")
                    .and_then(Value::as_str)
                    .and_then(|n| n.rsplit_once('.'))
                    .map(|(ns, short)| (ns.to_string(), short.to_string()))
                {
                    map.insert("name".into(), Value::String(short));
                    map.insert("namespace".into(), Value::String(ns));
                    changed = true;
                }
            }
            for key in ["type", "fields", "items", "values"] {
                if let Some(v) = map.get_mut(key) {
                    changed |= split_names(v);
                }
            }
            changed
        }
        _ => false,
    }
}

/// An Avro `long`: zig-zag varint.
fn long(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}

fn bytes<'a>(buf: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let len = usize::try_from(long(buf, at)?).ok()?;
    let out = buf.get(*at..at.checked_add(len)?)?;
    *at += len;
    Some(out)
}

fn put_long(out: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.extend_from_slice(&[b]);
            return;
        }
        out.extend_from_slice(&[b | 0x80]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_names_are_split_and_references_left_alone() {
        let mut s = serde_json::json!({"type": "record", "name": "a.b.Env", "fields": [
            {"name": "after", "type": ["null", {"type": "record", "name": "a.b.Value", "fields": []}]},
            {"name": "before", "type": ["null", "a.b.Value"]}]});
        assert!(split_names(&mut s));
        assert_eq!(s["name"], "Env");
        assert_eq!(s["namespace"], "a.b");
        assert_eq!(s["fields"][0]["type"][1]["name"], "Value");
        assert_eq!(s["fields"][1]["type"][1], "a.b.Value");
        let mut plain = serde_json::json!({"type": "record", "name": "Env", "fields": []});
        assert!(!split_names(&mut plain));
    }

    #[test]
    fn longs_round_trip_and_bad_headers_are_left_alone() {
        for v in [0i64, 1, -1, 63, -64, 64, 300, -300, i64::MAX, i64::MIN] {
            let mut out = BytesMut::new();
            put_long(&mut out, v);
            let mut at = 0;
            assert_eq!(long(&out, &mut at), Some(v));
            assert_eq!(at, out.len());
        }
        assert!(rewrite(b"Obj\x01\xff").is_none());
        assert!(rewrite(b"PAR1").is_none());
    }
}
