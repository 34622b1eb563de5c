"""Peer: the reference architecture, Spark Structured Streaming + Delta Lake on local[2], doing the same CDC
merge as bench/peer_merge.py (latest row per key in the micro-batch; update or delete only when the incoming
seq is newer; insert new ids; deleted=true deletes) from the same landing JSONL files into its own Delta
table on MinIO, in `foreachBatch`.

usage: peer_spark.py init TABLE_URI FILE...
           the base table written by Spark from local JSONL files (batch, not streaming); one JSON line
       peer_spark.py stream TABLE_URI SOURCE_URI CHECKPOINT_URI FILE...
           a session, then a streaming query over the directory SOURCE_URI (s3://, read as s3a://) with its
           checkpoint at CHECKPOINT_URI; each FILE is uploaded to SOURCE_URI in turn and its micro-batch
           awaited. One JSON line per file, then a summary line {"summary": true, ...}.

Per file: `elapsed_ms` = the micro-batch's triggerExecution (listing the source, reading the file, the
foreachBatch MERGE, the offset and commit logs), `merge_ms` = the foreachBatch function alone, `latency_ms` =
upload to the batch's commit (includes waiting for the trigger); MERGE metrics from the Delta history (read
after the batch, not timed). Summary: session start s, query start s, first micro-batch ms, the JVM's peak
RSS (VmHWM of the JVM the driver launched) and the Python driver's.

Env: MINIO_ENDPOINT, MINIO_ROOT_USER, MINIO_ROOT_PASSWORD; PEER_SPARK_TRIGGER = "processing" (default: one
long-running query, processing-time trigger of PEER_SPARK_INTERVAL, default "1 second", as the always-on
cluster) or "availableNow" (one availableNow run per file, resumed from the checkpoint, as a scheduled job);
PEER_SPARK_CORES (2), PEER_SPARK_DRIVER_MEMORY (2g), PEER_SPARK_PARTITIONS (4: shuffle partitions and
Delta's snapshot partitions; the defaults 200 and 50 are for clusters and cost seconds per step on 2 cores).
"""
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import spark_env  # noqa: E402

ENV = os.environ
SCHEMA = "id long, seq long, amount long, status string, deleted boolean"
PARTITIONS = ENV.get("PEER_SPARK_PARTITIONS", "4")
TIMEOUT_S = float(ENV.get("PEER_SPARK_BATCH_TIMEOUT", "900"))


def out(obj):
    print(json.dumps(obj), flush=True)


def start():
    return spark_env.session(
        "peer-spark", cores=int(ENV.get("PEER_SPARK_CORES", "2")),
        **{"spark.driver.memory": ENV.get("PEER_SPARK_DRIVER_MEMORY", "2g"),
           "spark.sql.shuffle.partitions": PARTITIONS,
           "spark.databricks.delta.snapshotPartitions": PARTITIONS,
           "spark.ui.showConsoleProgress": "false",
           "spark.sql.streaming.stopTimeout": "60s"})


def s3_client():
    import boto3
    return boto3.client("s3", endpoint_url=ENV["MINIO_ENDPOINT"], region_name="us-east-1",
                        aws_access_key_id=ENV["MINIO_ROOT_USER"], aws_secret_access_key=ENV["MINIO_ROOT_PASSWORD"])


def split(uri):
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key.rstrip("/")


def progress_dict(p):
    if p is None:
        return None
    if isinstance(p, dict):
        return p
    return json.loads(p.json)


def finish(spark, extra):
    pid = spark_env.jvm_pid(spark)
    jvm_peak = spark_env.rss_mb(pid) if pid else None
    py_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out({"summary": True, **extra, "jvm_peak_rss_mb": jvm_peak, "python_peak_rss_mb": py_peak,
         "versions": spark_env.versions(spark)})
    proc = getattr(spark.sparkContext._gateway, "proc", None)
    try:
        spark.stop()
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except Exception:
                proc.kill()
    sys.stdout.flush()
    os._exit(0)


def init(uri, paths):
    spark, session_s = start()
    t0 = time.time()
    df = spark.read.schema(SCHEMA).json(["file://" + os.path.abspath(p) for p in paths]).drop("deleted")
    df.write.format("delta").mode("overwrite").save(spark_env.s3a(uri))
    rows = spark.read.format("delta").load(spark_env.s3a(uri)).count()
    out({"rows": rows, "elapsed_ms": (time.time() - t0) * 1000, "session_s": session_s})
    finish(spark, {"session_s": session_s})


def merge_history(spark, table_uri):
    """The last commit's operation and metrics (Delta's MERGE operationMetrics)."""
    from delta.tables import DeltaTable
    h = DeltaTable.forPath(spark, table_uri).history(1).select("version", "operation", "operationMetrics").collect()[0]
    m = {k: int(v) for k, v in (h["operationMetrics"] or {}).items() if v is not None and v.lstrip("-").isdigit()}
    return {"version": h["version"], "operation": h["operation"],
            "files_rewritten": m.get("numTargetFilesRemoved"), "files_added": m.get("numTargetFilesAdded"),
            "bytes_rewritten": m.get("numTargetBytesRemoved"), "inserted": m.get("numTargetRowsInserted"),
            "updated": m.get("numTargetRowsUpdated"), "deleted": m.get("numTargetRowsDeleted"),
            "copied": m.get("numTargetRowsCopied"), "spark_execution_ms": m.get("executionTimeMs")}


