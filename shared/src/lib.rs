//! Shared library of the serverless delta-architecture lakehouse: everything the functions, the local
//! runner and the CLI do, with nothing printed and no command line. Modules follow the data's path:
//!
//! - [`events`]: what arrived (S3, SQS, SNS, EventBridge, "committed" messages), parsed once;
//! - [`read`]: landing objects streamed, parsed and conformed ([`schema`]: column types and lineage);
//! - [`bronze`]: raw rows with lineage, one commit per batch, exactly once per object version;
//! - [`cdc`] + [`silver`]: changes normalised, one MERGE per step (SCD1 or SCD2), tombstones;
//! - [`gold`]: views recomputed per touched group;
//! - [`quarantine`]: what did not fit, with its reason;
//! - [`maintain`]: compaction, checkpoints, log cleanup below every consumer's watermark, vacuum,
//!   expiry; [`status`]: versions, lag and layout per table; [`catalog`]: the tables registered in
//!   the Glue Data Catalog (opt-in) for Athena.
//!
//! All of it goes through [`lake`] (the only module that talks to delta-rs) and [`storage`] (where
//! things live). [`config`] is the pipeline file. [`handler`] is what each Lambda calls (and owns the
//! announcements to the next layer); [`runner`] (queues → handlers, off AWS) and [`backfill`] (batch
//! mode) drive the same handlers and writers; [`deploy`] writes the AWS template that wires them per
//! trigger window. [`error`] is the crate's one error type.

pub mod backfill;
pub mod bronze;
pub mod catalog;
pub mod cdc;
pub mod config;
pub mod deploy;
pub mod error;
pub mod events;
pub mod gold;
pub mod handler;
pub mod lake;
#[cfg(test)]
mod layering;
pub mod maintain;
pub mod quarantine;
pub mod read;
pub mod runner;
pub mod schema;
pub mod silver;
pub mod status;
pub mod storage;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod testkit;

pub use config::PipelineConfig;
pub use error::{Error, Result};

/// Arrow and Parquet as delta-rs re-exports them (one version across the workspace).
pub use deltalake::arrow as deltalake_arrow;
pub use deltalake::parquet as deltalake_parquet;
