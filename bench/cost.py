"""Cost report (make bench-cost): what the serverless deployment would cost on AWS per table per month, next
to the always-on Spark Structured Streaming cluster it replaces. Writes bench/results/cost.{md,json,png} and
the raw measurement, bench/results/cost-measured.json. About 20 min with the release build (40 with debug) on this 2-core
machine under load (mostly the 1-minute runs: 180 steps per mode); --hours / --measure-freshness shorten it.

1. Measure (unless --report-only). One table (JSONL upserts with 10% deletes, `grp` group-by gold view) on
   a MinIO of this script's own (127.0.0.1:$COST_MINIO_PORT, default 9600; reused when one answers there),
   every request of the product counted by API through a counting proxy (bench/count_proxy.py, port +2),
   cross-checked against MinIO's own per-API counters. The seed's shape: one landing file of --rows rows per
   table per minute; at freshness F minutes each layer runs one step per table per F minutes (bronze ingests
   the F files of the window, silver and gold follow each commit), maintenance runs hourly (the SAM
   template's `rate(60 minutes)`). Simulated hours run back to back (time compressed); the first
   --warmup-hours are not counted. Two modes:
     cold  every step a fresh `lakehouse ingest | silver | gold` process, as on a new Lambda container
           (the upper bound: no snapshot survives between invocations);
     warm  one `lakehouse run` (the local runner: the Lambda handlers with warm snapshots, as in a reused
           container) fed through an in-memory SQS (bench/mini_sqs.py, port +3; never LocalStack), the
           bench sending the S3 event messages itself. Requests are split per layer at the moments the
           handlers announce their commits to the next queue.
   In both, maintenance is a fresh `lakehouse maintain` per hour for the table and for its view.
2. Report: per step request counts by API and kind of object, step durations (cold: process wall time,
   init included as Lambda bills it for custom runtimes; warm: the runner's handler time) and memory (the
   SAM template's MemorySize, what Lambda bills), turned into a monthly bill per table from the published
   prices below, at 1- and 15-minute freshness (5 minutes as a sensitivity: the ESM's 300 s window cap).

Inputs can be overridden: --durations FILE (a cost JSON from another build, or bench/results/e2e.json from
bench_e2e.py: warm step durations per layer), --duration-ms layer=ms, --memory-mb layer=MB, Spark cluster
flags. Env: LAKEHOUSE_CLI (default: the release binary), COST_MINIO_PORT, LAKEHOUSE_STATE, COST_REQUEST_LOG
(a file: every counted step's requests, one JSON line per step).

    python bench/cost.py                                   # measure, then report
    python bench/cost.py --measure-only --out F.json       # only measure (e.g. with another build)
    python bench/cost.py --report-only --measured A.json --durations B.json
"""
import argparse
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from count_proxy import CountingProxy, classify  # noqa: E402
from mini_sqs import MiniSqs  # noqa: E402

ENV = os.environ
RESULTS = os.path.join(HERE, "results")
LAYERS = ("bronze", "silver", "gold")
HOURS_PER_MONTH = 730  # AWS's monthly hours for pricing
LANDING_BUCKET = "cost-landing"
LAKE_BUCKET = "cost-lake"
# What the functions log in Lambda (the SAM template's RUST_LOG); with AWS_LAMBDA_FUNCTION_NAME set the
# binary logs JSON lines as on Lambda, so the bytes a step writes to stderr are its CloudWatch log bytes.
LAMBDA_LOG = "warn,buoyant_kernel=off,lakehouse=info"

# Published prices (us-east-1, on-demand, list prices; free tiers ignored: they are per account).
PRICES = {
    "lambda_gb_s": (0.0000133334, "Lambda arm64 duration, per GB-second (first 7.5 billion GB-s/month)",
                    "https://aws.amazon.com/lambda/pricing/ (DESIGN.md §8)"),
    "lambda_request": (0.20 / 1e6, "Lambda requests, per request ($0.20 per 1M)",
                       "https://aws.amazon.com/lambda/pricing/ (DESIGN.md §8)"),
    "s3_put": (0.005 / 1000, "S3 Standard PUT, COPY, POST, LIST requests ($0.005 per 1,000)",
               "https://aws.amazon.com/s3/pricing/ (DESIGN.md §8)"),
    "s3_get": (0.0004 / 1000, "S3 Standard GET, SELECT and all other requests, HEAD included ($0.0004 per 1,000)",
               "https://aws.amazon.com/s3/pricing/ (DESIGN.md §8)"),
    "sqs_request": (0.40 / 1e6, "SQS standard queue requests ($0.40 per 1M; a batch of up to 10 messages is one "
                    "request)", "https://aws.amazon.com/sqs/pricing/ (DESIGN.md §8)"),
    "sqs_fifo_request": (0.50 / 1e6, "SQS FIFO queue requests ($0.50 per 1M): the silver and gold queues",
                         "https://aws.amazon.com/sqs/pricing/"),
    "scheduler_run": (1.00 / 1e6, "EventBridge Scheduler invocations ($1.00 per 1M after 14M free): windows above "
                      "300 s", "https://aws.amazon.com/eventbridge/pricing/"),
    "cw_logs_gb": (0.50, "CloudWatch Logs ingestion (Standard), per GB", "https://aws.amazon.com/cloudwatch/pricing/"),
}
# The always-on cluster it replaces (defaults; every one a flag).
SPARK = {
    "node": ("m5.xlarge", "node type (4 vCPU, 16 GiB)", "https://aws.amazon.com/ec2/instance-types/m5/"),
    "nodes": (3, "nodes: 1 primary (driver) + 2 core (workers), running 24/7 for all 70 tables",
              "assumption: the smallest EMR cluster with a separate driver that can hold 70 tables x 3 "
              "streaming queries"),
    "ec2_hourly": (0.192, "EC2 on-demand price per node-hour, m5.xlarge Linux us-east-1",
                   "https://aws.amazon.com/ec2/pricing/on-demand/"),
    "emr_hourly": (0.048, "EMR fee per node-hour, m5.xlarge", "https://aws.amazon.com/emr/pricing/"),
    "ebs_gb": (64, "EBS gp3 GiB per node (root + shuffle/checkpoint scratch)", "assumption"),
    "ebs_gb_month": (0.08, "EBS gp3 per GiB-month", "https://aws.amazon.com/ebs/pricing/"),
}
# A second, deliberately minimal Spark figure for the sensitivity table: one m6g.xlarge on plain EC2.
SPARK_MIN = {"label": "1 x m6g.xlarge on EC2 (no EMR, no separate driver)", "nodes": 1, "ec2_hourly": 0.154,
             "emr_hourly": 0.0, "ebs_gb": 64,
             "source": "https://aws.amazon.com/ec2/pricing/on-demand/ (m6g.xlarge Linux us-east-1 $0.154/h)"}
# SQS: Lambda's pollers long-poll each event source queue even when idle; AWS does not publish how many.
# Assumed: 5 pollers x one 20 s long poll each = 15 ReceiveMessage per minute per queue (3 queues, shared
# by all tables). Sources: https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html ("Lambda
# begins ... five batches at a time"), https://github.com/brefphp/bref/discussions/1760 (idle polling is
# billed). Per message (conservative, no batching benefit): 1 SendMessage (the S3 notification or the
# handler's "committed" message), 1 ReceiveMessage, 1 DeleteMessage(Batch).
SQS_IDLE_RECEIVES_PER_MIN = 15
SQS_QUEUES = 3
SQS_REQUESTS_PER_MESSAGE = 3
# Lambda writes START, END and REPORT lines per invocation besides the function's own (~340 bytes).
LAMBDA_PLATFORM_LOG_BYTES = 340
# Steady-state log sizes for listings without start-after (log cleanup lists the whole _delta_log):
# delta.logRetentionDuration 30 days (Delta's default) of commits, plus the hourly checkpoint and a
# compaction commit; change data files are deleted once older than the vacuum retention (7 days) AND
# their commit has left the log (shared/src/maintain/expire.rs), so they live as long as the log.
LOG_RETENTION_DAYS = 30
CDF_RETENTION_DAYS = 30
LIST_PAGE = 1000
# The mixed pipeline of the per-table windows issue, one row per trigger window class as the AWS template
# deploys it (lakehouse aws-template): (class, tables, batch_window_seconds, landing objects per hour per table).
# A hot table gets an object every second, the others one a minute (the measured runs' rate); every table
# has one gold view following it. Above 300 s bronze waits a fifteenth of the window (at most 300 s) and a
# schedule runs silver (and gold) once per window.
MIXED = [("hot, 1 s window", 5, 1, 3600), ("ordinary, 5-min window", 60, 300, 60),
         ("finance, daily window", 5, 86400, 60)]
