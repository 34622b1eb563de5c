"""Peer: the same CDC merge with Python deltalake (MERGE on id; update/delete only when the incoming seq
is newer; insert new ids), on the same files, into its own copy of the silver table on MinIO, on the
table's natural layout (write_deltalake defaults).
usage: peer_merge.py init TABLE_URI FILE...    -> prints one JSON line
       peer_merge.py merge TABLE_URI FILE...   -> one JSON line per file: its MERGE in this process, the
                                                 table loaded for the first and brought up to date after
                                                 (step ms, then files and bytes rewritten, not timed)"""
import json
import os
import sys
import time

import pyarrow as pa
import pyarrow.json as pj
from deltalake import DeltaTable, write_deltalake

mode, uri, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
opts = {"AWS_ENDPOINT_URL": os.environ["MINIO_ENDPOINT"], "AWS_ACCESS_KEY_ID": os.environ["MINIO_ROOT_USER"],
        "AWS_SECRET_ACCESS_KEY": os.environ["MINIO_ROOT_PASSWORD"], "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true"}
schema = pa.schema([("id", pa.int64()), ("seq", pa.int64()), ("amount", pa.int64()), ("status", pa.string()),
                    ("deleted", pa.bool_())])


def read(path):
    return pj.read_json(path, parse_options=pj.ParseOptions(explicit_schema=schema))


def files(dt):
    actions = dt.get_add_actions(flatten=True)
    return dict(zip(actions.column("path").to_pylist(), actions.column("size_bytes").to_pylist()))


t0 = time.time()
if mode == "init":
    table = pa.concat_tables([read(p) for p in paths]).drop_columns(["deleted"])
    write_deltalake(uri, table, mode="overwrite", storage_options=opts)
    result = {"rows": table.num_rows, "elapsed_ms": (time.time() - t0) * 1000}
    print(json.dumps(result), flush=True)
else:
    dt = None
    for path in paths:
        t0 = time.time()
        batch = read(path)
        if dt is None:
            dt = DeltaTable(uri, storage_options=opts)
        else:
            dt.update_incremental()
        metrics = (dt.merge(batch, predicate="t.id = s.id", source_alias="s", target_alias="t")
                   .when_matched_delete(predicate="s.deleted = true AND s.seq > t.seq")
                   .when_matched_update(predicate="s.deleted = false AND s.seq > t.seq",
                                        updates={"seq": "s.seq", "amount": "s.amount", "status": "s.status"})
                   .when_not_matched_insert(predicate="s.deleted = false",
                                            updates={"id": "s.id", "seq": "s.seq", "amount": "s.amount",
                                                     "status": "s.status"})
                   .execute())
        elapsed = (time.time() - t0) * 1000
        # Outside the timed step: what the MERGE rewrote, from the file lists before and after.
        after = DeltaTable(uri, storage_options=opts)
        prev = DeltaTable(uri, storage_options=opts, version=after.version() - 1)
        now = files(after)
        gone = {p: s for p, s in files(prev).items() if p not in now}
        print(json.dumps({"elapsed_ms": elapsed, "files_rewritten": metrics.get("num_target_files_removed"),
                          "files_scanned": metrics.get("num_target_files_scanned"),
                          "bytes_rewritten": sum(gone.values()), "inserted": metrics.get("num_target_rows_inserted"),
                          "updated": metrics.get("num_target_rows_updated"),
                          "deleted": metrics.get("num_target_rows_deleted"), "files": len(now)}), flush=True)

os._exit(0)
