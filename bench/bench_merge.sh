#!/usr/bin/env bash
# Silver MERGE benchmark: a 1,000-row CDC batch (50% updates, 40% inserts, 10% deletes) merged into
# silver tables of $BENCH_SIZES rows (default 100k and 1M) on MinIO, one warm-up then $BENCH_ROUNDS
# (default 5) measured rounds, each round through the release `lakehouse silver` step (what the silver
# function runs) and, on the same files, Python deltalake's MERGE into its own copy. Reports medians of
# the step time, process wall time, peak RSS and files rewritten; writes bench/results/merge.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../infra/local/env.sh"
SIZES="${BENCH_SIZES:-100000 1000000}"
ROUNDS="${BENCH_ROUNDS:-5}"
BIN="${LAKEHOUSE_CLI:-$CARGO_TARGET_DIR/release/lakehouse}"
PY="$TOOLS_VENV/bin/python"
work="$LAKEHOUSE_STATE/bench-merge"
run_id=$(date +%s)
mkdir -p "$work" "$here/results"
"$LOCALSTACK_VENV/bin/python" - <<'PY'
import os, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["MINIO_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id=os.environ["MINIO_ROOT_USER"], aws_secret_access_key=os.environ["MINIO_ROOT_PASSWORD"])
try: s3.create_bucket(Bucket=os.environ["LAKE_BUCKET"])
except Exception: pass
PY

timed() { # out_json_var cmd... -> sets LAST_JSON, LAST_WALL, LAST_RSS_KB
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>"$work/err" || { tail -n 20 "$work/err" >&2; exit 1; }
  LAST_JSON=$(tail -n 1 "$work/out"); read -r LAST_WALL LAST_RSS_KB <"$work/time"
}
field() { "$PY" -c "import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print(v if v is not None else 0)" "$1" "$2"; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", a / b }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
event() { echo "{\"Records\":[{\"eventName\":\"ObjectCreated:Put\",\"s3\":{\"bucket\":{\"name\":\"\"},\"object\":{\"key\":\"${1#/}\"}}}]}" >"$work/event.json"; }

report="| silver rows | engine | step ms (median) | process s (median) | peak RSS MB (median) | files rewritten per batch |
|---|---|---|---|---|---|"
for n in $SIZES; do
  data="$work/data-$n"
  [[ -f "$data/round-$ROUNDS.jsonl" ]] || "$PY" "$here/gen_cdc.py" "$data/landing/accounts" "$n" $((ROUNDS + 1))
  lake="s3://$LAKE_BUCKET/bench-merge/$run_id-$n"
  cfg="$work/pipeline-$n.toml"
  storage="aws_endpoint_url = \"$MINIO_ENDPOINT\"
aws_access_key_id = \"$MINIO_ROOT_USER\"
aws_secret_access_key = \"$MINIO_ROOT_PASSWORD\"
aws_region = \"us-east-1\"
aws_allow_http = \"true\""
  cat >"$cfg" <<TOML
[landing]
uri = "file://$data/landing"
[lake]
uri = "$lake"
[lake.storage]
$storage
[[table]]
name = "accounts"
format = "jsonl"
keys = ["id"]
sequence_by = "seq"
delete_column = "deleted"
columns = ["id long not null", "seq long not null", "amount long", "status string", "deleted boolean"]
TOML
  py_uri="$lake/python-silver/accounts"
  event "$data/landing/accounts/base.jsonl"
  RUST_LOG=warn "$BIN" ingest --config "$cfg" "$work/event.json" >/dev/null
  timed env RUST_LOG="${BENCH_LOG:-warn}" "$BIN" silver --config "$cfg" --table accounts
  echo "[bench] $n rows: initial silver load $(field "$LAST_JSON" elapsed_ms) ms" >&2
  timed "$PY" "$here/peer_merge.py" init "$py_uri" "$data/landing/accounts/base.jsonl" "$MINIO_ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
  r_ms=(); r_wall=(); r_rss=(); r_files=(); p_ms=(); p_wall=(); p_rss=(); p_files=()
  for r in $(seq 0 "$ROUNDS"); do
    event "$data/landing/accounts/round-$r.jsonl"
    RUST_LOG=warn "$BIN" ingest --config "$cfg" "$work/event.json" >/dev/null
    timed env RUST_LOG="${BENCH_LOG:-warn}" "$BIN" silver --config "$cfg" --table accounts
    [[ "$(field "$LAST_JSON" changes)" == 1000 ]] || { echo "[bench] rust step saw $(field "$LAST_JSON" changes) changes: $LAST_JSON" >&2; exit 1; }
    rj="$LAST_JSON"; rw=$LAST_WALL; rr=$LAST_RSS_KB
    sed 's/\x1b\[[0-9;]*m//g' "$work/err" | grep -o 'phases_ms=\[[^]]*\]' >&2 || true
    timed "$PY" "$here/peer_merge.py" merge "$py_uri" "$data/landing/accounts/round-$r.jsonl" "$MINIO_ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
    echo "[bench] $n rows round $r: rust $rj | python $LAST_JSON" >&2
    if [[ $r -gt 0 ]]; then  # round 0 is the warm-up
      r_ms+=("$(field "$rj" elapsed_ms)"); r_wall+=("$rw"); r_rss+=("$rr"); r_files+=("$(field "$rj" files_rewritten)")
      p_ms+=("$(field "$LAST_JSON" elapsed_ms)"); p_wall+=("$LAST_WALL"); p_rss+=("$LAST_RSS_KB"); p_files+=("$(field "$LAST_JSON" files_rewritten)")
    fi
  done
  rm_=$(median "${r_ms[@]}"); pm=$(median "${p_ms[@]}")
  report+=$'\n'"$(printf '| %s | lakehouse silver step (Rust, release) | %.0f | %s | %.0f | %s |' "$n" "$rm_" "$(median "${r_wall[@]}")" "$(div "$(median "${r_rss[@]}")" 1024)" "$(median "${r_files[@]}")")"
  report+=$'\n'"$(printf '| %s | Python deltalake MERGE | %.0f | %s | %.0f | %s |' "$n" "$pm" "$(median "${p_wall[@]}")" "$(div "$(median "${p_rss[@]}")" 1024)" "$(median "${p_files[@]}")")"
  report+=$'\n'"$(printf '| %s | ratio python/rust (step) | %.2fx | | | |' "$n" "$(div "$pm" "$rm_")")"
done
{
  echo "# Silver MERGE benchmark ($(date -u +%FT%TZ), $(nproc) cores)"
  echo
  echo "1,000-row CDC batch (500 updates, 400 inserts, 100 deletes; unique keys) into silver on MinIO; median of"
  echo "$ROUNDS rounds after one warm-up. The Rust step includes loading bronze/silver/tombstone snapshots,"
  echo "reading the new bronze files, normalising, the tombstone check, the MERGE and the tombstone commit; the"
  echo "Python step includes reading the JSONL file, loading the table and the MERGE."
  echo
  echo "$report"
  echo
  echo "Reproduce: \`make bench-merge\` (BENCH_SIZES, BENCH_ROUNDS)."
} | tee "$here/results/merge.md"
