//! Shared library of the serverless delta-architecture lakehouse. Modules follow the data's path:
//! [`events`] (what arrived) → [`read`] (parse and conform) → [`bronze`] (append with lineage, exactly
//! once) → [`cdc`] + [`silver`] (one MERGE per step; [`scd2`] history) → [`gold`] (views recomputed per
//! touched group), all through [`lake`] (Delta commits, retries) with [`quarantine`] for what did not
//! fit. [`handler`] is what the Lambda functions call; [`runner`] (queues → handlers, off AWS) and
//! [`backfill`] (batch mode) drive the same code; [`demo`] is the embedded, nothing-installed run.

pub mod backfill;
pub mod bronze;
pub mod cdc;
pub mod config;
pub mod demo;
pub mod error;
pub mod events;
pub mod gold;
pub mod handler;
pub mod lake;
pub mod notify;
pub mod quarantine;
pub mod read;
pub mod runner;
pub mod scd2;
pub mod schema;
pub mod silver;
pub mod storage;
pub mod telemetry;

pub use config::PipelineConfig;
pub use error::{Error, Result};

/// Arrow and Parquet as delta-rs re-exports them (one version across the workspace).
pub use deltalake::arrow as deltalake_arrow;
pub use deltalake::parquet as deltalake_parquet;
