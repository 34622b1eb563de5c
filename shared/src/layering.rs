//! The crate's modules form layers along the data's path: a module may use the ones below it, never
//! one above. This test reads the sources and fails on any `crate::<module>` reference that closes a
//! cycle between top-level modules, naming the files involved.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules, bottom first: each may depend only on modules listed before it.
const LAYERS: &[&str] = &[
    "error",
    "storage",
    "telemetry",
    "schema",
    "config",
    "events",
    "lake",
    "read",
    "quarantine",
    "bronze",
    "cdc",
    "silver",
    "gold",
    "maintain",
    "status",
    "catalog",
    "handler",
    "runner",
    "backfill",
    "deploy",
];

/// The non-test source files of top-level module `name` (its `.rs` file, or every file of its folder).
fn files_of(src: &Path, name: &str) -> Vec<PathBuf> {
    let file = src.join(format!("{name}.rs"));
    if file.exists() {
        return vec![file];
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(src.join(name))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            // Test modules (`tests.rs`, `*_tests.rs`) may use any layer.
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            p.extension().is_some_and(|x| x == "rs")
                && !name.is_some_and(|n| n.ends_with("tests.rs"))
        })
        .collect();
    out.sort();
    out
}

/// The top-level modules a source file names as `crate::<module>`, outside its `#[cfg(test)]` tail.
fn references(text: &str) -> BTreeSet<String> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let name: String = code[i + 7..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if LAYERS.contains(&name.as_str()) {
            out.insert(name);
        }
    }
    out
}

#[test]
fn modules_only_use_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rank: BTreeMap<&str, usize> = LAYERS.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let mut upward = Vec::new();
    for module in LAYERS {
        for file in files_of(&src, module) {
            let text = std::fs::read_to_string(&file).unwrap();
            for used in references(&text) {
                if rank[used.as_str()] > rank[module] {
                    upward.push(format!(
                        "{} ({module}) uses crate::{used}",
                        file.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "modules using a layer above them (an import cycle in the making):\n{}",
        upward.join("\n")
    );
}

#[test]
fn every_top_level_module_is_placed_in_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(name) = line.strip_prefix("pub mod ") {
            let name = name.trim_end_matches(';');
            assert!(
                LAYERS.contains(&name),
                "lib.rs declares `{name}`, which LAYERS does not place"
            );
        }
    }
}
