#!/usr/bin/env bash
# Bronze ingest benchmark: one JSONL object of $BENCH_MB MB (default 100) in a MinIO landing bucket →
# bronze Delta table on MinIO, through the release `lakehouse ingest` (the Lambda handler's code path),
# side by side with the Python deltalake + pyarrow peer on the same object, $BENCH_RUNS runs each,
# alternating. Reports medians of wall time, rows/s, MB/s and peak RSS; writes bench/results/bronze.md.
# Needs MinIO up (make bench-bronze starts it). Not a test: numbers depend on the machine.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../infra/local/env.sh"
MB="${BENCH_MB:-100}"
RUNS="${BENCH_RUNS:-3}"
BIN="$CARGO_TARGET_DIR/release/lakehouse"
work="$LAKEHOUSE_STATE/bench"
mkdir -p "$work" "$here/results"
data="$work/orders-${MB}mb.jsonl"
if [[ ! -f "$data" ]]; then
  "$TOOLS_VENV/bin/python" "$here/gen_jsonl.py" "$data" "$MB" >"$data.rows"
fi
rows=$(cat "$data.rows")
bytes=$(stat -c %s "$data")
key="orders/orders-${MB}mb.jsonl"
"$LOCALSTACK_VENV/bin/python" - "$data" "$key" <<'PY'
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["MINIO_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id=os.environ["MINIO_ROOT_USER"], aws_secret_access_key=os.environ["MINIO_ROOT_PASSWORD"])
for b in ("bench-landing", os.environ["LAKE_BUCKET"]):
    try: s3.create_bucket(Bucket=b)
    except Exception: pass
s3.upload_file(sys.argv[1], "bench-landing", sys.argv[2])
PY
run_id=$(date +%s)
storage="aws_endpoint_url = \"$MINIO_ENDPOINT\"
aws_access_key_id = \"$MINIO_ROOT_USER\"
aws_secret_access_key = \"$MINIO_ROOT_PASSWORD\"
aws_region = \"us-east-1\"
aws_allow_http = \"true\""
event="$work/event.json"
echo "{\"Records\":[{\"eventName\":\"ObjectCreated:Put\",\"s3\":{\"bucket\":{\"name\":\"bench-landing\"},\"object\":{\"key\":\"$key\"}}}]}" >"$event"

measure() { # label cmd... ; prints "seconds peak_rss_kb" of cmd
  local label=$1; shift
  if ! /usr/bin/time -f "%e %M" -o "$work/last.time" "$@" >"$work/last.out" 2>"$work/last.err"; then
    echo "[bench] $label failed:" >&2; tail -n 20 "$work/last.err" >&2; exit 1
  fi
  cat "$work/last.time"
}
rust_times=(); rust_rss=(); py_times=(); py_rss=()
for i in $(seq 1 "$RUNS"); do
  cfg="$work/pipeline-$run_id-$i.toml"
  cat >"$cfg" <<TOML
[landing]
uri = "s3://bench-landing"
[landing.storage]
$storage
[lake]
uri = "s3://$LAKE_BUCKET/bench/$run_id-$i"
[lake.storage]
$storage
[[table]]
name = "orders"
format = "jsonl"
columns = ["order_id long not null", "customer_id long", "amount double", "status string", "note string", "updated_at timestamp"]
TOML
  read -r t m < <(RUST_LOG=warn measure rust "$BIN" ingest --config "$cfg" "$event")
  rust_times+=("$t"); rust_rss+=("$m")
  got=$(grep -o '"rows": [0-9]*' "$work/last.out" | head -n1 | grep -o '[0-9]*$')
  [[ "$got" == "$rows" ]] || { echo "[bench] rust ingested $got rows, expected $rows" >&2; exit 1; }
  read -r t m < <(measure python "$TOOLS_VENV/bin/python" "$here/peer_bronze.py" bench-landing "$key" \
    "s3://$LAKE_BUCKET/bench/$run_id-$i-py/orders" "$MINIO_ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD")
  py_times+=("$t"); py_rss+=("$m")
  grep -q "rows=$rows " "$work/last.out" || { echo "[bench] python peer: $(cat "$work/last.out"), expected $rows rows" >&2; exit 1; }
  echo "run $i: rust ${rust_times[-1]} s ${rust_rss[-1]} KB | python ${py_times[-1]} s ${py_rss[-1]} KB" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rt=$(median "${rust_times[@]}"); rm_=$(median "${rust_rss[@]}"); pt=$(median "${py_times[@]}"); pm=$(median "${py_rss[@]}")
report=$(awk -v rows="$rows" -v bytes="$bytes" -v rt="$rt" -v rm="$rm_" -v pt="$pt" -v pm="$pm" -v runs="$RUNS" 'BEGIN {
  mb = bytes / 1048576
  printf "| engine | median wall s | rows/s | MB/s | peak RSS MB |\n|---|---|---|---|---|\n"
  printf "| lakehouse (Rust, release) | %.2f | %.0f | %.1f | %.0f |\n", rt, rows/rt, mb/rt, rm/1024
  printf "| Python deltalake + pyarrow | %.2f | %.0f | %.1f | %.0f |\n", pt, rows/pt, mb/pt, pm/1024
  printf "\nratio wall (python/rust): %.2fx; ratio RSS (python/rust): %.2fx; %d rows, %.1f MB, %d runs each, median\n", pt/rt, pm/rm, rows, mb, runs
}')
{
  echo "# Bronze ingest benchmark ($(date -u +%FT%TZ), $(nproc) cores)"
  echo
  echo "One ${MB} MB JSONL object in MinIO → bronze Delta table in MinIO (schema enforced, lineage columns)."
  echo
  echo "$report"
  echo
  echo "Reproduce: \`make bench-bronze\` (BENCH_MB, BENCH_RUNS to change size and runs)."
} | tee "$here/results/bronze.md"
