//! The AWS Glue Data Catalog, opt-in (`[catalog] glue = { database = "..." }`): the lake's tables
//! registered as native Delta tables (`table_type = DELTA`, location, columns), so Athena and other
//! Glue-catalog readers find them by name: `bronze_<table>`, `silver_<table>`, `gold_<view>` and
//! `quarantine_<table>` (tombstones are the product's own bookkeeping and stay out).
//!
//! The functions register the table a step wrote when this process has not registered that schema
//! yet: a new table, a changed schema, or the first step of a new container (one Glue read). [`sync`]
//! (`lakehouse catalog sync`) registers every existing table. Registration is never part of a
//! commit: a Glue failure is logged and tried again on the table's next step; it never fails a step.

use std::collections::HashMap;
use std::sync::Mutex;

use deltalake::DeltaTable;
use tracing::{info, warn};

use crate::config::{GlueConfig, PipelineConfig};
use crate::error::{Error, Result};
use crate::lake;
use crate::storage::Location;

mod glue;
#[cfg(test)]
mod tests;

pub use glue::hive_type;

/// One table as the catalog knows it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its name in the catalog: `<layer>_<table>`.
    pub name: String,
    pub location: Location,
    pub partition_by: Vec<String>,
}

/// What registering a table did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Registered {
    Created,
    Updated,
    /// The catalog already had this location and these columns.
    Unchanged,
}

/// The catalog the functions register tables in (none when the config has no `[catalog]`).
#[derive(Default)]
pub struct Catalog {
    glue: Option<glue::Glue>,
    /// What this process registered, by catalog name: the registration's fingerprint.
    registered: Mutex<HashMap<String, String>>,
}

impl Catalog {
    /// No catalog: registering does nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// The catalog `config` names, if any (builds its client; no call is made yet).
    pub async fn from_config(config: &PipelineConfig) -> Self {
        match &config.glue {
            Some(g) => Catalog::glue(g).await,
            None => Catalog::none(),
        }
    }

    pub async fn glue(config: &GlueConfig) -> Self {
        Catalog {
            glue: Some(glue::Glue::new(config).await),
            registered: Mutex::default(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.glue.is_some()
    }

    /// Registers `entry` with the schema of `table` (creating or updating the catalog's table), unless
    /// this process already registered exactly that. `None` when there is no catalog.
    pub async fn register(&self, entry: &Entry, table: &DeltaTable) -> Result<Option<Registered>> {
        let Some(glue) = &self.glue else {
            return Ok(None);
        };
        let schema = lake::schema_of(table, &entry.location)?;
        let fingerprint = format!(
            "{} {:?} {:?}",
            entry.location.url, schema, entry.partition_by
        );
        if self.seen(&entry.name).as_deref() == Some(fingerprint.as_str()) {
            return Ok(Some(Registered::Unchanged));
        }
        let done = glue.register(entry, &schema).await?;
        if done != Registered::Unchanged {
            info!(database = %glue.database(), table = %entry.name, location = %entry.location.url, ?done, "catalog table registered");
        }
        if let Ok(mut m) = self.registered.lock() {
            m.insert(entry.name.clone(), fingerprint);
        }
        Ok(Some(done))
    }

    /// After a step on `<layer>/<table>`: registers the table as the step left it in `tables` (its
    /// writer's snapshots; no I/O). Nothing at all without a catalog. A failure is logged (the next
    /// step of the table tries again, `lakehouse catalog sync` repairs), never returned.
    pub async fn register_after_step(
        &self,
        config: &PipelineConfig,
        layer: &str,
        table: &str,
        tables: &lake::Tables,
    ) {
        if !self.is_enabled() {
            return;
        }
        let entry = entry(config, layer, table);
        let Some(snapshot) = tables.peek(&entry.location) else {
            return;
        };
        if let Err(e) = self.register(&entry, &snapshot).await {
            warn!(table = %entry.name, error = %e, "catalog registration failed; retried on the next step");
        }
    }

    fn seen(&self, name: &str) -> Option<String> {
        self.registered.lock().ok()?.get(name).cloned()
    }
}

/// The catalog entry of `<layer>/<table>` (`layer`: bronze, silver, gold, quarantine).
pub fn entry(config: &PipelineConfig, layer: &str, table: &str) -> Entry {
    let (location, partition_by) = match layer {
        "bronze" => (config.bronze_location(table), Vec::new()),
        "silver" => (
            config.silver_location(table),
            config
                .table(table)
                .map(|t| t.partition_by.clone())
                .unwrap_or_default(),
        ),
        "gold" => (config.gold_location(table), Vec::new()),
        _ => (config.quarantine_location(table), Vec::new()),
    };
    Entry {
        name: format!("{layer}_{table}"),
        location,
        partition_by,
    }
}

/// Every table the config can produce, in a stable order.
pub fn entries(config: &PipelineConfig) -> Vec<Entry> {
    let mut out = Vec::new();
    for t in &config.tables {
        out.push(entry(config, "bronze", &t.name));
        if t.has_silver() {
            out.push(entry(config, "silver", &t.name));
        }
        out.push(entry(config, "quarantine", &t.name));
    }
    for v in &config.gold {
        out.push(entry(config, "gold", &v.name));
    }
    out
}

/// What [`sync`] did for one table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Synced {
    pub table: String,
    pub location: String,
    /// `None`: the table does not exist in the lake yet (nothing registered).
    pub registered: Option<Registered>,
}

/// Registers every table of the lake that exists (`lakehouse catalog sync`), checking each against
/// the catalog whatever this process registered before.
pub async fn sync(config: &PipelineConfig) -> Result<Vec<Synced>> {
    let catalog = Catalog::from_config(config).await;
    if !catalog.is_enabled() {
        return Err(Error::config(
            "-",
            "catalog",
            "no `[catalog] glue = { database = ... }` in the pipeline file: nothing to sync",
        ));
    }
    let mut out = Vec::new();
    for e in entries(config) {
        let registered = match lake::open(&e.location).await? {
            Some(t) => catalog.register(&e, &t).await?,
            None => None,
        };
        out.push(Synced {
            table: e.name,
            location: e.location.url.to_string(),
            registered,
        });
    }
    Ok(out)
}
