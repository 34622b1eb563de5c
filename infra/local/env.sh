# Shared settings for the local infrastructure (sourced by the other scripts and the Makefile).
# Installs are cached per machine under $LAKEHOUSE_HOME; runtime state (data, logs, PID files) under
# $LAKEHOUSE_STATE, so a clean clone on the same machine never reinstalls anything.
export LAKEHOUSE_HOME="${LAKEHOUSE_HOME:-$HOME/.cache/lakehouse}"
export LAKEHOUSE_STATE="${LAKEHOUSE_STATE:-$LAKEHOUSE_HOME/state}"

export LOCALSTACK_VERSION="4.13.1"
export MINIO_MODULE="github.com/minio/minio"
# Pinned: the pseudo-version `latest` resolved to on 2026-11-25 (builds with Go 1.26; MinIO has no tagged
# Go-module releases). A moving `latest` could one day need a newer Go than the machine has.
export MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"

export LOCALSTACK_VENV="$LAKEHOUSE_HOME/venv-localstack"
# moto's server: the local Glue Data Catalog (LocalStack's community edition has no Glue).
export MOTO_VERSION="5.2.5"
export MOTO_VENV="$LAKEHOUSE_HOME/venv-moto"
export MOTO_ENDPOINT="http://127.0.0.1:5055"
# AWS SAM CLI (`sam validate --lint`, `sam build`), in a venv of its own: it pins its cfn-lint.
export SAM_CLI_VERSION="1.170.0"
export SAM_VENV="$LAKEHOUSE_HOME/venv-sam"
export SAM_CLI_TELEMETRY=0
export TOOLS_VENV="$LAKEHOUSE_HOME/venv-tools"
export LAKEHOUSE_BIN="$LAKEHOUSE_HOME/bin"

export LOCALSTACK_ENDPOINT="http://127.0.0.1:4566"
export MINIO_ENDPOINT="http://127.0.0.1:9000"
export MINIO_ROOT_USER="${MINIO_ROOT_USER:-lakehouse}"
export MINIO_ROOT_PASSWORD="${MINIO_ROOT_PASSWORD:-lakehouse-secret}"

# Names the integration tests and the local runner use.
export LANDING_BUCKET="${LANDING_BUCKET:-landing}"
export LAKE_BUCKET="${LAKE_BUCKET:-lake}"
export BRONZE_QUEUE="${BRONZE_QUEUE:-bronze-events}"
export BRONZE_DLQ="${BRONZE_DLQ:-bronze-events-dlq}"
export SILVER_QUEUE="${SILVER_QUEUE:-silver-committed}"
export GOLD_QUEUE="${GOLD_QUEUE:-gold-committed}"
