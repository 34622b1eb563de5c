"""Peer: the gold views of bench_gold.py as a Python script keeps them: read the silver table with Python
deltalake (the columns the views need), aggregate with pyarrow, overwrite each gold table.
usage: peer_gold.py SILVER_URI GOLD_PREFIX   -> one JSON line: step ms (after imports), silver rows read"""
import json
import os
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

silver, prefix = sys.argv[1], sys.argv[2]
opts = {"AWS_ENDPOINT_URL": os.environ["MINIO_ENDPOINT"], "AWS_ACCESS_KEY_ID": os.environ["MINIO_ROOT_USER"],
        "AWS_SECRET_ACCESS_KEY": os.environ["MINIO_ROOT_PASSWORD"], "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true"}

t0 = time.time()
rows = DeltaTable(silver, storage_options=opts).to_pyarrow_table(columns=["id", "status", "amount"])
# COUNT(*) counts rows: `id` is never null.
by_status = rows.group_by("status").aggregate([("id", "count"), ("amount", "sum"), ("amount", "max"),
                                               ("amount", "mean")])
by_status = by_status.filter(pc.is_valid(by_status["status"]))
bucket = pc.subtract(rows["id"], pc.multiply(pc.divide(rows["id"], 1000), 1000))
by_bucket = pa.table({"bucket": bucket, "id": rows["id"], "amount": rows["amount"]}).group_by("bucket").aggregate(
    [("id", "count"), ("amount", "sum"), ("amount", "min")])
views = {
    "by_status": pa.table({"status": by_status["status"], "accounts": by_status["id_count"],
                           "total": by_status["amount_sum"], "top": by_status["amount_max"]}),
    "by_bucket": pa.table({"bucket": by_bucket["bucket"], "accounts": by_bucket["id_count"],
                           "total": by_bucket["amount_sum"], "low": by_bucket["amount_min"]}),
    "mean_by_status": pa.table({"status": by_status["status"], "accounts": by_status["id_count"],
                                "mean": by_status["amount_mean"]}),
}
for name, table in views.items():
    write_deltalake(f"{prefix}/{name}", table, mode="overwrite", schema_mode="overwrite", storage_options=opts)
print(json.dumps({"elapsed_ms": (time.time() - t0) * 1000, "silver_rows": rows.num_rows}), flush=True)
os._exit(0)
