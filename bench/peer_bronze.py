"""Peer: the same bronze ingest with Python deltalake + pyarrow (what a "Python Lambda" would do):
read the JSONL object from S3, add lineage columns, append to a Delta table on MinIO."""
import datetime
import sys
import time

import pyarrow as pa
import pyarrow.json as pj
from deltalake import write_deltalake
import pyarrow.fs as pafs

src_bucket, key, table_uri, endpoint, user, password = sys.argv[1:7]
t0 = time.time()
s3 = pafs.S3FileSystem(endpoint_override=endpoint, access_key=user, secret_key=password, scheme="http", region="us-east-1")
schema = pa.schema([("order_id", pa.int64()), ("customer_id", pa.int64()), ("amount", pa.float64()),
                    ("status", pa.string()), ("note", pa.string()), ("updated_at", pa.timestamp("us", tz="UTC"))])
with s3.open_input_stream(f"{src_bucket}/{key}") as f:
    table = pj.read_json(f, parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"))
n = table.num_rows
now = pa.scalar(datetime.datetime.now(datetime.timezone.utc), type=pa.timestamp("us", tz="UTC"))
table = table.append_column("_source_key", pa.array([key] * n)).append_column("_source_row", pa.array(range(1, n + 1), pa.int64())) \
    .append_column("_ingested_at", pa.array([now.as_py()] * n, pa.timestamp("us", tz="UTC")))
opts = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": user, "AWS_SECRET_ACCESS_KEY": password,
        "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
write_deltalake(table_uri, table, mode="append", storage_options=opts)
print(f"rows={n} seconds={time.time() - t0:.3f}")
sys.stdout.flush()
# pyarrow's S3 client can abort in its atexit teardown; the work is done and reported.
import os
os._exit(0)
