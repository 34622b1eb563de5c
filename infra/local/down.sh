#!/usr/bin/env bash
# Stop LocalStack, MinIO and moto started by up.sh (by PID file) and remove LocalStack's stray temp storage.
# Usage: down.sh [--wipe]   (--wipe also deletes MinIO's data and LocalStack's state)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"

stop() { # name
  local pidf="$LAKEHOUSE_STATE/run/$1.pid"
  [[ -f "$pidf" ]] || return 0
  local pid; pid=$(cat "$pidf")
  if kill -0 "$pid" 2>/dev/null; then
    echo "[down] stopping $1 ($pid)" >&2
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidf"
}

stop localstack
stop minio
stop moto
# LocalStack writes object data under the system temp dir whatever TMPDIR says (DESIGN.md §6).
rm -rf "${TMPDIR:-/tmp}/localstack-s3-storage" /tmp/localstack-s3-storage
if [[ "${1:-}" == "--wipe" ]]; then
  rm -rf "$LAKEHOUSE_STATE/minio-data" "$LAKEHOUSE_STATE/localstack"
fi