def stream(table_uri, source_uri, checkpoint_uri, paths):
    spark, session_s = start()
    from delta.tables import DeltaTable
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    table = spark_env.s3a(table_uri)
    merges = {}  # batch id -> foreachBatch (start, end)

    def merge(df, batch_id):
        t0 = time.time()
        w = Window.partitionBy("id").orderBy(F.col("seq").desc(), F.col("_row").desc())
        latest = (df.withColumn("_row", F.monotonically_increasing_id())
                  .withColumn("_n", F.row_number().over(w)).filter("_n = 1").drop("_n", "_row"))
        (DeltaTable.forPath(spark, table).alias("t").merge(latest.alias("s"), "t.id = s.id")
         .whenMatchedDelete(condition="s.deleted = true AND s.seq > t.seq")
         .whenMatchedUpdate(condition="s.deleted = false AND s.seq > t.seq",
                            set={"seq": "s.seq", "amount": "s.amount", "status": "s.status"})
         .whenNotMatchedInsert(condition="s.deleted = false",
                               values={"id": "s.id", "seq": "s.seq", "amount": "s.amount", "status": "s.status"})
         .execute())
        merges[batch_id] = (t0, time.time())

    available_now = ENV.get("PEER_SPARK_TRIGGER", "processing") == "availableNow"
    interval = ENV.get("PEER_SPARK_INTERVAL", "1 second")
    source = spark_env.s3a(source_uri).rstrip("/") + "/"

    def start_query():
        reader = (spark.readStream.schema(SCHEMA).option("maxFilesPerTrigger", 1).json(source)
                  .writeStream.foreachBatch(merge).option("checkpointLocation", spark_env.s3a(checkpoint_uri)))
        reader = reader.trigger(availableNow=True) if available_now else reader.trigger(processingTime=interval)
        return reader.start()

    s3 = s3_client()
    bucket, prefix = split(source_uri)
    s3.put_object(Bucket=bucket, Key=prefix + "/", Body=b"")  # a directory marker: the source must exist
    query = None
    query_start_s = None
    if not available_now:
        t0 = time.time()
        query = start_query()
        query_start_s = time.time() - t0
    seen = set()
    for p in (query.recentProgress if query else []):
        d = progress_dict(p)
        if d["numInputRows"] > 0:
            seen.add(d["batchId"])
    first_batch_ms = None
    batches = []
    for i, path in enumerate(paths):
        t_upload = time.time()
        s3.upload_file(path, bucket, f"{prefix}/{os.path.basename(path)}")
        prog = None
        if available_now:
            t0 = time.time()
            query = start_query()
            query.awaitTermination(TIMEOUT_S)
            if query.exception() is not None:
                sys.exit(f"streaming query failed: {query.exception()}")
            run_s = time.time() - t0
            for p in query.recentProgress:
                d = progress_dict(p)
                if d["numInputRows"] > 0 and d["batchId"] not in seen:
                    prog = d
                    seen.add(d["batchId"])
            if prog is None:
                sys.exit(f"availableNow run saw no new rows for {path}")
            if query_start_s is None:  # the first run's start and stop, without its micro-batch
                query_start_s = run_s - prog["durationMs"]["triggerExecution"] / 1000
        else:
            deadline = time.time() + TIMEOUT_S
            while prog is None:
                if not query.isActive:
                    sys.exit(f"streaming query stopped: {query.exception()}")
                for p in query.recentProgress:
                    d = progress_dict(p)
                    if d["batchId"] not in seen and d["numInputRows"] > 0:
                        prog = d
                        seen.add(d["batchId"])
                        break
                if prog is None:
                    if time.time() > deadline:
                        sys.exit(f"no micro-batch for {path} within {TIMEOUT_S:.0f} s")
                    time.sleep(0.05)
        done = time.time()
        dur = prog.get("durationMs", {})
        m0, m1 = merges.get(prog["batchId"], (None, None))
        rec = {"file": os.path.basename(path), "batch_id": prog["batchId"], "rows": prog["numInputRows"],
               "elapsed_ms": dur.get("triggerExecution"), "add_batch_ms": dur.get("addBatch"),
               "merge_ms": (m1 - m0) * 1000 if m0 else None, "latency_ms": (done - t_upload) * 1000,
               "durations": dur, **merge_history(spark, table)}
        if i == 0:
            first_batch_ms = rec["elapsed_ms"]
        batches.append(rec)
        out(rec)
    if query is not None and query.isActive:
        query.stop()
    steady = [b["elapsed_ms"] for b in batches[1:]]
    finish(spark, {"session_s": session_s, "query_start_s": query_start_s, "first_batch_ms": first_batch_ms,
                   "steady_ms": steady, "trigger": "availableNow" if available_now else f"processingTime {interval}",
                   "partitions": int(PARTITIONS)})


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("init", "stream"):
        sys.exit(__doc__)
    if sys.argv[1] == "init":
        init(sys.argv[2], sys.argv[3:])
    else:
        if len(sys.argv) < 6:
            sys.exit(__doc__)
        stream(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])


if __name__ == "__main__":
    main()
