#!/usr/bin/env bash
# Upload a file to the local landing bucket (LocalStack, its test keys), as a producer would; the
# bucket's notification then reaches the bronze queue the runner polls.
#   infra/local/upload.sh infra/local/sample/orders.jsonl          # → s3://landing/orders/<time>-orders.jsonl
#   infra/local/upload.sh my.csv inventory/2026-12-07.csv          # any key under a table's prefix
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/env.sh"
[[ $# -ge 1 && -f "$1" ]] || { echo "usage: $0 FILE [KEY]" >&2; exit 2; }
key="${2:-orders/$(date +%s)-$(basename "$1")}"
"$LOCALSTACK_VENV/bin/python" - "$1" "$key" <<'PY'
import os, sys
import boto3
s3 = boto3.client("s3", endpoint_url=os.environ["LOCALSTACK_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
s3.upload_file(sys.argv[1], os.environ["LANDING_BUCKET"], sys.argv[2])
print(f"uploaded {sys.argv[1]} to s3://{os.environ['LANDING_BUCKET']}/{sys.argv[2]}")
PY
