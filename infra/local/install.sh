#!/usr/bin/env bash
# Install, once per machine, everything the local infrastructure and the tests need:
#   LocalStack (host mode, no Docker, with a Lambda executor that creates but never runs functions),
#   MinIO (built from its Go module), moto's server (local Glue), the AWS SAM CLI, and a tools venv
#   with cargo-lambda + zig (Lambda builds and `cargo lambda watch`) and Python deltalake (independent
#   reader). Idempotent: each part is skipped when its marker matches.
# Usage: install.sh [localstack|minio|moto|sam|tools|bench|readers|spark|all]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
mkdir -p "$LAKEHOUSE_HOME" "$LAKEHOUSE_BIN"
PYTHON="${PYTHON:-python3}"

log() { echo "[install] $*" >&2; }

# A venv of its own at VENV with PACKAGES, once: skipped while VENV/.installed-TAG exists.
# Usage: venv_install NAME VENV TAG PACKAGE...
venv_install() {
  local name=$1 venv=$2 tag=$3; shift 3
  local marker="$venv/.installed-$tag"
  if [[ -f "$marker" ]]; then log "$name $tag already installed"; return; fi
  log "installing $name $tag into $venv"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q "$@"
  touch "$marker"
}

install_localstack() {
  # Pins measured on these machines (DESIGN.md §6): newest release for Python 3.11 plus its compatible deps.
  venv_install localstack-core "$LOCALSTACK_VENV" "$LOCALSTACK_VERSION" \
    "localstack-core[runtime]==$LOCALSTACK_VERSION" "cbor2<6" "pyopenssl<26.2" "cryptography>=45" boto3
}

# Lambda functions in LocalStack without Docker: created (a CloudFormation stack deploys), never run.
install_localstack_stub() {
  local marker="$LOCALSTACK_VENV/.installed-stub-lambda-v1"
  if [[ -f "$marker" ]]; then return; fi
  log "installing the stub Lambda executor into $LOCALSTACK_VENV"
  # Built from a copy: setuptools leaves build/ and egg-info/ in the source folder.
  local src; src=$(mktemp -d)
  cp -r "$here/localstack-stub-lambda/." "$src/"
  "$LOCALSTACK_VENV/bin/pip" install -q "$src"
  rm -rf "$src"
  touch "$marker"
}

install_moto() {
  venv_install moto "$MOTO_VENV" "$MOTO_VERSION" "moto[server,glue]==$MOTO_VERSION"
}

install_sam() {
  venv_install aws-sam-cli "$SAM_VENV" "$SAM_CLI_VERSION" "aws-sam-cli==$SAM_CLI_VERSION"
}

install_minio() {
  local marker="$LAKEHOUSE_BIN/.minio-installed-$MINIO_VERSION"
  if [[ -x "$LAKEHOUSE_BIN/minio" && -f "$marker" ]]; then log "minio already installed"; return; fi
  command -v go >/dev/null || { log "ERROR: go is required to build MinIO"; exit 1; }
  log "building minio from $MINIO_MODULE@$MINIO_VERSION (once per machine; takes minutes)"
  local start=$SECONDS
  GOBIN="$LAKEHOUSE_BIN" CGO_ENABLED=0 go install "$MINIO_MODULE@$MINIO_VERSION"
  log "minio built in $((SECONDS - start)) s"
  touch "$marker"
}

install_tools() {
  local marker="$TOOLS_VENV/.installed-v2"
  if [[ -f "$marker" ]]; then log "tools venv already installed"; else
    log "installing cargo-lambda, ziglang and deltalake (python) into $TOOLS_VENV"
    rm -rf "$TOOLS_VENV"
    "$PYTHON" -m venv "$TOOLS_VENV"
    "$TOOLS_VENV/bin/pip" install -q --upgrade pip
    "$TOOLS_VENV/bin/pip" install -q cargo-lambda ziglang "deltalake>=1.1,<2" pyarrow cfn-lint
    touch "$marker"
  fi
  # The SAM translator: the template transformed offline, as CloudFormation receives it, for cfn-lint.
  local sam="$TOOLS_VENV/.installed-sam-v1"
  if [[ ! -f "$sam" ]]; then
    log "installing aws-sam-translator into $TOOLS_VENV"
    "$TOOLS_VENV/bin/pip" install -q aws-sam-translator
    touch "$sam"
  fi
}

# Benchmarks only (not `make test`): charts and S3 bucket setup.
install_bench() {
  install_tools
  local marker="$TOOLS_VENV/.installed-bench-v1"
  if [[ -f "$marker" ]]; then log "bench packages already installed"; return; fi
  log "installing matplotlib and boto3 into $TOOLS_VENV"
  "$TOOLS_VENV/bin/pip" install -q matplotlib boto3
  touch "$marker"
}

