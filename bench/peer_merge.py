"""Peer: the same CDC merge with Python deltalake (MERGE on id; update/delete only when the incoming seq
is newer; insert new ids), on the same files, into its own copy of the silver table on MinIO.
usage: peer_merge.py init|merge TABLE_URI FILE ENDPOINT USER PASSWORD  -> prints one JSON line"""
import json
import os
import sys
import time

import pyarrow as pa
import pyarrow.json as pj
from deltalake import DeltaTable, write_deltalake

mode, uri, path, endpoint, user, password = sys.argv[1:7]
opts = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": user, "AWS_SECRET_ACCESS_KEY": password,
        "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
schema = pa.schema([("id", pa.int64()), ("seq", pa.int64()), ("amount", pa.int64()), ("status", pa.string()),
                    ("deleted", pa.bool_())])
t0 = time.time()
batch = pj.read_json(path, parse_options=pj.ParseOptions(explicit_schema=schema))
if mode == "init":
    write_deltalake(uri, batch.drop_columns(["deleted"]), mode="overwrite", storage_options=opts)
    result = {"rows": batch.num_rows}
else:
    dt = DeltaTable(uri, storage_options=opts)
    metrics = (dt.merge(batch, predicate="t.id = s.id", source_alias="s", target_alias="t")
               .when_matched_delete(predicate="s.deleted = true AND s.seq > t.seq")
               .when_matched_update(predicate="s.deleted = false AND s.seq > t.seq",
                                    updates={"seq": "s.seq", "amount": "s.amount", "status": "s.status"})
               .when_not_matched_insert(predicate="s.deleted = false",
                                        updates={"id": "s.id", "seq": "s.seq", "amount": "s.amount", "status": "s.status"})
               .execute())
    result = {"files_rewritten": metrics.get("num_target_files_removed"), "inserted": metrics.get("num_target_rows_inserted"),
              "updated": metrics.get("num_target_rows_updated"), "deleted": metrics.get("num_target_rows_deleted")}
result["elapsed_ms"] = (time.time() - t0) * 1000
print(json.dumps(result), flush=True)
os._exit(0)
