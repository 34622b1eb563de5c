//! The CLI's one error type: the library's errors, plus what only a command line meets (files it was
//! pointed at, names that are not in the pipeline, a demo or backfill that did not come out right).

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Lakehouse(#[from] lakehouse::Error),

    #[error("delta table: {0}")]
    Delta(#[from] deltalake::DeltaTableError),

    #[error("arrow: {0}")]
    Arrow(#[from] deltalake::arrow::error::ArrowError),

    #[error("parquet: {0}")]
    Parquet(#[from] deltalake::parquet::errors::ParquetError),

    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    /// The command names something the pipeline does not have.
    #[error("{0}")]
    Usage(String),

    /// The command ran but its result is not what it must be (a demo mismatch, objects left unread).
    #[error("{0}")]
    Failed(String),
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;

pub fn io(path: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> CliError {
    let path = path.to_string();
    move |source| CliError::Io { path, source }
}