# Benchmarks only: the reference system and independent readers (bench/peer_spark.py, bench/readers.py).
# A venv with PySpark + delta-spark (the pyspark release delta-spark 4.4.0 accepts), DuckDB with its delta
# and httpfs extensions as PyPI packages (loaded by path: `INSTALL` needs the internet), polars, Python deltalake;
# and the Delta and S3A jars fetched once from Maven Central into an Ivy cache under $LAKEHOUSE_HOME. Their
# local paths are listed in $venv/spark-jars.txt, which the scripts pass as `spark.jars`: no resolution, no
# network after this.
install_spark() {
  local venv="$LAKEHOUSE_HOME/venv-spark" ivy="$LAKEHOUSE_HOME/ivy-spark"
  local delta="4.4.0" pyspark="4.2.0" duckdb="1.5.5"
  local marker="$venv/.installed-spark-v2-$delta"
  if [[ -f "$marker" && -s "$venv/spark-jars.txt" ]]; then log "spark venv already installed"; return; fi
  command -v java >/dev/null || { log "ERROR: java (17) is required for Spark"; exit 1; }
  log "installing pyspark $pyspark + delta-spark $delta, duckdb $duckdb, polars, deltalake into $venv"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q "pyspark==$pyspark" "delta-spark==$delta" "duckdb==$duckdb" \
    "duckdb-extension-delta==$duckdb" "duckdb-extension-httpfs==$duckdb" polars pytz "deltalake>=1.1,<2" pyarrow matplotlib boto3
  # hadoop-aws must match the Hadoop that pyspark bundles; Ivy brings its AWS SDK bundle with it.
  local hadoop
  hadoop="$(ls "$venv"/lib/python3*/site-packages/pyspark/jars/ | sed -n 's/^hadoop-client-api-\(.*\)\.jar$/\1/p')"
  [[ -n "$hadoop" ]] || { log "ERROR: no hadoop-client-api jar in pyspark"; exit 1; }
  log "fetching io.delta:delta-spark_2.13:$delta and org.apache.hadoop:hadoop-aws:$hadoop into $ivy"
  rm -rf "$ivy/jars"  # what this resolution retrieves, nothing older (the download cache stays)
  mkdir -p "$ivy"
  SPARK_LOCAL_IP=127.0.0.1 "$venv/bin/python" - "$ivy" "io.delta:delta-spark_2.13:$delta,org.apache.hadoop:hadoop-aws:$hadoop" \
    > "$ivy/fetch.log" 2>&1 <<'PY' || { tail -30 "$ivy/fetch.log" >&2; log "ERROR: fetching the jars failed (log: $ivy/fetch.log)"; exit 1; }
import sys
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master("local[1]").appName("fetch-jars")
         .config("spark.jars.ivy", sys.argv[1]).config("spark.jars.packages", sys.argv[2])
         .config("spark.ui.enabled", "false").getOrCreate())
spark.stop()
PY
  # Keep only the jars Spark does not ship itself (Ivy also brings older hadoop-client, parquet, log4j...).
  local own jar name
  own=" $(ls "$venv"/lib/python3*/site-packages/pyspark/jars/ | sed -n -e '/\.jar$/!d' -e 's/-[0-9].*$//p' | tr '\n' ' ') "
  : > "$venv/spark-jars.txt"
  for jar in "$ivy"/jars/*.jar; do
    name="$(basename "$jar" | sed -e 's/^[^_]*_//' -e 's/-[0-9].*\.jar$//')"
    [[ "$own" == *" $name "* ]] || echo "$jar" >> "$venv/spark-jars.txt"
  done
  grep -q "delta-spark_2.13-$delta.jar" "$venv/spark-jars.txt" && grep -q "hadoop-aws-$hadoop.jar" "$venv/spark-jars.txt" \
    || { log "ERROR: jars missing from $ivy/jars"; exit 1; }
  log "$(wc -l < "$venv/spark-jars.txt") jars ($(du -sh "$ivy/jars" | cut -f1))"
  touch "$marker"
}

# The independent readers of `make test`'s aged-lake check (infra/local/check_aged.sh): Python deltalake,
# polars, DuckDB with its delta extension as a PyPI package (loaded by path). No Java, no jars.
install_readers() {
  venv_install "readers (deltalake, polars, duckdb + delta extension)" "$LAKEHOUSE_HOME/venv-readers" readers-v1 \
    "deltalake==1.6.6" "polars==2.1.0" "duckdb==1.5.5" "duckdb-extension-delta==1.5.5" pytz pyarrow
}

case "${1:-all}" in
  bench) install_bench ;;
  readers) install_readers ;;
  spark) install_spark ;;
  localstack) install_localstack; install_localstack_stub ;;
  minio) install_minio ;;
  moto) install_moto ;;
  sam) install_sam ;;
  tools) install_tools ;;
  all) install_localstack; install_localstack_stub; install_moto; install_sam; install_tools; install_minio; install_readers ;;
  *) echo "usage: $0 [localstack|minio|moto|sam|tools|bench|readers|spark|all]" >&2; exit 2 ;;
esac