ESM_MAX_WINDOW_S = 300


def scheduled_bronze_window_s(window):
    """Bronze's window for a table whose window a schedule keeps (shared/src/deploy/mod.rs)."""
    return min(window // 15, ESM_MAX_WINDOW_S)
# Share of the feed's rows that are deletes (COST_DELETE_FRACTION; 0: an upsert-only table).
DELETE_FRACTION = float(ENV.get("COST_DELETE_FRACTION", "0.1"))
LOADS = []  # the machine's 1-minute load average, sampled every simulated hour (it is shared)


def log(msg):
    print(f"[cost] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------------------

def template_facts(path=os.path.join(ROOT, "infra", "aws", "template.yaml")):
    """MemorySize per function and the maintenance schedule's default, read from the SAM template."""
    names = {"BronzeFunction": "bronze", "SilverFunction": "silver", "GoldFunction": "gold",
             "MaintainFunction": "maintain"}
    memory, schedule, cur = {}, None, None
    for line in open(path):
        m = re.match(r"^  (\w+):\s*$", line)
        if m:
            cur = m.group(1)
        m = re.match(r"^\s+MemorySize:\s*(\d+)", line)
        if m and cur in names:
            memory[names[cur]] = int(m.group(1))
        if cur == "MaintenanceSchedule":
            m = re.match(r"^\s+Default:\s*(\S.*)$", line)
            if m and schedule is None:
                schedule = m.group(1).strip()
    return memory, schedule


class Lab:
    """MinIO (own or reused), the counting proxy and the in-memory SQS for one measurement."""

    def __init__(self, args):
        self.args = args
        self.port = args.minio_port
        self.minio_url = f"http://127.0.0.1:{self.port}"
        self.proxy_url = f"http://127.0.0.1:{self.port + 2}"
        self.sqs_url = f"http://127.0.0.1:{self.port + 3}"
        self.user, self.password = ENV["MINIO_ROOT_USER"], ENV["MINIO_ROOT_PASSWORD"]
        self.work = os.path.join(ENV.get("LAKEHOUSE_STATE", "/tmp"), "cost")
        os.makedirs(self.work, exist_ok=True)
        self.minio = None
        self.direct = 0  # requests this script sends to MinIO itself (landing uploads), not via the proxy
        self.proxy = None
        self.sqs = None

    def _alive(self):
        try:
            with urllib.request.urlopen(f"{self.minio_url}/minio/health/live", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def start(self):
        import boto3
        if self._alive():
            log(f"reusing the MinIO on {self.minio_url}")
        else:
            exe = os.path.join(ENV.get("LAKEHOUSE_BIN", os.path.expanduser("~/.cache/lakehouse/bin")), "minio")
            data = os.path.join(self.work, "minio")
            os.makedirs(data, exist_ok=True)
            self.minio_log = open(os.path.join(self.work, "minio.log"), "w")
            self.minio = subprocess.Popen(
                [exe, "server", data, "--address", f"127.0.0.1:{self.port}",
                 "--console-address", f"127.0.0.1:{self.port + 1}"],
                stdout=self.minio_log, stderr=self.minio_log,
                env={**ENV, "MINIO_PROMETHEUS_AUTH_TYPE": "public"})
            for _ in range(100):
                if self._alive():
                    break
                time.sleep(0.2)
            else:
                sys.exit(f"MinIO did not start on {self.minio_url}; see {self.minio_log.name}")
            log(f"started MinIO (pid {self.minio.pid}) on {self.minio_url}")
        self.s3 = boto3.client("s3", endpoint_url=self.minio_url, region_name="us-east-1",
                               aws_access_key_id=self.user, aws_secret_access_key=self.password)
        for b in (LANDING_BUCKET, LAKE_BUCKET):
            try:
                self.s3.create_bucket(Bucket=b)
            except Exception:
                pass
        self.proxy = CountingProxy(self.port + 2, f"127.0.0.1:{self.port}").start()
        self.sqs = MiniSqs(self.port + 3).start()
        return self

    def stop(self):
        if self.proxy:
            self.proxy.stop()
        if self.sqs:
            self.sqs.stop()
        if self.minio:
            self.minio.send_signal(signal.SIGTERM)
            try:
                self.minio.wait(30)
            except subprocess.TimeoutExpired:
                self.minio.kill()
            log("stopped the MinIO this script started")

    def minio_requests(self):
        """MinIO's own count of S3 API calls (all APIs), from its Prometheus metrics."""
        try:
            with urllib.request.urlopen(f"{self.minio_url}/minio/v2/metrics/cluster", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("minio_s3_requests_total{"))

    def config(self, run, queues=None, window=None):
        storage = f'''aws_endpoint_url = "{self.proxy_url}"
aws_access_key_id = "{self.user}"
aws_secret_access_key = "{self.password}"
aws_region = "us-east-1"
aws_allow_http = "true"
'''
        parts = [f'''[landing]
uri = "s3://{LANDING_BUCKET}/{run}"
[landing.storage]
{storage}
[lake]
uri = "s3://{LAKE_BUCKET}/{run}"
[lake.storage]
{storage}
[maintenance]
# The bench runs maintenance itself (a `lakehouse maintain` per simulated hour), never the runner's timer.
every_minutes = 10080
''']
        for layer, url in (queues or {}).items():
            parts.append(f'''[notify.{layer}]
queue_url = "{url}"
endpoint_url = "{self.sqs_url}"
region = "us-east-1"
access_key_id = "test"
secret_access_key = "test"
''')
        trig = "" if window is None else f"batch_size = {window[0]}\nbatch_window_seconds = {window[1]}\n"
        parts.append(f'''[[table]]
name = "t00"
format = "jsonl"
columns = ["id long not null", "grp long not null", "v long", "seq long not null", "deleted boolean"]
keys = ["id"]
sequence_by = "seq"
delete_column = "deleted"
{trig}
[[gold]]
name = "t00_by_grp"
sql = "SELECT grp, COUNT(*) AS n, SUM(v) AS total FROM t00 GROUP BY grp"
keys = ["grp"]
sources = ["t00"]
{trig}''')
        path = os.path.join(self.work, f"{run}.toml")
        with open(path, "w") as f:
            f.write("\n".join(parts))
        return path


class Feed:
    """The landing files of one table: one per simulated minute, uploaded straight to MinIO (the producer's
    PUT is not the pipeline's request and is paid in either architecture)."""

    def __init__(self, lab, run, rows, keys=5000):
        self.lab, self.run, self.rows, self.keys = lab, run, rows, keys
        self.rng = random.Random(run)
        self.seq = 0
        self.n = 0

    def upload(self, count):
        keys = []
        for _ in range(count):
            lines = []
            for _ in range(self.rows):
                self.seq += 1
                lines.append(json.dumps({"id": self.rng.randrange(self.keys), "grp": self.rng.randrange(50),
                                         "v": self.rng.randrange(1000), "seq": self.seq,
                                         "deleted": self.rng.random() < DELETE_FRACTION}))
            key = f"{self.run}/t00/part-{self.n:06d}.jsonl"
            self.n += 1
            self.lab.s3.put_object(Bucket=LANDING_BUCKET, Key=key, Body=("\n".join(lines) + "\n").encode())
            self.lab.direct += 1
            keys.append(key)
        return keys


def s3_record(key):
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "eventName": "ObjectCreated:Put",
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "bronze",
                   "bucket": {"name": LANDING_BUCKET, "arn": f"arn:aws:s3:::{LANDING_BUCKET}"},
                   "object": {"key": key, "sequencer": "00"}}}


def sqs_event(keys):
    """The bronze function's payload: an SQS batch, one S3 notification per message (as S3 sends them)."""
    return {"Records": [{"messageId": f"m-{i}", "receiptHandle": f"r-{i}", "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:bronze", "awsRegion": "us-east-1",
                         "attributes": {"ApproximateReceiveCount": "1"},
                         "body": json.dumps({"Records": [s3_record(k)]})} for i, k in enumerate(keys)]}


def summarize(reqs):
    if ENV.get("COST_REQUEST_LOG"):  # every request of every counted step, one JSON line per step (debugging)
        with open(ENV["COST_REQUEST_LOG"], "a") as f:
            f.write(json.dumps([[r["method"], r["path"], r["query"], r["status"]] for r in reqs]) + "\n")
    api, tier, kind, full = Counter(), Counter(), Counter(), []
    for r in reqs:
        a, t, layer, k = classify(r, LANDING_BUCKET)
        api[a] += 1
        tier[t] += 1
        kind[f"{layer}/{k}"] += 1
        # Listings of change data from its start read every page of a month of change files. Log listings from
        # the start do not: maintenance stops at the retention boundary (log cleanup) or at the oldest commit
        # (change-data expiry), one page of a month-old log as of the measured one.
        if a == "ListObjectsV2" and "start-after" not in r["query"] and k == "cdf":
            full.append(f"{layer}/cdf")
    return {"requests": len(reqs), "api": dict(api), "tier": dict(tier), "kind": dict(kind), "full_listings": full,
            "errors": sum(1 for r in reqs if r["status"] >= 400 and not (r["status"] == 404))}


def run_cli(lab, args, tag):
    """One CLI process as one Lambda invocation: wall ms, peak RSS MB, stdout JSON lines, log bytes."""
    out_p, err_p = os.path.join(lab.work, "step.out"), os.path.join(lab.work, "step.err")
    env = {**ENV, "RUST_LOG": LAMBDA_LOG, "AWS_LAMBDA_FUNCTION_NAME": f"cost-{tag}", "NO_COLOR": "1"}
    with open(out_p, "w") as fo, open(err_p, "w") as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen([lab.args.cli, *args], stdout=fo, stderr=fe, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        wall = (time.perf_counter() - t0) * 1000
        p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({p.returncode}):\n{open(err_p).read()[-3000:]}")
    lines = []
    for x in open(out_p):
        try:
            lines.append(json.loads(x))
        except ValueError:
            pass
    return {"wall_ms": wall, "rss_mb": usage.ru_maxrss / 1024, "out": lines, "log_bytes": os.path.getsize(err_p)}


def counted_step(lab, args, tag):
    mark = lab.proxy.mark()
    r = run_cli(lab, args, tag)
    reqs = lab.proxy.since(mark)
    rec = summarize(reqs)
    elapsed = [o.get("elapsed_ms") for o in r["out"] if isinstance(o, dict) and "elapsed_ms" in o]
    rec.update(wall_ms=r["wall_ms"], rss_mb=r["rss_mb"], log_bytes=r["log_bytes"],
               elapsed_ms=sum(elapsed) if elapsed else None)
    return rec


def merge_recs(recs):
    """Several processes counted as one record (maintenance of the table and of its view)."""
    out = {"requests": 0, "api": Counter(), "tier": Counter(), "kind": Counter(), "full_listings": [], "errors": 0,
           "wall_ms": 0.0, "rss_mb": 0.0, "log_bytes": 0, "elapsed_ms": 0.0}
    for r in recs:
        out["requests"] += r["requests"]
        out["errors"] += r["errors"]
        for k in ("api", "tier", "kind"):
            out[k].update(r[k])
        out["full_listings"] += r["full_listings"]
        out["wall_ms"] += r["wall_ms"]
        out["rss_mb"] = max(out["rss_mb"], r["rss_mb"])
        out["log_bytes"] += r["log_bytes"]
        out["elapsed_ms"] += r.get("elapsed_ms") or 0
    for k in ("api", "tier", "kind"):
        out[k] = dict(out[k])
    return out


def end_hour(lab, cfg, steps, counted, label, h, hours, t0):
    """Closes a simulated hour: one maintenance run (counted after the warm-up) and a progress line."""
    m = maintain(lab, cfg)
    if counted:
        steps["maintain"].append(m)
    LOADS.append(os.getloadavg()[0])
    log(f"{label} min: simulated hour {h + 1}/{hours} done ({time.time() - t0:.0f} s, load {LOADS[-1]:.1f})")


def maintain(lab, cfg):
    return merge_recs([counted_step(lab, ["maintain", "--config", cfg, "--table", t], "maintain")
                       for t in ("t00", "t00_by_grp")])


def measure_cold(lab, freshness, hours, warmup, rows):
    run = f"cold-f{freshness}-{int(time.time())}"
    cfg = lab.config(run)
    feed = Feed(lab, run, rows)
    steps = {k: [] for k in (*LAYERS, "maintain")}
    ev = os.path.join(lab.work, "event.json")
    per_hour = 60 // freshness
    t0 = time.time()
    for h in range(hours):
        counted = h >= warmup
        for _ in range(per_hour):
            keys = feed.upload(freshness)
            with open(ev, "w") as f:
                json.dump(sqs_event(keys), f)
            recs = {
                "bronze": counted_step(lab, ["ingest", "--config", cfg, ev], "bronze"),
                "silver": counted_step(lab, ["silver", "--config", cfg, "--table", "t00"], "silver"),
                "gold": counted_step(lab, ["gold", "--config", cfg, "--view", "t00_by_grp"], "gold"),
            }
            if counted:
                for k, v in recs.items():
                    steps[k].append(v)
        end_hour(lab, cfg, steps, counted, f"cold F={freshness}", h, hours, t0)
    return {"mode": "cold", "freshness_min": freshness, "files_per_step": freshness, "steps_per_hour": per_hour,
            "hours_counted": hours - warmup, "rows_per_file": rows, "run": run, "steps": steps}


RUNNER_LINE = re.compile(r"runner: batch handled.*?layer=\"?(\w+)\"?.*?messages=(\d+).*?elapsed_ms=(\d+)")


def measure_warm(lab, freshness, hours, warmup, rows):
    run = f"warm-f{freshness}-{int(time.time())}"
    queues = {layer: lab.sqs.create(f"{run}-{layer}", {"VisibilityTimeout": "120"}) for layer in LAYERS}
    # One message per window carrying the window's F notifications, handled at once (batch 1, no wait):
    # the runner's bronze batch is then exactly the F files, and silver and gold follow each commit.
    cfg = lab.config(run, queues, window=(1, 0))
    feed = Feed(lab, run, rows)
    runner_log = open(os.path.join(lab.work, f"{run}-runner.log"), "w")
    runner = subprocess.Popen([lab.args.cli, "run", "--config", cfg, "--max-poll-seconds", "1"],
                              stdout=runner_log, stderr=runner_log,
                              env={**ENV, "RUST_LOG": "warn,buoyant_kernel=off,lakehouse::runner=info",
                                   "NO_COLOR": "1"})
    steps = {k: [] for k in (*LAYERS, "maintain")}
    per_hour = 60 // freshness
    name = {layer: f"{run}-{layer}" for layer in LAYERS}
    cycles = 0
    t0 = time.time()
    try:
        for h in range(hours):
            counted = h >= warmup
            for _ in range(per_hour):
                keys = feed.upload(freshness)
                mark = lab.proxy.mark()
                ev_mark = len(lab.sqs.events)
                lab.sqs._send(lab.sqs.queues[name["bronze"]], json.dumps({"Records": [s3_record(k) for k in keys]}))
                cycles += 1
                deadline = time.time() + 300
                while lab.sqs.messages[(name["gold"], "deleted")] < cycles:
                    if runner.poll() is not None or time.time() > deadline:
                        sys.exit(f"warm F={freshness}: the runner did not finish cycle {cycles}; see {runner_log.name}")
                    time.sleep(0.01)
                time.sleep(0.05)  # the gold handler's last response is in; nothing else is pending
                reqs = lab.proxy.since(mark)
                evs = lab.sqs.events[ev_mark:]
                to_silver = next((t for t, q, a in evs if q == name["silver"] and a == "sent"), None)
                to_gold = next((t for t, q, a in evs if q == name["gold"] and a == "sent"), None)
                if to_silver is None or to_gold is None:
                    sys.exit(f"warm F={freshness}: cycle {cycles} did not announce bronze and silver commits")
                if counted:
                    steps["bronze"].append(summarize([r for r in reqs if r["t0"] < to_silver]))
                    steps["silver"].append(summarize([r for r in reqs if to_silver <= r["t0"] < to_gold]))
                    steps["gold"].append(summarize([r for r in reqs if r["t0"] >= to_gold]))
            end_hour(lab, cfg, steps, counted, f"warm F={freshness}", h, hours, t0)
        peak = 0
        with open(f"/proc/{runner.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) / 1024
    finally:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(60)
        except subprocess.TimeoutExpired:
            runner.kill()
        runner_log.close()
    # The handlers' time per batch, from the runner's log; the counted cycles are the last ones.
    batches = {layer: [] for layer in LAYERS}
    for line in open(runner_log.name):
        m = RUNNER_LINE.search(re.sub(r"\x1b\[[0-9;]*m", "", line))
        if m and m.group(1) in batches:
            batches[m.group(1)].append(int(m.group(3)))
    n = len(steps["bronze"])
    for layer in LAYERS:
        ms = batches[layer][-n:] if len(batches[layer]) >= n else []
        if len(batches[layer]) != cycles:
            log(f"warm F={freshness}: {len(batches[layer])} {layer} batches in the runner log for {cycles} cycles")
        for rec, v in zip(steps[layer], ms):
            rec["elapsed_ms"] = v
            rec["wall_ms"] = v
    sends = {layer: lab.sqs.messages[(name[layer], "sent")] for layer in LAYERS}
    calls = {layer: {a: c for (q, a), c in lab.sqs.counts.items() if q == name[layer]} for layer in LAYERS}
    return {"mode": "warm", "freshness_min": freshness, "files_per_step": freshness, "steps_per_hour": per_hour,
            "hours_counted": hours - warmup, "rows_per_file": rows, "run": run, "steps": steps,
            "runner_peak_rss_mb": peak, "sqs_messages_sent": sends, "sqs_calls_by_runner": calls,
            "cycles": cycles}


def versions(cli):
    def sh(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=ROOT).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    st = os.stat(cli)
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM",
        "cli": cli, "cli_version": sh(cli, "--version"),
        "cli_build": "debug" if "/debug/" in cli else ("release" if "/release/" in cli else "?"),
        "cli_mtime": datetime.fromtimestamp(st.st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": sh("git", "log", "-1", "--format=%h %cd", "--date=iso"),
        "minio": f"MinIO {ENV.get('MINIO_VERSION', '?')} (Go module pseudo-version, infra/local/env.sh)",
        "python": platform.python_version(),
    }


def measure(args):
    lab = Lab(args).start()
    runs = {"cold": {}, "warm": {}}
    # MinIO's per-API counters (cached by MinIO for ~10 s) against the proxy's count over the whole run:
    # every request reaches MinIO through the proxy except this script's own landing uploads.
    time.sleep(11)
    check = {"minio_before": lab.minio_requests(), "proxy_before": lab.proxy.mark(), "direct_before": lab.direct}
    try:
        for f in args.measure_freshness:
            if "cold" in args.modes:
                runs["cold"][str(f)] = measure_cold(lab, f, args.hours, args.warmup_hours, args.rows)
            if "warm" in args.modes:
                runs["warm"][str(f)] = measure_warm(lab, f, args.hours, args.warmup_hours, args.rows)
        time.sleep(11)
        after = lab.minio_requests()
        if after is not None and check["minio_before"] is not None:
            check = {"proxy": lab.proxy.mark() - check["proxy_before"], "direct": lab.direct - check["direct_before"],
                     "minio": after - check["minio_before"]}
        else:
            check = {}
    finally:
        lab.stop()
    meta = dict(args.cli_meta)  # taken before the run: the binary's path, build and mtime as measured
    meta.update(command=" ".join(sys.argv), rows_per_file=args.rows, hours=args.hours,
                warmup_hours=args.warmup_hours, minio_check=check, lambda_log=LAMBDA_LOG,
                load_avg={"mean": mean(LOADS, None), "max": max(LOADS, default=None), "cores": os.cpu_count()})
    return {"meta": meta, "runs": runs}


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------

def mean(xs, default=0.0):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else default


def per_step(recs):
    """Mean requests per step by tier, API and kind; mean duration, RSS and log bytes."""
    n = len(recs)
    if not n:
        return None
    api, kind = Counter(), Counter()
    for r in recs:
        api.update(r["api"])
        kind.update(r["kind"])
    return {
        "n": n,
        "put": sum(r["tier"].get("put", 0) for r in recs) / n,
        "get": sum(r["tier"].get("get", 0) for r in recs) / n,
        "free": sum(r["tier"].get("free", 0) for r in recs) / n,
        "api": {k: v / n for k, v in sorted(api.items())},
        "kind": {k: v / n for k, v in sorted(kind.items())},
        "wall_ms": mean([r.get("wall_ms") for r in recs]),
        "median_ms": statistics.median([r["wall_ms"] for r in recs if r.get("wall_ms") is not None] or [0]),
        "elapsed_ms": mean([r.get("elapsed_ms") for r in recs], None),
        "rss_mb": max([r.get("rss_mb") or 0 for r in recs]),
        "log_bytes": mean([r.get("log_bytes") for r in recs]),
        "full_listings": Counter(x for r in recs for x in r["full_listings"]),
    }


def load_durations(path):
    """{(mode, freshness or None, layer): (mean ms, source)} from a cost JSON or bench_e2e's e2e.json."""
    d = json.load(open(path))
    out = {}
    if "runs" in d:
        src = f"{os.path.basename(path)} ({d['meta'].get('cli_build')} build of {d['meta'].get('cli_mtime')})"
        for mode, runs in d["runs"].items():
            for f, run in runs.items():
                for layer in (*LAYERS, "maintain"):
                    s = per_step(run["steps"][layer])
                    if s:
                        out[(mode, int(f), layer)] = (s["wall_ms"], src, s.get("median_ms", s["wall_ms"]))
    elif "steps" in d:  # bench_e2e.py: the runner's handler time per batch (warm), all windows mixed
        src = f"{os.path.basename(path)} (bench_e2e, {d.get('meta', {}).get('cli_build', '?')} build, " \
              f"{d.get('tables', '?')} tables)"
        for layer in LAYERS:
            if layer in d["steps"] and d["steps"][layer].get("mean_ms") is not None:
                out[("warm", None, layer)] = (d["steps"][layer]["mean_ms"], src,
                                              d["steps"][layer].get("p50_ms") or d["steps"][layer]["mean_ms"])
    return out


def extra_list_pages(full, layer_steps_per_hour):
    """LIST requests a steady-state log adds to listings made without start-after: the measured run's logs
    held tens of objects (one page), a month-old table holds LOG_RETENTION_DAYS of commits."""
    extra = 0.0
    for what, n in full.items():
        layer, k = what.split("/")
        if k == "cdf":
            objects = CDF_RETENTION_DAYS * 24 * layer_steps_per_hour
        else:
            objects = LOG_RETENTION_DAYS * 24 * (layer_steps_per_hour + 2)
        extra += n * (math.ceil(objects / LIST_PAGE) - 1)
    return extra


def monthly(run, durations, memory, tables, mode, fresh, dur_override, steps_per_hour=None, log_bytes_of=None,
            median=False, layer_steps=None, arrivals_per_hour=60, announced=True, queues=SQS_QUEUES,
            scheduled_runs_per_hour=0.0):
    """Per table per month: requests, GB-s and dollars by component. `layer_steps` overrides steps per hour by
    layer (a window class); `announced` False: bronze does not announce (a schedule runs silver)."""
    p = {k: v[0] for k, v in PRICES.items()}
    sph = steps_per_hour or run["steps_per_hour"]
    layer_sph = {layer: sph for layer in LAYERS}
    layer_sph.update(layer_steps or {})
    maint_runs = HOURS_PER_MONTH  # rate(60 minutes)
    out = {"layers": {}, "sources": {}}
    put = get = gbs = invocations = log_bytes = lists = 0.0
    for layer in (*LAYERS, "maintain"):
        s = per_step(run["steps"][layer])
        n = maint_runs if layer == "maintain" else layer_sph[layer] * HOURS_PER_MONTH
        ms, src = (s["median_ms"] if median else s["wall_ms"]), f"measured here ({mode})"
        found = next((d[key] for d in durations for key in ((mode, fresh, layer), (mode, None, layer)) if key in d),
                     None)
        if found:
            ms, src = (found[2] if median else found[0]), found[1]
        if layer in dur_override:
            ms, src = dur_override[layer], "--duration-ms"
        cold_config_get = 1 if (mode == "cold" and layer != "maintain") else 0  # the pipeline file, at init
        lput, lget = s["put"] * n, (s["get"] + cold_config_get) * n
        llist = sum(v for k, v in s["api"].items() if k.startswith("List")) * n
        if s["full_listings"]:  # listings from the log's start: add a month-old log's pages (modelled)
            extra = extra_list_pages(Counter({k: v / s["n"] for k, v in s["full_listings"].items()}),
                                     layer_sph.get(layer, sph)) * n
            lput += extra
            llist += extra
        lists += llist
        lgbs = n * ms / 1000 * memory[layer] / 1024
        linv = n if layer != "maintain" else maint_runs / tables  # one maintenance invocation for all tables
        own_log = s["log_bytes"] or (log_bytes_of or {}).get(layer, 0.0)  # warm runs: the cold run's lines
        llog = n * own_log + linv * LAMBDA_PLATFORM_LOG_BYTES
        out["layers"][layer] = {"steps": n, "put": lput, "get": lget, "gb_s": lgbs, "ms": ms, "memory_mb": memory[layer],
                                "per_step": s,
                                "cost": lgbs * p["lambda_gb_s"] + linv * p["lambda_request"] + lput * p["s3_put"] +
                                lget * p["s3_get"]}
        out["sources"][layer] = src
        put, get, gbs, invocations, log_bytes = put + lput, get + lget, gbs + lgbs, invocations + linv, log_bytes + llog
    # SQS: the bronze queue gets one event per landing object, the silver and gold (FIFO) queues one
    # "committed" message per upstream commit announced; plus the pollers' idle floor, shared by the tables.
    landing = arrivals_per_hour * HOURS_PER_MONTH
    between = ((layer_sph["bronze"] if announced else 0) + layer_sph["silver"]) * HOURS_PER_MONTH
    messages = landing + between
    idle = queues * SQS_IDLE_RECEIVES_PER_MIN * 60 * HOURS_PER_MONTH / tables
    sqs_req = messages * SQS_REQUESTS_PER_MESSAGE + idle
    cost = {
        "lambda_compute": gbs * p["lambda_gb_s"],
        "lambda_requests": invocations * p["lambda_request"],
        "s3_requests": put * p["s3_put"] + get * p["s3_get"],
        "sqs": (landing * SQS_REQUESTS_PER_MESSAGE + idle) * p["sqs_request"]
        + between * SQS_REQUESTS_PER_MESSAGE * p["sqs_fifo_request"]
        + scheduled_runs_per_hour * HOURS_PER_MONTH * p["scheduler_run"],
        "cloudwatch_logs": log_bytes / 1e9 * p["cw_logs_gb"],
    }
    out["s3_split"] = {"LIST": lists * p["s3_put"], "PUT/POST/COPY": (put - lists) * p["s3_put"],
                       "GET/HEAD": get * p["s3_get"]}
    out.update(put=put, get=get, lists=lists, gb_s=gbs, invocations=invocations, sqs_requests=sqs_req, sqs_messages=messages,
               log_gb=log_bytes / 1e9, cost=cost, total=sum(cost.values()), steps_per_hour=sph)
    return out


def mixed_pipeline(runs, durations, memory, dur_override, mode="warm", fresh=1):
    """The MIXED pipeline's bill per window class, from the measured per-step requests and durations of the
    `mode` run at `fresh` minutes: steps per hour per layer as the AWS template's class would run them."""
    run = runs.get(mode, {}).get(str(fresh))
    if not run:
        return None
    tables = sum(n for _, n, _, _ in MIXED)
    queues = len({scheduled_bronze_window_s(w) if w > ESM_MAX_WINDOW_S else w for _, _, w, _ in MIXED}) + 2
    out = []
    for label, n, window, arrivals in MIXED:
        if window <= ESM_MAX_WINDOW_S:
            bronze = min(arrivals, 3600 / max(window, 1))
            silver, announced, schedule_runs = bronze, True, 0.0
        else:
            bronze = min(arrivals, 3600 / scheduled_bronze_window_s(window))
            silver, announced = 3600 / window, False
            schedule_runs = silver / n  # one silver schedule run per window for the class; the views follow
        m = monthly(run, durations, memory, tables, mode, fresh, dur_override,
                    layer_steps={"bronze": bronze, "silver": silver, "gold": silver}, arrivals_per_hour=arrivals,
                    announced=announced, queues=queues, scheduled_runs_per_hour=schedule_runs,
                    log_bytes_of=cold_log_bytes(runs, fresh))
        out.append({"class": label, "tables": n, "window_s": window, "objects_per_hour": arrivals,
                    "steps_per_hour": {"bronze": bronze, "silver": silver, "gold": silver},
                    "per_table": m["total"], "class_total": m["total"] * n, "m": m})
    return {"mode": mode, "fresh": fresh, "tables": tables, "queues": queues, "classes": out,
            "total": sum(c["class_total"] for c in out)}


def cold_log_bytes(runs, fresh):
    """The function's own log bytes per invocation, measured in the cold run (JSON lines as on Lambda)."""
    run = runs.get("cold", {}).get(str(fresh))
    if not run:
        return {}
    return {layer: per_step(run["steps"][layer])["log_bytes"] for layer in (*LAYERS, "maintain")
            if run["steps"][layer]}


def spark_month(spark, tables):
    node_h = spark["ec2_hourly"] + spark["emr_hourly"]
    total = spark["nodes"] * (node_h * HOURS_PER_MONTH + spark["ebs_gb"] * SPARK["ebs_gb_month"][0])
    return {"cluster": total, "per_table": total / tables}


def chart(rows, spark_rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    comps = [("lambda_compute", "Lambda GB-s", "tab:orange"), ("lambda_requests", "Lambda requests", "tab:red"),
             ("s3_requests", "S3 requests", "tab:blue"), ("sqs", "SQS", "tab:green"),
             ("cloudwatch_logs", "CloudWatch Logs", "tab:gray")]
    labels = [r["label"] for r in rows] + [s["label"] for s in spark_rows]
    fig, ax = plt.subplots(figsize=(11, 5.5))
    x = range(len(labels))
    bottom = [0.0] * len(labels)
    for key, name, color in comps:
        vals = [r["m"]["cost"][key] for r in rows] + [0.0] * len(spark_rows)
        ax.bar(x, vals, bottom=bottom, color=color, label=name)
        bottom = [b + v for b, v in zip(bottom, vals)]
    tops = list(bottom)
    for i, s in enumerate(spark_rows):
        vals = [0.0] * len(labels)
        vals[len(rows) + i] = s["per_table"]
        ax.bar(x, vals, bottom=bottom, color=s["color"], label=s["legend"])
        tops = [t + v for t, v in zip(tops, vals)]
    for i, t in enumerate(tops):
        ax.text(i, t, f"${t:.2f}", ha="center", va="bottom", fontsize=9)
    ax.set_ylim(0, max(tops) * 1.12)
    ax.set_xticks(list(x))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("USD per table per month")
    ax.set_title("Cost per table per month (70 tables, one event file per table per minute)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def fmt_usd(x):
    return f"${x:,.2f}" if x >= 0.1 else f"${x:,.3f}"


def report(measured, args):
    meta = measured["meta"]
    memory, schedule = template_facts()
    for kv in args.memory_mb:
        k, v = kv.split("=")
        memory[k] = int(v)
    dur_override = {kv.split("=")[0]: float(kv.split("=")[1]) for kv in args.duration_ms}
    # Several --durations files: the first that has a (mode, freshness, layer) wins; the measurement itself last.
    durations, dur_metas = [load_durations(path) for path in args.durations], []
    for path in args.durations:
        dur_metas.append((path, json.load(open(path)).get("meta", {})))
    # The cost JSON among them (a full measurement) is the one whose load and cross-check are reported.
    dur_meta = next((m for path, m in dur_metas if "minio_check" in m), None)
    spark = {k: v[0] for k, v in SPARK.items()}
    spark.update({k: v for k, v in (("node", args.spark_node), ("nodes", args.spark_nodes),
                                    ("ec2_hourly", args.spark_ec2_hourly), ("emr_hourly", args.spark_emr_hourly),
                                    ("ebs_gb", args.spark_ebs_gb)) if v is not None})
    sp = spark_month(spark, args.tables)
    spmin = spark_month({**SPARK_MIN}, args.tables)
    runs = measured["runs"]

    rows, scenarios = [], []
    for fresh in args.freshness:
        for mode in ("warm", "cold"):
            run = runs.get(mode, {}).get(str(fresh))
            if not run:
                continue
            m = monthly(run, durations, memory, args.tables, mode, fresh, dur_override,
                        log_bytes_of=cold_log_bytes(runs, fresh))
            rows.append({"label": f"serverless, {fresh}-min\n{mode} containers", "fresh": fresh, "mode": mode, "m": m})
    # 15 minutes as the AWS template deploys it: above the mappings' 300 s, so bronze waits 900/15 = 60 s
    # and a schedule runs silver and gold every 15 minutes (per-step figures of the 1-min run).
    for mode in ("warm", "cold"):
        run = runs.get(mode, {}).get("1")
        if run:
            bronze = min(60, 3600 / scheduled_bronze_window_s(900))
            scenarios.append({"label": f"15 min on AWS (bronze every 60 s, silver and gold scheduled every 15 min), "
                                       f"{mode}", "fresh": 1, "mode": mode,
                              "m": monthly(run, durations, memory, args.tables, mode, 1, dur_override,
                                           layer_steps={"bronze": bronze, "silver": 4, "gold": 4}, announced=False,
                                           scheduled_runs_per_hour=2 * 4 / args.tables,
                                           log_bytes_of=cold_log_bytes(runs, 1))})
    spark_rows = [{"label": f"Spark: {spark['nodes']} x {spark['node']}\nEMR 24/7 (default)", "per_table": sp["per_table"],
                   "color": "tab:purple", "legend": "Spark cluster (EC2 + EMR + EBS)"},
                  {"label": "Spark: 1 x m6g.xlarge\nEC2 24/7 (minimal)", "per_table": spmin["per_table"],
                   "color": "plum", "legend": "minimal Spark (one EC2 node + EBS)"}]

    # ---- markdown ----
    L = []
    L.append("# Cost per table per month: serverless (Lambda + S3 + SQS) vs an always-on Spark cluster\n")
    L.append(f"{meta['date']} · {meta['machine']} · lakehouse `{meta['cli_version']}` ({meta['cli_build']} build, "
             f"binary of {meta['cli_mtime']}) · git `{meta['git']}` · {meta['minio']} · Python {meta['python']}")
    if dur_metas:
        L.append("\nStep durations from " + ", then ".join(
            f"`{os.path.basename(path)}` ({m.get('cli_build', '?')} build of {m.get('cli_mtime', '?')})"
            for path, m in dur_metas) + "; request counts from the run above.")
    L.append(f"\nCommand: `{args.command_line}`" + (f" (requests measured by `{meta['command']}`)"
                                                   if args.report_only else ""))
    load_txt = ""
    for what, m in (("request-count", meta), ("duration", dur_meta or {})):
        x = m.get("load_avg") or {}
        if x.get("mean") is not None:
            load_txt += (f" During the {what} measurement the machine's 1-minute load average was {x['mean']:.1f} "
                         f"on {x['cores']} cores (max {x['max']:.1f}): it was shared with other work, so durations "
                         "are inflated.")
    L.append("\nFigures are estimates from a noisy 2-core machine and published list prices; read them as ratios "
             f"and orders of magnitude, not as a quote.{load_txt}\n")

    L.append("## Result\n")
    L.append(f"| scenario ({args.tables} tables) | serverless per table per month | all {args.tables} tables | "
             f"Spark cluster per table | Spark ÷ serverless |")
    L.append("|---|---|---|---|---|")
    for r in rows:
        t = r["m"]["total"]
        L.append(f"| {r['fresh']}-min freshness, {r['mode']} containers | **{fmt_usd(t)}** | {fmt_usd(t * args.tables)} | "
                 f"{fmt_usd(sp['per_table'])} | **{sp['per_table'] / t:.1f}x** |")
    L.append(f"\nSpark: {spark['nodes']} x {spark['node']} on EMR 24/7 = {fmt_usd(sp['cluster'])} per month for the "
             f"cluster, whatever the freshness. `warm`: Lambda containers reused (snapshots stay loaded; what 70 "
             f"tables sharing three functions get: each function is invoked every few seconds). `cold`: every "
             f"invocation a new container (init billed, every table opened from its checkpoint): the upper bound.\n")
    L.append("![cost per table per month](cost.png)\n")
    L.append("Reading it:\n")
    for r in rows:
        m = r["m"]
        sp3 = m["s3_split"]
        verdict = (f"{sp['per_table'] / m['total']:.1f}x cheaper than" if m["total"] < sp["per_table"]
                   else f"{m['total'] / sp['per_table']:.1f}x the cost of")
        L.append(f"- {r['fresh']}-min, {r['mode']}: {fmt_usd(m['total'])} per table, {verdict} the cluster's share. "
                 f"S3 requests are {m['cost']['s3_requests'] / m['total']:.0%} of it (LIST {fmt_usd(sp3['LIST'])}, "
                 f"PUT {fmt_usd(sp3['PUT/POST/COPY'])}, GET/HEAD {fmt_usd(sp3['GET/HEAD'])}), Lambda compute "
                 f"{m['cost']['lambda_compute'] / m['total']:.0%}.")
    L.append("")

    mixed = mixed_pipeline(runs, durations, memory, dur_override)
    if mixed:
        L.append("## A mixed pipeline on AWS, per trigger window class\n")
        L.append(f"{mixed['tables']} tables as `lakehouse aws-template` deploys them: one bronze queue per class "
                 f"({mixed['queues']} queues with silver's and gold's), schedules above 300 s; every table with one "
                 f"gold view. Per-step requests and durations from the {mixed['mode']} {mixed['fresh']}-min run "
                 "above; a hot table receives an object every second, the others one a minute (bronze steps per "
                 "hour = objects, at most one per window).\n")
        def rate(x):
            return f"{x:,.0f}" if x >= 1 else f"{x:.3g}"

        L.append("| class | tables | window | objects/h per table | steps/h bronze / silver / gold | per table per "
                 "month | class per month |")
        L.append("|---|---|---|---|---|---|---|")
        for c in mixed["classes"]:
            st = c["steps_per_hour"]
            L.append(f"| {c['class']} | {c['tables']} | {c['window_s']} s | {c['objects_per_hour']:,} | "
                     f"{' / '.join(rate(st[k]) for k in LAYERS)} | {fmt_usd(c['per_table'])} | "
                     f"{fmt_usd(c['class_total'])} |")
        verdict = (f"{sp['cluster'] / mixed['total']:.1f}x cheaper than" if mixed["total"] < sp["cluster"]
                   else f"{mixed['total'] / sp['cluster']:.1f}x the cost of")
        L.append(f"| **all** | {mixed['tables']} | | | | {fmt_usd(mixed['total'] / mixed['tables'])} | "
                 f"**{fmt_usd(mixed['total'])}** |")
        L.append(f"\nThe whole pipeline costs {fmt_usd(mixed['total'])} a month, {verdict} the cluster "
                 f"({fmt_usd(sp['cluster'])}). A table's bill follows its step rate: a busy 1-second table runs "
                 "3,600 steps an hour per layer, so the 5 hot tables cost most of it (a step's requests, mostly S3, do "
                 "not shrink with its rows: the same table receiving an object every 10 s would cost a tenth); the daily tables pay for bronze "
                 "(the raw layer stays within 5 minutes) and one silver and gold step a day (measured per-step costs "
                 "of a 1-minute step: a day's step reads more, once a day). Each class adds one queue's idle "
                 "polling floor; EventBridge routes S3's events at no charge.\n")

    L.append("## Bill per table per month, by component\n")
    L.append("| scenario | steps/h per layer | Lambda GB-s | Lambda invocations | S3 PUT/LIST | S3 GET/HEAD | SQS requests | "
             "Lambda compute | Lambda requests | S3 requests | SQS | CloudWatch Logs | total |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows + scenarios:
        m = r["m"]
        c = m["cost"]
        L.append(f"| {r['label'].replace(chr(10), ', ')} | {m['steps_per_hour']:g} | {m['gb_s']:,.0f} | {m['invocations']:,.0f} | "
                 f"{m['put']:,.0f} | {m['get']:,.0f} | {m['sqs_requests']:,.0f} | {fmt_usd(c['lambda_compute'])} | "
                 f"{fmt_usd(c['lambda_requests'])} | {fmt_usd(c['s3_requests'])} | {fmt_usd(c['sqs'])} | "
                 f"{fmt_usd(c['cloudwatch_logs'])} | **{fmt_usd(m['total'])}** |")
    L.append("")

    L.append("Where it goes (per table per month; Lambda and S3 requests of each layer's steps, SQS and logs apart):\n")
    L.append("| scenario | bronze | silver | gold | maintenance (hourly) | SQS + CloudWatch Logs |")
    L.append("|---|---|---|---|---|---|")
    for r in rows + scenarios:
        m = r["m"]
        lc = {k: v["cost"] for k, v in m["layers"].items()}
        L.append(f"| {r['label'].replace(chr(10), ', ')} | {fmt_usd(lc['bronze'])} | {fmt_usd(lc['silver'])} | "
                 f"{fmt_usd(lc['gold'])} | {fmt_usd(lc['maintain'])} | "
                 f"{fmt_usd(m['cost']['sqs'] + m['cost']['cloudwatch_logs'])} |")
    L.append("")

    L.append("## Measured: S3 requests per step (one table)\n")
    L.append(f"One landing file of {meta['rows_per_file']} JSONL rows (ids over 5,000 keys, 10% deletes) per table per "
             f"minute; a step at F-minute freshness ingests F files. {meta['hours']} simulated hours per run, the first "
             f"{meta['warmup_hours']} not counted; maintenance (table + its view) after every simulated hour. Means per "
             "step; PUT tier = PutObject, multipart, CopyObject, ListObjectsV2 (and DeleteObjects, counted there to be "
             "safe); GET tier = GetObject, HeadObject.\n")
    L.append("| mode | F min | layer | steps counted | requests | PUT-tier | of which LIST | GET-tier | free (DELETE) | "
             f"by object kind (mean per step) | step ms ({meta['cli_build']} build, not billed) | peak RSS MB | log bytes |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for mode in ("cold", "warm"):
        for f, run in sorted(runs.get(mode, {}).items(), key=lambda kv: int(kv[0])):
            for layer in (*LAYERS, "maintain"):
                s = per_step(run["steps"][layer])
                if not s:
                    continue
                kinds = ", ".join(f"{k} {v:.1f}" for k, v in sorted(s["kind"].items(), key=lambda kv: -kv[1]) if v >= 0.05)
                lists = sum(v for k, v in s["api"].items() if k.startswith("List"))
                if mode == "cold":
                    rss, logb = f"{s['rss_mb']:.0f}", f"{s['log_bytes']:.0f}"
                else:
                    rss, logb = f"{run.get('runner_peak_rss_mb', 0):.0f} (runner)", "-"
                name = layer if layer != "maintain" else "maintain (per hour)"
                L.append(f"| {mode} | {f} | {name} | {s['n']} | {s['put'] + s['get'] + s['free']:.1f} | "
                         f"{s['put']:.1f} | {lists:.1f} | {s['get']:.1f} | {s['free']:.1f} | {kinds} | "
                         f"{s['wall_ms']:.0f} | {rss} | {logb} |")
    for what, m in (("request-count run", meta), ("duration run", dur_meta or {})):
        chk = m.get("minio_check") or {}
        if chk.get("minio") is None:
            continue
        diff = chk["minio"] - chk["proxy"] - chk["direct"]
        verdict = "equal" if abs(diff) < 0.5 else (f"{diff:+,.0f} requests ({abs(diff) / chk['minio']:.2%}) that MinIO "
                                                    "saw and the proxy did not record")
        L.append(f"\nCross-check ({what}, `{m.get('cli_build')}` build): the proxy counted {chk['proxy']:,} requests of "
                 f"the product, the bench itself sent {chk['direct']:,} (landing uploads), and MinIO's own "
                 f"`minio_s3_requests_total` grew by {chk['minio']:,.0f}: {verdict}.")
    L.append("\nObject kinds: `<layer>/<kind>`: `landing` the source object (HEAD + GET), `data` Parquet files, `log` "
             "commit JSON and log listings, `checkpoint` checkpoint Parquet and `_last_checkpoint`, `cdf` change data "
             "files. Cold steps open each table from its last checkpoint (read in several ranged GETs) and replay the "
             "commits since; warm steps list and read only the commits made since the cached snapshot. ")
    for mode in ("cold", "warm"):
        for f, run in sorted(runs.get(mode, {}).items(), key=lambda kv: int(kv[0])):
            s = per_step(run["steps"]["maintain"])
            if s and s["full_listings"]:
                fl = ", ".join(f"{k} x{v / s['n']:.0f}" for k, v in sorted(s["full_listings"].items()))
                L.append(f"\nMaintenance per run ({mode}, F={f}) lists these prefixes from their start (change-data "
                         f"expiry): {fl}. The run's change files fit one page; a month-old table's do not: the bill adds "
                         f"the pages of a steady-state one ({LOG_RETENTION_DAYS} days of change files, one per silver "
                         f"step). Log listings from the start stop at the retention boundary or the oldest commit: one "
                         f"page a run on a month-old log too, as measured. The change files add "
                         f"{extra_list_pages(Counter({k: v / s['n'] for k, v in s['full_listings'].items()}), run['steps_per_hour']):.0f}"
                         " extra LIST per run at this freshness (modelled, not measured).")
                break
    for f, run in sorted(runs.get("warm", {}).items(), key=lambda kv: int(kv[0])):
        L.append(f"\nWarm F={f}: the handlers sent {run['sqs_messages_sent']['silver']} messages to the silver queue "
                 f"and {run['sqs_messages_sent']['gold']} to the gold queue for {run['cycles']} bronze steps "
                 "(one \"committed\" message per commit, as the cost model assumes).")
    L.append("")

    L.append("## Inputs and prices\n")
    L.append("| input | value | source |")
    L.append("|---|---|---|")
    for k, (v, what, src) in PRICES.items():
        L.append(f"| {what} | {v:.10g} | {src} |")
    for layer in (*LAYERS, "maintain"):
        L.append(f"| {layer} function memory (billed) | {memory[layer]} MB | infra/aws/template.yaml MemorySize"
                 f"{' (overridden)' if any(x.startswith(layer + '=') for x in args.memory_mb) else ''} |")
    srcs = sorted({(r["mode"], layer, r["m"]["sources"][layer]) for r in rows for layer in r["m"]["sources"]})
    for mode, layer, src in srcs:
        ms = [(r["fresh"], r["m"]["layers"][layer]["ms"]) for r in rows
              if r["mode"] == mode and r["m"]["sources"][layer] == src]
        L.append(f"| {layer} step duration ({mode}) | {' · '.join(f'{f} min: {x:,.0f} ms' for f, x in ms)} | "
                 f"{src}; the mean (the bill is linear in it) |")
    L.append(f"| Maintenance schedule | {schedule} → {HOURS_PER_MONTH} runs/month, one invocation for all tables | "
             "infra/aws/template.yaml MaintenanceSchedule |")
    L.append(f"| Hours per month | {HOURS_PER_MONTH} | AWS pricing convention |")
    L.append(f"| Tables | {args.tables} | the seed's shape (issue 11) |")
    L.append(f"| Events | one landing object per table per minute ({60 * HOURS_PER_MONTH:,} per month) | the seed's shape |")
    L.append(f"| SQS per message | {SQS_REQUESTS_PER_MESSAGE} requests (send or S3 notification, receive, delete; no "
             "batching credit) | conservative assumption |")
    L.append(f"| SQS idle polling | {SQS_QUEUES} queues x {SQS_IDLE_RECEIVES_PER_MIN} ReceiveMessage/min, shared by all "
             "tables | assumption: 5 Lambda pollers x 20 s long polls; "
             "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html |")
    L.append("| Cold start | +1 GET per cold invocation (the pipeline file at ConfigUri) | template's LAKEHOUSE_CONFIG |")
    L.append(f"| Lambda platform log lines | {LAMBDA_PLATFORM_LOG_BYTES} bytes per invocation (START/END/REPORT) | "
             "assumption; the function's own lines are measured (JSON logs at the template's RUST_LOG) |")
    for k, (v, what, src) in SPARK.items():
        val = spark[k]
        L.append(f"| Spark: {what} | {val} | {src} |")
    L.append("")

    L.append("## Sensitivity\n")
    L.append(f"- **Cheapest conceivable Spark**: {SPARK_MIN['label']}: {fmt_usd(spmin['cluster'])} per month, "
             f"{fmt_usd(spmin['per_table'])} per table ({SPARK_MIN['source']}). Ratios against it: " +
             ", ".join(f"{r['fresh']}-min {r['mode']} {spmin['per_table'] / r['m']['total']:.1f}x" for r in rows) + ".")
    for s in scenarios:
        L.append(f"- **{s['label']}**: {fmt_usd(s['m']['total'])} per table per month. A Lambda SQS event source batches "
                 "for at most 300 s (`MaximumBatchingWindowInSeconds`), so the template keeps a 15-minute window with a "
                 "schedule for silver and gold, and bronze ingests each minute's object within 60 s (the raw layer "
                 "fresh): the per-table bill is bronze's 60 steps an hour plus 4 silver and gold steps (the 15-min "
                 "rows above run bronze every 15 minutes too, as the runner does).")
    for r in rows:
        if r["mode"] != "warm":
            continue
        rss = runs["warm"][str(r["fresh"])].get("runner_peak_rss_mb", 0)
        right = {layer: max(128, int(math.ceil(rss * 2 / 64) * 64)) for layer in (*LAYERS, "maintain")}
        m2 = monthly(runs["warm"][str(r["fresh"])], durations, right, args.tables, "warm", r["fresh"], dur_override,
                     log_bytes_of=cold_log_bytes(runs, r["fresh"]))
        L.append(f"- **Memory right-sized** ({r['fresh']}-min, warm): {right['bronze']} MB for every function (2x the "
                 f"runner's peak RSS of {rss:.0f} MB, which served all layers at once) instead of "
                 f"{memory['bronze']}/{memory['silver']} MB: {fmt_usd(m2['total'])} per table per month (durations kept; "
                 "Lambda gives less CPU to less memory, so this is optimistic).")
    med = []
    for r in rows:
        m2 = monthly(runs[r["mode"]][str(r["fresh"])], durations, memory, args.tables, r["mode"], r["fresh"],
                     dur_override, log_bytes_of=cold_log_bytes(runs, r["fresh"]), median=True)
        med.append(f"{r['fresh']}-min {r['mode']} {fmt_usd(m2['total'])} (Lambda compute "
                   f"{fmt_usd(m2['cost']['lambda_compute'])} instead of {fmt_usd(r['m']['cost']['lambda_compute'])})")
    L.append("- **Median instead of mean step durations** (less sensitive to the load spikes of this shared machine): "
             + "; ".join(med) + ".")
    L.append("")

    L.append("## What is and is not in the figures\n")
    L.append("- In: Lambda duration (GB-s at the billed memory) and requests for bronze, silver, gold and hourly "
             "maintenance; S3 requests of every step and maintenance run (data, Delta log, checkpoints, change data, "
             "landing reads); SQS requests between layers incl. S3 notifications and idle polling; CloudWatch Logs "
             "ingestion.")
    L.append("- Not in, on either side: S3 storage (both keep the same Delta tables; serverless keeps removed files for "
             "the 7-day vacuum retention), the producers' landing PUTs, data transfer (same region: free), free tiers.")
    L.append("- Not in, Spark side (so the Spark figure is low): its S3 requests (per micro-batch per query: listing the "
             "landing prefix, the Delta log reads and commit, the streaming checkpoint's offsets and commits files), "
             "the driver's log volume, and the cluster needed to keep 1-minute triggers for 210 queries on time "
             "(the same cluster is priced at both freshness levels).")
    L.append("- Durations are from this x86 machine under load, not Lambda's arm64 at the billed memory (2048 MB ≈ 1.2 "
             "vCPU): noisy, and the figure most worth re-measuring on AWS (CloudWatch `REPORT` lines: "
             "`--duration-ms layer=ms`).")
    L.append("- Invocations: one per table per layer step (conservative: an SQS batch often carries several tables).")
    L.append("")
    L.append("Reproduce: `make bench-cost` (`python bench/cost.py --help` for every input).\n")

    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "cost.md"), "w") as f:
        f.write("\n".join(L))
    chart(rows, spark_rows, os.path.join(args.results, "cost.png"))
    summary = {"meta": meta, "durations_from": args.durations, "tables": args.tables, "memory_mb": memory,
               "spark": {**spark, **sp}, "spark_min": spmin,
               "rows": [{"freshness_min": r["fresh"], "mode": r["mode"], "per_table": r["m"]["total"],
                         "all_tables": r["m"]["total"] * args.tables, "cost": r["m"]["cost"],
                         "gb_s": r["m"]["gb_s"], "s3_put": r["m"]["put"], "s3_get": r["m"]["get"],
                         "sqs_requests": r["m"]["sqs_requests"], "invocations": r["m"]["invocations"],
                         "spark_ratio": sp["per_table"] / r["m"]["total"],
                         "step_ms": {k: v["ms"] for k, v in r["m"]["layers"].items()}} for r in rows + scenarios]}
    if mixed:
        summary["mixed_pipeline"] = {k: v for k, v in mixed.items() if k != "classes"}
        summary["mixed_pipeline"]["classes"] = [{k: v for k, v in c.items() if k != "m"} for c in mixed["classes"]]
    with open(os.path.join(args.results, "cost.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print("\n".join(L[:16]))


def main():
    default_cli = ENV.get("LAKEHOUSE_CLI") or os.path.join(
        ENV.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/lakehouse-target")), "release", "lakehouse")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cli", default=default_cli, help="the lakehouse binary (env LAKEHOUSE_CLI)")
    p.add_argument("--measure-only", action="store_true")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--measured", default=os.path.join(RESULTS, "cost-measured.json"),
                   help="the measurement JSON written (measure) or read (--report-only)")
    p.add_argument("--out", help="where --measure-only writes (default: --measured)")
    p.add_argument("--results", default=RESULTS, help="where cost.{md,json,png} go (default bench/results)")
    p.add_argument("--durations", action="append", default=[],
                   help="step durations from another run: a cost measurement JSON or bench_e2e's e2e.json "
                        "(repeatable: the first file that has a layer's duration wins)")
    p.add_argument("--duration-ms", action="append", default=[], metavar="LAYER=MS",
                   help="override a layer's mean step duration (bronze, silver, gold, maintain), e.g. from CloudWatch")
    p.add_argument("--memory-mb", action="append", default=[], metavar="LAYER=MB",
                   help="override a function's billed memory (default: the SAM template's MemorySize)")
    p.add_argument("--minio-port", type=int, default=int(ENV.get("COST_MINIO_PORT", "9600")),
                   help="own MinIO (started unless one answers); the proxy takes port+2, the SQS port+3")
    p.add_argument("--measure-freshness", type=lambda s: [int(x) for x in s.split(",")], default=[1, 5, 15],
                   help="freshness levels measured, minutes (divisors of 60)")
    p.add_argument("--freshness", type=lambda s: [int(x) for x in s.split(",")], default=[1, 15],
                   help="freshness levels reported")
    p.add_argument("--modes", type=lambda s: s.split(","), default=["cold", "warm"])
    p.add_argument("--hours", type=int, default=3, help="simulated hours per run (time compressed)")
    p.add_argument("--warmup-hours", type=int, default=1, help="first hours not counted")
    p.add_argument("--rows", type=int, default=200, help="rows per landing file (one file per table per minute)")
    p.add_argument("--tables", type=int, default=70)
    p.add_argument("--spark-node", help=f"default {SPARK['node'][0]}")
    p.add_argument("--spark-nodes", type=int, help=f"default {SPARK['nodes'][0]}")
    p.add_argument("--spark-ec2-hourly", type=float, help=f"default {SPARK['ec2_hourly'][0]}")
    p.add_argument("--spark-emr-hourly", type=float, help=f"default {SPARK['emr_hourly'][0]} (0 for plain EC2)")
    p.add_argument("--spark-ebs-gb", type=float, help=f"default {SPARK['ebs_gb'][0]} per node")
    args = p.parse_args()
    args.command_line = "python bench/cost.py " + " ".join(sys.argv[1:])
    if any(60 % f for f in args.measure_freshness):
        sys.exit("--measure-freshness: minutes must divide 60")
    if not args.report_only:
        if not os.path.exists(args.cli):
            sys.exit(f"no lakehouse binary at {args.cli} (set LAKEHOUSE_CLI)")
        # A private copy: a build finishing meanwhile must not swap the binary in the middle of a run.
        work = os.path.join(ENV.get("LAKEHOUSE_STATE", "/tmp"), "cost")
        os.makedirs(work, exist_ok=True)
        args.cli_meta = versions(args.cli)
        frozen = os.path.join(work, "lakehouse-" + ("debug" if "/debug/" in args.cli else "release"
                                                     if "/release/" in args.cli else "cli"))
        shutil.copy2(args.cli, frozen)
        args.cli = frozen
        measured = measure(args)
        out = args.out or args.measured
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            json.dump(measured, f, separators=(",", ":"))  # per-step records: compact
        log(f"wrote {out}")
        if args.measure_only:
            return
    else:
        measured = json.load(open(args.measured))
    missing = [f for f in args.freshness if not any(str(f) in r for r in measured["runs"].values())]
    if missing:
        sys.exit(f"no measurement at freshness {missing} min in {args.measured}")
    report(measured, args)
    log(f"wrote {args.results}/cost.{{md,json,png}}")


if __name__ == "__main__":
    main()
