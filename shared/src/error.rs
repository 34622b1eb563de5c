//! The one error type of the shared crate. Messages name the table, object key and version involved so a
//! log line alone tells an operator what failed and where.

use deltalake::DeltaTableError;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file is invalid; `table` and `field` say where.
    #[error("invalid pipeline config: table `{table}`, field `{field}`: {reason}")]
    Config {
        table: String,
        field: String,
        reason: String,
    },

    /// The pipeline file could not be read or parsed at all.
    #[error("cannot load pipeline config from {location}: {reason}")]
    ConfigLoad { location: String, reason: String },

    /// An incoming event could not be understood.
    #[error("malformed event: {0}")]
    Event(String),

    /// A Delta table operation failed.
    #[error("delta table {table} ({operation}): {source}")]
    Delta {
        table: String,
        operation: &'static str,
        // Boxed: DeltaTableError is large and every `Result` of the crate would carry its size.
        #[source]
        source: Box<DeltaTableError>,
    },

    /// Concurrent writers kept winning; the step was re-run `attempts` times and gave up.
    #[error(
        "delta table {table}: gave up after {attempts} attempts lost to concurrent commits: {last}"
    )]
    ConflictRetriesExhausted {
        table: String,
        attempts: u32,
        last: String,
    },

    /// Arrow conversion failed on data the crate itself built (a bug, not bad input).
    #[error("arrow error while {context}: {source}")]
    Arrow {
        context: String,
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },

    /// Local I/O (demo files, config files).
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A background task died (a panic in a blocking parser thread, or cancellation).
    #[error("task failed: {0}")]
    Task(String),
}

impl Error {
    pub(crate) fn delta(
        table: impl Into<String>,
        operation: &'static str,
        source: DeltaTableError,
    ) -> Self {
        Error::Delta {
            table: table.into(),
            operation,
            source: Box::new(source),
        }
    }

    pub(crate) fn arrow(
        context: impl Into<String>,
        source: deltalake::arrow::error::ArrowError,
    ) -> Self {
        Error::Arrow {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn config(table: &str, field: &str, reason: impl Into<String>) -> Self {
        Error::Config {
            table: table.to_string(),
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}
