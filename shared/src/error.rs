//! The one error type of the shared crate. Messages name the table, object key and version involved so a
//! log line alone tells an operator what failed and where; the underlying error is kept as the
//! `source`, so the whole chain is there for whoever walks it.

use deltalake::datafusion::error::DataFusionError;
use deltalake::kernel::transaction::TransactionError;
use deltalake::DeltaTableError;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The SQS client's error when sending a message.
pub type SqsSendError =
    aws_sdk_sqs::error::SdkError<aws_sdk_sqs::operation::send_message::SendMessageError>;

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

    /// An incoming event or message could not be understood.
    #[error("malformed event: {reason}")]
    Event {
        reason: String,
        #[source]
        source: Option<serde_json::Error>,
    },

    /// A Delta table operation failed.
    #[error("delta table {table} ({operation}): {source}")]
    Delta {
        table: String,
        operation: &'static str,
        // Boxed: DeltaTableError is large and every `Result` of the crate would carry its size.
        #[source]
        source: Box<DeltaTableError>,
    },

    /// The Glue Data Catalog refused or failed a call (`[catalog] glue`).
    #[error("glue catalog {database}.{table} ({operation}): {reason}")]
    Catalog {
        database: String,
        table: String,
        operation: &'static str,
        reason: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// Another writer committed first: reload the table and re-run the step (see `lake::RetryPolicy`).
    #[error("delta table {table} ({operation}): lost a commit race: {source}")]
    Conflict {
        table: String,
        operation: &'static str,
        #[source]
        source: Box<DeltaTableError>,
    },

    /// Concurrent writers kept winning; the step was re-run `attempts` times and gave up.
    #[error("delta table {table}: gave up after {attempts} attempts lost to concurrent commits")]
    ConflictRetriesExhausted {
        table: String,
        attempts: u32,
        #[source]
        last: Box<Error>,
    },

    /// A version that a step must read is gone from the table's log. `lakehouse maintain` never cleans
    /// a commit a consumer has not read, so something else did (another engine, a manual cleanup).
    #[error(
        "delta table {table}: version {version} is no longer in the log (cleaned by something other than `lakehouse maintain`, which keeps every commit a consumer has not read), so the step cannot continue incrementally: rebuild the consumer from the table's current rows (for silver: delete its silver and silver_tombstones tables, then `lakehouse rebuild --table <name>`; see the README's Recovery)"
    )]
    LogExpired { table: String, version: i64 },

    /// A reader asked for a version (time travel, a change feed's start) that log cleanup has removed.
    #[error(
        "delta table {table}: version {version} is no longer readable{what}: maintenance removed the log entries older than the table's log retention (delta.logRetentionDuration, 30 days unless set) below its latest checkpoint; the oldest readable version is {oldest} (see the README's \"Time travel and retention\")"
    )]
    VersionCleaned {
        table: String,
        version: i64,
        /// What could not be read (`""` for time travel, `" as a change feed"`...).
        what: &'static str,
        oldest: i64,
    },

    /// A reader asked for a version the table has not reached.
    #[error(
        "delta table {table}: version {version} does not exist: the latest version is {latest}"
    )]
    VersionAhead {
        table: String,
        version: i64,
        latest: i64,
    },

    /// `rebuild` starts from nothing: a silver table or its tombstones still exist.
    #[error("silver table {table}: rebuild needs {location} deleted first (the rebuild starts from nothing)")]
    RebuildOverExisting { table: String, location: String },

    /// A commit in a table's log could not be parsed.
    #[error("delta table {table}: commit {version} of the log is unreadable: {reason}")]
    LogEntry {
        table: String,
        version: i64,
        reason: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// A DataFusion query (MERGE source, gold view SQL, key scan) failed.
    #[error("query on {table} ({what}): {source}")]
    Query {
        table: String,
        what: String,
        #[source]
        source: Box<DataFusionError>,
    },

    /// Object storage failed to list or read something that is not a landing object (those are
    /// read errors of their own): a landing prefix listing, a table's data file.
    #[error("object storage ({what} {location}): {source}")]
    Storage {
        what: &'static str,
        location: String,
        #[source]
        source: Box<object_store::Error>,
    },

    /// A commit could not be announced to the next layer's queue.
    #[error("cannot notify {queue} of {layer} {table} v{version}: {}", aws_sdk_sqs::error::DisplayErrorContext(source.as_ref()))]
    Notify {
        queue: String,
        layer: String,
        table: String,
        version: i64,
        #[source]
        source: Box<SqsSendError>,
    },

    /// Part of a direct invocation failed (an object, a table's step): the invocation fails so Lambda
    /// retries it. Each part's own error is logged, and in `summary`.
    #[error("{summary}")]
    StepFailed { summary: String },

    /// A response or message could not be serialised.
    #[error("cannot serialise {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// Arrow conversion failed on data the crate itself built (a bug, not bad input).
    #[error("arrow error while {context}: {source}")]
    Arrow {
        context: String,
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },

    /// Parquet encoding or decoding of a file the lake holds (not a landing object).
    #[error("parquet error while {context}: {source}")]
    Parquet {
        context: String,
        #[source]
        source: deltalake::parquet::errors::ParquetError,
    },

    /// Local I/O (demo files, config files).
    #[error("i/o error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A background task died (a panic in a blocking parser thread, or cancellation).
    #[error("task {what} failed: {source}")]
    Task {
        what: String,
        #[source]
        source: tokio::task::JoinError,
    },

    /// A blocking parser's output channel closed: the async side that consumed it stopped first.
    #[error("{what}: the consumer stopped")]
    ChannelClosed { what: String },

    /// Data the crate built itself lacks what it must have (a missing column, a wrong type): a bug.
    #[error("internal invariant broken: {0}")]
    Invariant(String),
}

