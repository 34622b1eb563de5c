#!/usr/bin/env bash
# Start LocalStack (S3 + SQS + what the SAM template creates, host mode, no Docker), MinIO and moto
# (Glue) on 127.0.0.1, with PID files and logs under
# $LAKEHOUSE_STATE, then create the buckets, queues (with DLQ + redrive) and the S3 → SQS notification.
# Idempotent: a service that is already healthy is left running. Fails loudly (with the log tail) when a
# service does not come up. Usage: up.sh [localstack|minio|all]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
mkdir -p "$LAKEHOUSE_STATE/logs" "$LAKEHOUSE_STATE/run"

log() { echo "[up] $*" >&2; }

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_http() { # url name logfile seconds
  local url=$1 name=$2 logf=$3 secs=$4
  for _ in $(seq 1 $((secs * 5))); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "[up] ERROR: $name did not become healthy at $url within ${secs}s. Last log lines ($logf):" >&2
  tail -n 40 "$logf" >&2 || true
  exit 1
}

start_localstack() {
  local pidf="$LAKEHOUSE_STATE/run/localstack.pid" logf="$LAKEHOUSE_STATE/logs/localstack.log"
  [[ -x "$LOCALSTACK_VENV/bin/python" ]] || { echo "[up] ERROR: LocalStack is not installed; run infra/local/install.sh" >&2; exit 1; }
  if alive "$pidf" && curl -fsS -o /dev/null "$LOCALSTACK_ENDPOINT/_localstack/health"; then log "localstack already running"; return; fi
  mkdir -p "$LAKEHOUSE_STATE/localstack/tmp"
  log "starting localstack on $LOCALSTACK_ENDPOINT (log: $logf)"
  # Settings measured on these machines (DESIGN.md §6): loopback only, no DNS or resolv.conf changes.
  # Services: S3 + SQS for the pipeline; CloudFormation and what the SAM template creates for the stack wiring
  # test (services load on first use, so the extra ones cost nothing until then). Lambda functions
  # are created but never run (no Docker): the `stub` executor (infra/local/localstack-stub-lambda).
  GATEWAY_LISTEN=127.0.0.1:4566 GATEWAY_SERVER=hypercorn OVERRIDE_IN_DOCKER=0 DNS_ADDRESS=0 \
  SERVICES="${LOCALSTACK_SERVICES:-s3,sqs,cloudformation,iam,sts,lambda,cloudwatch,scheduler,events,logs}" \
  LAMBDA_RUNTIME_EXECUTOR=stub LOCALSTACK_HOST=127.0.0.1:4566 SQS_ENDPOINT_STRATEGY=path \
  LOCALSTACK_VOLUME_DIR="$LAKEHOUSE_STATE/localstack" TMPDIR="$LAKEHOUSE_STATE/localstack/tmp" \
  DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 \
    nohup "$LOCALSTACK_VENV/bin/python" -m localstack.runtime.main >"$logf" 2>&1 &
  echo $! >"$pidf"
  wait_http "$LOCALSTACK_ENDPOINT/_localstack/health" localstack "$logf" 90
  log "localstack healthy"
}

start_minio() {
  local pidf="$LAKEHOUSE_STATE/run/minio.pid" logf="$LAKEHOUSE_STATE/logs/minio.log"
  [[ -x "$LAKEHOUSE_BIN/minio" ]] || { echo "[up] ERROR: MinIO is not installed; run infra/local/install.sh" >&2; exit 1; }
  if alive "$pidf" && curl -fsS -o /dev/null "$MINIO_ENDPOINT/minio/health/live"; then log "minio already running"; return; fi
  mkdir -p "$LAKEHOUSE_STATE/minio-data"
  log "starting minio on $MINIO_ENDPOINT (log: $logf)"
  MINIO_ROOT_USER="$MINIO_ROOT_USER" MINIO_ROOT_PASSWORD="$MINIO_ROOT_PASSWORD" MINIO_BROWSER=off \
    nohup "$LAKEHOUSE_BIN/minio" server "$LAKEHOUSE_STATE/minio-data" \
      --address 127.0.0.1:9000 --console-address 127.0.0.1:9001 >"$logf" 2>&1 &
  echo $! >"$pidf"
  wait_http "$MINIO_ENDPOINT/minio/health/live" minio "$logf" 60
  log "minio healthy"
}

# moto's server: the Glue Data Catalog endpoint of the catalog test (in memory; nothing persists).
start_moto() {
  local pidf="$LAKEHOUSE_STATE/run/moto.pid" logf="$LAKEHOUSE_STATE/logs/moto.log"
  [[ -x "$MOTO_VENV/bin/moto_server" ]] || { echo "[up] ERROR: moto is not installed; run infra/local/install.sh" >&2; exit 1; }
  if alive "$pidf" && curl -fsS -o /dev/null "$MOTO_ENDPOINT/moto-api/"; then log "moto already running"; return; fi
  log "starting moto on $MOTO_ENDPOINT (log: $logf)"
  local port="${MOTO_ENDPOINT##*:}"
  nohup "$MOTO_VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$logf" 2>&1 &
  echo $! >"$pidf"
  wait_http "$MOTO_ENDPOINT/moto-api/" moto "$logf" 60
  log "moto healthy"
}

case "${1:-all}" in
  localstack) start_localstack ;;
  minio) start_minio ;;
  moto) start_moto ;;
  all) start_localstack; start_minio; start_moto ;;
  *) echo "usage: $0 [localstack|minio|moto|all]" >&2; exit 2 ;;
esac
"$LOCALSTACK_VENV/bin/python" "$here/provision.py" "${1:-all}"
