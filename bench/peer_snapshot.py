"""Peer: the same periodic full extract applied with Python deltalake, on the same Parquet parts, into its
own tables on MinIO, the two ways a Python job would do it:
  overwrite  write_deltalake(mode="overwrite") with the new snapshot (every row rewritten, every row in any
             change feed);
  merge      MERGE on the keys: update when any column differs, insert new keys, delete keys the snapshot
             lacks (`when_not_matched_by_source_delete`).
usage: peer_snapshot.py init URI PART...        -> one JSON line (write the first snapshot)
       peer_snapshot.py overwrite URI PART...   -> one JSON line (elapsed ms)
       peer_snapshot.py merge URI PART...       -> one JSON line (elapsed ms, rows updated/inserted/deleted)"""
import json
import os
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake

mode, uri, parts = sys.argv[1], sys.argv[2], sys.argv[3:]
opts = {"AWS_ENDPOINT_URL": os.environ["MINIO_ENDPOINT"], "AWS_ACCESS_KEY_ID": os.environ["MINIO_ROOT_USER"],
        "AWS_SECRET_ACCESS_KEY": os.environ["MINIO_ROOT_PASSWORD"], "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true"}
t0 = time.time()
snapshot = pa.concat_tables([pq.read_table(p) for p in parts])
out = {"rows": snapshot.num_rows}
if mode in ("init", "overwrite"):
    write_deltalake(uri, snapshot, mode="overwrite", storage_options=opts)
else:
    cols = [c for c in snapshot.column_names if c != "id"]
    differs = " OR ".join(f"NOT (s.{c} <=> t.{c})" for c in cols)
    m = (DeltaTable(uri, storage_options=opts).merge(snapshot, "t.id = s.id", source_alias="s", target_alias="t")
         .when_matched_update_all(predicate=differs)
         .when_not_matched_insert_all()
         .when_not_matched_by_source_delete()
         .execute())
    out.update({k: m.get(k) for k in ("num_target_rows_updated", "num_target_rows_inserted", "num_target_rows_deleted")})
out["elapsed_ms"] = (time.time() - t0) * 1000
print(json.dumps(out), flush=True)
