//! Declared columns: `"name type"` or `"name type not null"` in the pipeline file, and their Arrow types.

use std::collections::BTreeSet;

use deltalake::arrow::datatypes::{DataType, Field, TimeUnit};

use crate::error::{Error, Result};

/// `before`/`after`), so bronze stays raw and silver decides how to parse them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Json,
    Int,
    Long,
    Double,
    Boolean,
    Date,
    Timestamp,
    Decimal(u8, i8),
}

impl ColumnType {
    pub fn parse(s: &str) -> Option<ColumnType> {
        let s = s.trim().to_ascii_lowercase();
        Some(match s.as_str() {
            "string" | "str" | "text" | "varchar" => ColumnType::String,
            "json" => ColumnType::Json,
            "int" | "integer" | "int32" => ColumnType::Int,
            "long" | "bigint" | "int64" => ColumnType::Long,
            "double" | "float64" | "float" => ColumnType::Double,
            "boolean" | "bool" => ColumnType::Boolean,
            "date" => ColumnType::Date,
            "timestamp" => ColumnType::Timestamp,
            other => {
                let inner = other.strip_prefix("decimal(")?.strip_suffix(')')?;
                let (p, s) = inner.split_once(',')?;
                let (p, s): (u8, i8) = (p.trim().parse().ok()?, s.trim().parse().ok()?);
                if p == 0 || p > 38 || s < 0 || s as u8 > p {
                    return None;
                }
                ColumnType::Decimal(p, s)
            }
        })
    }

    pub fn arrow_type(&self) -> DataType {
        match self {
            ColumnType::String | ColumnType::Json => DataType::Utf8,
            ColumnType::Int => DataType::Int32,
            ColumnType::Long => DataType::Int64,
            ColumnType::Double => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColumnType::Decimal(p, s) => DataType::Decimal128(*p, *s),
        }
    }
}

/// One declared column: `"name type"` or `"name type not null"` in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub data_type: ColumnType,
    pub nullable: bool,
}

impl Column {
    pub fn arrow_field(&self) -> Field {
        Field::new(&self.name, self.data_type.arrow_type(), self.nullable)
    }
}

pub(super) fn parse_column(spec: &str, table: &str, field: &str) -> Result<Column> {
    let words: Vec<&str> = spec.split_whitespace().collect();
    let bad = || {
        Error::config(
            table,
            field,
            format!("`{spec}`: expected `name type` or `name type not null`"),
        )
    };
    let (name, ty, nullable) = match words.as_slice() {
        [name, ty] => (*name, *ty, true),
        [name, ty, not, null]
            if not.eq_ignore_ascii_case("not") && null.eq_ignore_ascii_case("null") =>
        {
            (*name, *ty, false)
        }
        _ => return Err(bad()),
    };
    let data_type = ColumnType::parse(ty).ok_or_else(|| {
        Error::config(
            table,
            field,
            format!(
                "`{spec}`: unknown type `{ty}` (string, json, int, long, double, boolean, date, timestamp, decimal(p,s))"
            ),
        )
    })?;
    if name.starts_with('_') {
        return Err(Error::config(
            table,
            field,
            format!("`{name}`: names starting with `_` are reserved for lineage"),
        ));
    }
    Ok(Column {
        name: name.to_string(),
        data_type,
        nullable,
    })
}

/// Parses a list of column specs (`columns` or `row_columns`); `None` when absent.
pub(super) fn parse_columns(
    specs: Option<&[String]>,
    table: &str,
    field: &str,
) -> Result<Option<Vec<Column>>> {
    let Some(specs) = specs else { return Ok(None) };
    if specs.is_empty() {
        return Err(Error::config(
            table,
            field,
            "must not be empty (omit it to infer the schema)",
        ));
    }
    let cols = specs
        .iter()
        .map(|s| parse_column(s, table, field))
        .collect::<Result<Vec<_>>>()?;
    let mut seen = BTreeSet::new();
    for c in &cols {
        // Delta column names are case-insensitive: `id` and `ID` are one column.
        if !seen.insert(c.name.to_lowercase()) {
            return Err(Error::config(
                table,
                field,
                format!(
                    "column `{}` declared twice (names are case-insensitive)",
                    c.name
                ),
            ));
        }
    }
    Ok(Some(cols))
}
