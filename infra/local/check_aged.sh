#!/usr/bin/env bash
# An idle lake through three months of maintenance, then every table opened by independent readers:
# `lakehouse demo` builds a lake (five tables, tombstones, quarantine, two gold views), `lakehouse
# maintain --as-of` runs the schedule at day 0, 31, 62 and 93 with no new data (log entries are then
# older than the 30-day log retention, as on an object store after quiet months: log cleanup runs up
# to each maintenance commit), every run must succeed, and Python deltalake, DuckDB (delta extension)
# and polars must read every table (bench/readers_local.py).
# Usage: check_aged.sh LAKEHOUSE_BINARY
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
bin="$1"
venv="$LAKEHOUSE_HOME/venv-readers"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$bin" demo --dir "$dir" > "$dir/demo.log" 2>&1 || { tail -20 "$dir/demo.log"; exit 1; }
for day in 0 31 62 93; do
  at="$(date -u -d "+$day days" +%Y-%m-%dT%H:%M:%SZ)"
  echo "[check-aged] maintenance as of day $day ($at)"
  "$bin" maintain --config "$dir/pipeline.toml" --as-of "$at" > "$dir/maintain-$day.log" \
    || { cat "$dir/maintain-$day.log"; echo "[check-aged] maintenance failed on day $day"; exit 1; }
  echo "[check-aged]   tables whose log was cleaned: $(grep -c '"clean_log"' "$dir/maintain-$day.log" || true)"
done
"$venv/bin/python" "$here/../../bench/readers_local.py" "$dir/lake"
