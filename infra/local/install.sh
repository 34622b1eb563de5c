#!/usr/bin/env bash
# Install, once per machine, everything the local infrastructure and the tests need:
#   LocalStack (host mode, no Docker), MinIO (built from its Go module), and a tools venv with
#   cargo-lambda + zig (Lambda builds and `cargo lambda watch`) and Python deltalake (independent reader).
# Idempotent: each part is skipped when its marker matches. Usage: install.sh [localstack|minio|tools|all]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
mkdir -p "$LAKEHOUSE_HOME" "$LAKEHOUSE_BIN"
PYTHON="${PYTHON:-python3}"

log() { echo "[install] $*" >&2; }

install_localstack() {
  local marker="$LOCALSTACK_VENV/.installed-$LOCALSTACK_VERSION"
  if [[ -f "$marker" ]]; then log "localstack $LOCALSTACK_VERSION already installed"; return; fi
  log "installing localstack-core $LOCALSTACK_VERSION into $LOCALSTACK_VENV"
  rm -rf "$LOCALSTACK_VENV"
  "$PYTHON" -m venv "$LOCALSTACK_VENV"
  "$LOCALSTACK_VENV/bin/pip" install -q --upgrade pip
  # Pins measured on these machines (DESIGN.md §6): newest release for Python 3.11 plus its compatible deps.
  "$LOCALSTACK_VENV/bin/pip" install -q "localstack-core[runtime]==$LOCALSTACK_VERSION" "cbor2<6" "pyopenssl<26.2" "cryptography>=45" boto3
  touch "$marker"
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

case "${1:-all}" in
  bench) install_bench ;;
  localstack) install_localstack ;;
  minio) install_minio ;;
  tools) install_tools ;;
  all) install_localstack; install_tools; install_minio ;;
  *) echo "usage: $0 [localstack|minio|tools|bench|all]" >&2; exit 2 ;;
esac