impl Error {
    /// A failed Delta operation on `table`; a lost commit race becomes [`Error::Conflict`].
    pub(crate) fn delta(
        table: impl Into<String>,
        operation: &'static str,
        source: DeltaTableError,
    ) -> Self {
        let (table, source) = (table.into(), Box::new(source));
        if is_conflict(&source) {
            Error::Conflict {
                table,
                operation,
                source,
            }
        } else {
            Error::Delta {
                table,
                operation,
                source,
            }
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

    pub(crate) fn query(
        table: impl Into<String>,
        what: impl Into<String>,
        source: DataFusionError,
    ) -> Self {
        Error::Query {
            table: table.into(),
            what: what.into(),
            source: Box::new(source),
        }
    }

    pub(crate) fn event(reason: impl Into<String>) -> Self {
        Error::Event {
            reason: reason.into(),
            source: None,
        }
    }

    pub(crate) fn config(table: &str, field: &str, reason: impl Into<String>) -> Self {
        Error::Config {
            table: table.to_string(),
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invariant(what: impl Into<String>) -> Self {
        Error::Invariant(what.into())
    }

    /// True when the step lost a commit race and can be re-run on a reloaded table.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }
}

/// True when the error means another writer committed first: reload and re-run the step. Decided by
/// the error's type: a version that already exists (put-if-absent refused the commit file), a commit
/// conflict found by delta-rs' conflict checker, or its own retries used up.
pub fn is_conflict(e: &DeltaTableError) -> bool {
    match e {
        DeltaTableError::VersionAlreadyExists(_) => true,
        DeltaTableError::Transaction { source } => matches!(
            source,
            TransactionError::CommitConflict(_)
                | TransactionError::MaxCommitAttempts(_)
                | TransactionError::VersionAlreadyExists(_)
        ),
        // A commit file's put-if-absent refused, surfaced without delta-rs' own mapping.
        DeltaTableError::ObjectStore {
            source: object_store::Error::AlreadyExists { .. },
        } => true,
        _ => false,
    }
}
