"""End-to-end latency benchmark (make bench-e2e): the release `lakehouse run` serves 10 tables on
LocalStack (landing bucket, S3 notifications, SQS) and MinIO (lake) while files are uploaded at a steady
rate. Per uploaded file (one S3 event) it records the time from the upload finishing to the bronze,
silver and gold commits that made its rows visible, read afterwards from the tables' Delta logs
(commitInfo timestamps and the lakehouse lineage: bronze sourceKeys, silver/gold upstreamVersions).
Writes bench/results/e2e.md.

Env: BENCH_TABLES (10), BENCH_SECONDS (180), BENCH_FILES_PER_S (2), BENCH_ROWS (200), LAKEHOUSE_CLI.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone

import boto3

TABLES = int(os.environ.get("BENCH_TABLES", "10"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "180"))
RATE = float(os.environ.get("BENCH_FILES_PER_S", "2"))
ROWS = int(os.environ.get("BENCH_ROWS", "200"))
BIN = os.environ.get("LAKEHOUSE_CLI") or os.path.join(os.environ["CARGO_TARGET_DIR"], "release", "lakehouse")
LS = os.environ.get("LOCALSTACK_ENDPOINT", "http://127.0.0.1:4566")
MINIO = os.environ.get("MINIO_ENDPOINT", "http://127.0.0.1:9000")
USER, PASSWORD = os.environ["MINIO_ROOT_USER"], os.environ["MINIO_ROOT_PASSWORD"]
HERE = os.path.dirname(os.path.abspath(__file__))
STATE = os.path.join(os.environ.get("LAKEHOUSE_STATE", "/tmp"), "bench-e2e")

run = f"e2e-{int(time.time())}"
ls_kw = dict(endpoint_url=LS, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
s3 = boto3.client("s3", **ls_kw)
sqs = boto3.client("sqs", **ls_kw)
lake = boto3.client("s3", endpoint_url=MINIO, region_name="us-east-1", aws_access_key_id=USER,
                    aws_secret_access_key=PASSWORD)
lake_bucket = os.environ.get("LAKE_BUCKET", "lake")
try:
    lake.create_bucket(Bucket=lake_bucket)
except Exception:
    pass

# Landing bucket → bronze queue (with DLQ), silver and gold queues.
landing = f"landing-{run}"
s3.create_bucket(Bucket=landing)
dlq = sqs.create_queue(QueueName=f"{run}-dlq")["QueueUrl"]
dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
queues = {}
for layer in ("bronze", "silver", "gold"):
    attrs = {"VisibilityTimeout": "60"}
    if layer == "bronze":
        attrs["RedrivePolicy"] = redrive
    queues[layer] = sqs.create_queue(QueueName=f"{run}-{layer}", Attributes=attrs)["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=queues["bronze"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
s3.put_bucket_notification_configuration(Bucket=landing, NotificationConfiguration={
    "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})

lake_uri = f"s3://{lake_bucket}/bench-e2e/{run}"
tables = [f"t{i:02d}" for i in range(TABLES)]
cfg = [f'''[landing]
uri = "s3://{landing}"
[landing.storage]
aws_endpoint_url = "{LS}"
aws_access_key_id = "test"
aws_secret_access_key = "test"
aws_region = "us-east-1"
aws_allow_http = "true"
[lake]
uri = "{lake_uri}"
[lake.storage]
aws_endpoint_url = "{MINIO}"
aws_access_key_id = "{USER}"
aws_secret_access_key = "{PASSWORD}"
aws_region = "us-east-1"
aws_allow_http = "true"
''']
for layer, url in queues.items():
    cfg.append(f'''[notify.{layer}]
queue_url = "{url}"
endpoint_url = "{LS}"
region = "us-east-1"
access_key_id = "test"
secret_access_key = "test"
''')
for t in tables:
    cfg.append(f'''[[table]]
name = "{t}"
format = "jsonl"
columns = ["id long not null", "grp long not null", "v long", "seq long not null", "deleted boolean"]
keys = ["id"]
sequence_by = "seq"
delete_column = "deleted"
batch_size = 10
batch_window_seconds = 0.5

[[gold]]
name = "{t}_by_grp"
sql = "SELECT grp, COUNT(*) AS n, SUM(v) AS total FROM {t} GROUP BY grp"
keys = ["grp"]
sources = ["{t}"]
batch_size = 10
batch_window_seconds = 0.5
''')
os.makedirs(STATE, exist_ok=True)
cfg_path = os.path.join(STATE, f"{run}.toml")
with open(cfg_path, "w") as f:
    f.write("\n".join(cfg))

log = open(os.path.join(STATE, f"{run}-runner.log"), "w")
runner = subprocess.Popen([BIN, "run", "--config", cfg_path, "--max-poll-seconds", "1"], stdout=log, stderr=log,
                          env={**os.environ, "RUST_LOG": "warn"})


def rss_kb(field):
    try:
        with open(f"/proc/{runner.pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


# Steady uploads, round-robin over the tables; each file updates random keys (10% deletes).
rng = random.Random(7)
uploaded = {}  # key -> (table, upload-done epoch ms)
seq = 0
start = time.time()
n = 0
while time.time() - start < SECONDS:
    due = start + n / RATE
    if due > time.time():
        time.sleep(due - time.time())
    t = tables[n % TABLES]
    lines = []
    for _ in range(ROWS):
        seq += 1
        lines.append(json.dumps({"id": rng.randrange(5000), "grp": rng.randrange(50), "v": rng.randrange(1000),
                                 "seq": seq, "deleted": rng.random() < 0.1}))
    key = f"{t}/part-{n:06d}.jsonl"
    s3.put_object(Bucket=landing, Key=key, Body=("\n".join(lines) + "\n").encode())
    uploaded[key] = (t, time.time() * 1000)
    n += 1
upload_s = time.time() - start


def commits(layer, name):
    """(version, timestamp ms, commitInfo) of every commit of a table's Delta log."""
    prefix = f"bench-e2e/{run}/{layer}/{name}/_delta_log/"
    out = []
    for page in lake.get_paginator("list_objects_v2").paginate(Bucket=lake_bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            k = o["Key"]
            if not k.endswith(".json"):
                continue
            body = lake.get_object(Bucket=lake_bucket, Key=k)["Body"].read().decode()
            for line in body.splitlines():
                a = json.loads(line)
                if "commitInfo" in a:
                    out.append((int(k.rsplit("/", 1)[1].split(".")[0]), a["commitInfo"]["timestamp"], a["commitInfo"]))
    return sorted(out)


def latencies():
    silver_ms, gold_ms, bronze_ms, missing = [], [], [], 0
    for t in tables:
        bronze = commits("bronze", t)
        silver = [(v, ts, ci.get("lakehouse.upstreamVersions", {}).get("bronze", {}).get("to"))
                  for v, ts, ci in commits("silver", t)]
        gold = [(v, ts, ci.get("lakehouse.upstreamVersions", {}).get(t, {}).get("to"))
                for v, ts, ci in commits("gold", f"{t}_by_grp")]
        key_bronze = {}
        for v, ts, ci in bronze:
            for k in ci.get("lakehouse.sourceKeys", []):
                key_bronze.setdefault(k, (v, ts))
        for key, (table, done) in uploaded.items():
            if table != t:
                continue
            if key not in key_bronze:
                missing += 1
                continue
            bv, bts = key_bronze[key]
            s = next(((v, ts) for v, ts, to in silver if to is not None and to >= bv), None)
            if s is None:
                missing += 1
                continue
            g = next((ts for v, ts, to in gold if to is not None and to >= s[0]), None)
            if g is None:
                missing += 1
                continue
            bronze_ms.append(bts - done)
            silver_ms.append(s[1] - done)
            gold_ms.append(g - done)
    return bronze_ms, silver_ms, gold_ms, missing


# Drain: wait until every upload is visible in gold (or give up after 300 s).
peak = 0
deadline = time.time() + 300
while True:
    peak = max(peak, rss_kb("VmHWM:"))
    b, s_, g, missing = latencies()
    if missing == 0 or time.time() > deadline:
        break
    time.sleep(3)
peak = max(peak, rss_kb("VmHWM:"))
runner.send_signal(signal.SIGTERM)
runner.wait(timeout=60)
dlq_left = int(sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
               ["Attributes"]["ApproximateNumberOfMessages"])


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


rows = [("bronze", b), ("silver", s_), ("gold", g)]
table = "| visible in | files | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n"
for name, xs in rows:
    table += f"| {name} | {len(xs)} | {pct(xs, 50):.0f} | {pct(xs, 95):.0f} | {pct(xs, 99):.0f} | {max(xs) if xs else float('nan'):.0f} |\n"
now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
report = f"""# End-to-end latency ({now}, {os.cpu_count()} cores)

`lakehouse run` ({os.path.basename(os.path.dirname(BIN))} build) on LocalStack (landing bucket, S3 notifications, SQS) and MinIO (lake): {TABLES} tables
(JSONL upserts with 10% deletes), one gold view per table (group-by over silver), trigger windows 10 messages /
0.5 s for every table and view. {n} files of {ROWS} rows uploaded at {RATE:g} files/s for {upload_s:.0f} s
({n * ROWS / upload_s:.0f} rows/s offered). Latency: upload finished → the commit that made the file's rows
visible (commitInfo timestamps, same clock).

{table}
Files not visible in gold when measured: {missing}. Messages in the DLQ: {dlq_left}. Runner peak RSS:
{peak / 1024:.0f} MB.

Reproduce: `make bench-e2e` (BENCH_TABLES, BENCH_SECONDS, BENCH_FILES_PER_S, BENCH_ROWS).
"""
os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
with open(os.path.join(HERE, "results", "e2e.md"), "w") as f:
    f.write(report)
print(report)
if missing:
    sys.exit(f"{missing} uploaded files never became visible in gold; runner log: {log.name}")
