//! Snapshot tables (`cdc = "snapshot"`): which snapshot a landing object belongs to, and what a
//! snapshot's completion marker brings along.
//!
//! Convention: a snapshot is the set of objects under one folder directly below the table's prefix
//! (`<prefix><snapshot>/part-*.csv`), complete once its `_SUCCESS` object exists; a single object
//! directly under the prefix is a complete snapshot by itself. Names starting with `_` or `.` are
//! never data (Hadoop's and Spark's hidden files). Bronze ingests every part as it arrives; the
//! marker's event lists the folder, ingests any part whose own event has not come yet, and records
//! the snapshot complete (marker `snapshot:<id>`) in the same commit. Silver reads those markers.

use futures::TryStreamExt;
use object_store::path::Path;

use crate::config::{relative_key, PipelineConfig, TableConfig, SNAPSHOT_MARKER};
use crate::error::{Error, Result};
use crate::events::{self, SourceObject};
use crate::storage::StoreRef;

/// App id prefix of the markers that record a snapshot complete in bronze.
pub const COMPLETE: &str = "snapshot:";

/// Versions of a completion marker: every row of the snapshot is in bronze, or some went to
/// quarantine (silver then applies its rows but deletes no key: the missing rows are not deletes).
pub const CLEAN: i64 = 1;
pub const WITH_REJECTED_ROWS: i64 = 2;

/// The bronze marker recording snapshot `id` complete.
pub fn complete_app_id(id: &str) -> String {
    format!("{COMPLETE}{id}")
}

/// Where a landing object sits in a snapshot table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// A data object of snapshot `id`; `whole` when it is a snapshot by itself.
    Data { id: String, whole: bool },
    /// Snapshot `id`'s completion marker.
    Marker { id: String },
    /// A hidden object (`_*`, `.*`) that is not the marker: never data.
    Hidden,
}

/// The snapshot `key` (a landing key of `table`) belongs to.
pub fn classify(config: &PipelineConfig, table: &TableConfig, key: &str) -> Part {
    let rel = relative_key(&config.landing, key).unwrap_or(key);
    let under = rel.strip_prefix(table.prefix.as_str()).unwrap_or(rel);
    let name = under.rsplit('/').next().unwrap_or(under);
    let hidden = name.starts_with('_') || name.starts_with('.');
    match under.split_once('/') {
        Some((id, _)) if name == SNAPSHOT_MARKER => Part::Marker { id: id.to_string() },
        _ if hidden => Part::Hidden,
        Some((id, _)) => Part::Data {
            id: id.to_string(),
            whole: false,
        },
        None => Part::Data {
            id: under.to_string(),
            whole: true,
        },
    }
}

/// What one bronze call does for a snapshot table.
#[derive(Debug, Default)]
pub struct Plan {
    /// The data objects to ingest: those named by the events, and every part of a folder whose
    /// marker arrived.
    pub objects: Vec<SourceObject>,
    /// Snapshots this call completes (markers arrived, or single-object snapshots), with their parts.
    pub complete: Vec<(String, Vec<String>)>,
    /// Objects that are not data (markers and hidden files), with why.
    pub skipped: Vec<(SourceObject, String)>,
}

/// The plan for `objects` of snapshot table `table`: each marker's folder listed in `landing`.
pub async fn plan(
    landing: &StoreRef,
    config: &PipelineConfig,
    table: &TableConfig,
    objects: &[SourceObject],
) -> Result<Plan> {
    let mut plan = Plan::default();
    let add = |plan: &mut Plan, o: SourceObject| {
        if !plan
            .objects
            .iter()
            .any(|p| p.key == o.key && p.version_id == o.version_id)
        {
            plan.objects.push(o);
        }
    };
    for o in objects {
        match classify(config, table, &o.key) {
            Part::Data { id, whole } => {
                if whole {
                    plan.complete.push((id, vec![o.key.clone()]));
                }
                add(&mut plan, o.clone());
            }
            Part::Hidden => plan.skipped.push((
                o.clone(),
                "a hidden object (`_*` or `.*`), not data".to_string(),
            )),
            Part::Marker { id } => {
                let folder = o.key.strip_suffix(SNAPSHOT_MARKER).unwrap_or(&o.key);
                let listed: Vec<_> = landing
                    .list(Some(&Path::from(folder.trim_end_matches('/'))))
                    .try_collect()
                    .await
                    .map_err(|e| Error::Storage {
                        what: "list the snapshot folder",
                        location: format!("{}/{folder}", o.bucket),
                        source: Box::new(e),
                    })?;
                let mut parts = Vec::new();
                for m in listed {
                    let key = m.location.to_string();
                    if matches!(classify(config, table, &key), Part::Data { .. }) {
                        parts.push(key.clone());
                        add(
                            &mut plan,
                            SourceObject {
                                bucket: o.bucket.clone(),
                                key,
                                etag: m.e_tag.as_deref().map(events::clean_etag),
                                version_id: None,
                                removed_at: None,
                            },
                        );
                    }
                }
                plan.skipped.push((
                    o.clone(),
                    format!("the marker of snapshot `{id}` ({} parts)", parts.len()),
                ));
                plan.complete.push((id, parts));
            }
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_parts_markers_or_hidden() {
        let cfg = crate::testkit::pipeline(
            "[[table]]\nname = \"erp\"\nformat = \"csv\"\ncdc = \"snapshot\"\nkeys = [\"id\"]\ncolumns = [\"id long not null\"]",
        );
        let t = &cfg.tables[0];
        let part = |id: &str, whole| Part::Data {
            id: id.into(),
            whole,
        };
        assert_eq!(
            classify(&cfg, t, "erp/day=2026-12-01/part-0.csv"),
            part("day=2026-12-01", false)
        );
        assert_eq!(
            classify(&cfg, t, "erp/day=2026-12-01/sub/part-0.csv"),
            part("day=2026-12-01", false)
        );
        assert_eq!(
            classify(&cfg, t, "erp/day=2026-12-01/_SUCCESS"),
            Part::Marker {
                id: "day=2026-12-01".into()
            }
        );
        assert_eq!(
            classify(&cfg, t, "erp/day=2026-12-01/_committed_1"),
            Part::Hidden
        );
        assert_eq!(
            classify(&cfg, t, "erp/day=2026-12-01/.part-0.crc"),
            Part::Hidden
        );
        assert_eq!(
            classify(&cfg, t, "erp/2026-12-01.csv"),
            part("2026-12-01.csv", true)
        );
        assert_eq!(classify(&cfg, t, "erp/_SUCCESS"), Part::Hidden);
    }
}
