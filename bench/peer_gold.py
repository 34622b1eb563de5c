"""Peer: a gold view of bench_gold.py as a Python script keeps it: read the silver table with Python deltalake
(the columns the view needs), aggregate with pyarrow, overwrite the gold table.
usage: peer_gold.py SILVER_URI GOLD_PREFIX VIEW   -> one JSON line: step ms (after imports), silver rows read"""
import json
import os
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

silver, prefix, view = sys.argv[1], sys.argv[2], sys.argv[3]
opts = {"AWS_ENDPOINT_URL": os.environ["MINIO_ENDPOINT"], "AWS_ACCESS_KEY_ID": os.environ["MINIO_ROOT_USER"],
        "AWS_SECRET_ACCESS_KEY": os.environ["MINIO_ROOT_PASSWORD"], "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true"}

t0 = time.time()
if view == "by_bucket":
    rows = DeltaTable(silver, storage_options=opts).to_pyarrow_table(columns=["id", "amount"])
    bucket = pc.subtract(rows["id"], pc.multiply(pc.divide(rows["id"], 1000), 1000))
    g = pa.table({"bucket": bucket, "id": rows["id"], "amount": rows["amount"]}).group_by("bucket").aggregate(
        [("id", "count"), ("amount", "sum"), ("amount", "min")])
    table = pa.table({"bucket": g["bucket"], "accounts": g["id_count"], "total": g["amount_sum"],
                      "low": g["amount_min"]})
else:
    # COUNT(*) counts rows: `id` is never null.
    rows = DeltaTable(silver, storage_options=opts).to_pyarrow_table(columns=["id", "status", "amount"])
    g = rows.group_by("status").aggregate([("id", "count"), ("amount", "sum"), ("amount", "max"), ("amount", "mean")])
    g = g.filter(pc.is_valid(g["status"]))
    table = (pa.table({"status": g["status"], "accounts": g["id_count"], "total": g["amount_sum"],
                       "top": g["amount_max"]}) if view == "by_status" else
             pa.table({"status": g["status"], "accounts": g["id_count"], "mean": g["amount_mean"]}))
write_deltalake(f"{prefix}/{view}", table, mode="overwrite", schema_mode="overwrite", storage_options=opts)
print(json.dumps({"elapsed_ms": (time.time() - t0) * 1000, "silver_rows": rows.num_rows}), flush=True)
os._exit(0)
