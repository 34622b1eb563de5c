//! `[limits]`: what one landing object may cost. Every limit turns hostile input (a gzip bomb, a line
//! without end, a 100k-column header, a million bad rows) into a quarantine entry saying which limit it
//! hit, so a step's memory stays bounded whatever arrives.

use serde::Deserialize;

use crate::error::{Error, Result};

/// The limits, with their defaults sized for a 1-2 GB Lambda.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest JSON line or CSV record (bytes). A longer one is quarantined (its first bytes kept) and
    /// the object's other rows proceed.
    pub max_line_bytes: usize,
    /// Most decompressed bytes read from one object; past it the whole object is quarantined.
    pub max_object_bytes: u64,
    /// Most columns an inferred or evolving schema may have; a wider object is quarantined.
    pub max_columns: usize,
    /// Rejected rows of one object kept in quarantine with their text; past it they are counted in one
    /// summary entry (the original object stays untouched in landing).
    pub max_rejected_rows: usize,
    /// Raw text kept per quarantined row (bytes); longer text is cut, and the entry says so.
    pub max_raw_bytes: usize,
    /// `format = "binary"`: most content bytes kept per object; a larger object's row has no content
    /// and says why (its key, size and etag are still catalogued).
    pub max_binary_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_bytes: 16 << 20,
            max_object_bytes: 16 << 30,
            max_columns: 2_000,
            max_rejected_rows: 10_000,
            max_raw_bytes: 8 << 10,
            max_binary_bytes: 16 << 20,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    max_line_mb: Option<f64>,
    max_object_gb: Option<f64>,
    max_columns: Option<usize>,
    max_rejected_rows: Option<usize>,
    max_raw_kb: Option<f64>,
    max_binary_mb: Option<f64>,
}

/// `value` (in units of `unit` bytes) within `lo..=hi` units, as bytes.
fn bytes(
    value: Option<f64>,
    default: u64,
    unit: f64,
    (lo, hi): (f64, f64),
    field: &str,
) -> Result<u64> {
    let Some(v) = value else { return Ok(default) };
    if !(lo..=hi).contains(&v) {
        return Err(Error::config(
            "-",
            &format!("limits.{field}"),
            format!("{v} is outside {lo}..={hi}"),
        ));
    }
    Ok((v * unit) as u64)
}

fn count(
    value: Option<usize>,
    default: usize,
    (lo, hi): (usize, usize),
    field: &str,
) -> Result<usize> {
    let v = value.unwrap_or(default);
    if !(lo..=hi).contains(&v) {
        return Err(Error::config(
            "-",
            &format!("limits.{field}"),
            format!("{v} is outside {lo}..={hi}"),
        ));
    }
    Ok(v)
}

impl RawLimits {
    pub(super) fn validate(self) -> Result<Limits> {
        let d = Limits::default();
        const KB: f64 = 1024.0;
        const MB: f64 = KB * 1024.0;
        const GB: f64 = MB * 1024.0;
        Ok(Limits {
            // Arrow string arrays address 2 GiB per array: a line must stay well below.
            max_line_bytes: bytes(
                self.max_line_mb,
                d.max_line_bytes as u64,
                MB,
                (0.001, 512.0),
                "max_line_mb",
            )? as usize,
            max_object_bytes: bytes(
                self.max_object_gb,
                d.max_object_bytes,
                GB,
                (0.000_001, 1024.0),
                "max_object_gb",
            )?,
            max_columns: count(self.max_columns, d.max_columns, (1, 100_000), "max_columns")?,
            max_rejected_rows: count(
                self.max_rejected_rows,
                d.max_rejected_rows,
                (1, 10_000_000),
                "max_rejected_rows",
            )?,
            max_raw_bytes: bytes(
                self.max_raw_kb,
                d.max_raw_bytes as u64,
                KB,
                (0.01, 16.0 * KB),
                "max_raw_kb",
            )? as usize,
            max_binary_bytes: bytes(
                self.max_binary_mb,
                d.max_binary_bytes,
                MB,
                (0.0, 1024.0),
                "max_binary_mb",
            )?,
        })
    }
}
