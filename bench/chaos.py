"""Chaos run (make chaos): the product's processes against MinIO through a fault-injecting proxy, killed at
random moments, fed duplicated out-of-order deliveries; then quiet, clean catch-up, and every layer compared
with an independent oracle computed here from the generated events.

    bench/chaos.py [--quick] [--seed N]         (CHAOS_SEED, LAKEHOUSE_CLI, LAKEHOUSE_STATE)

What happens:
  1. Its own MinIO (127.0.0.1:9300, console 9301; never the shared 9000) with a fresh data dir under
     $LAKEHOUSE_STATE/chaos/minio, buckets made with boto3; the proxy (bench/chaos_proxy.py) on 9310. The
     pipeline file points landing and lake at the proxy; this script and the oracle talk to MinIO directly.
  2. Seeded CDC events over four tables in three formats: `orders` (upsert JSON lines, some gzip, delete flag),
     `customers` (Debezium JSON lines, sequence source.lsn), `payments` (AWS DMS CSV without header, I/U/D,
     sequence commit_ts), `accounts` (upsert JSON lines, SCD type 2); a share of events re-emitted in a later
     object (an at-least-once source); cut into many landing objects, uploaded.
  3. Chaos phase: every object delivered once plus 30% duplicate deliveries, shuffled, released over a
     window; `lakehouse ingest` processes take SQS-shaped batches of 1-10 messages (batchItemFailures and
     failed/killed invocations go back to the queue, like SQS after its visibility timeout); meanwhile waves
     of 8 concurrent `lakehouse silver` on one table (two tables' waves at a time), waves of concurrent
     `lakehouse gold` per view, and `lakehouse maintain --table T` every half minute. Processes are SIGKILLed
     at seeded random moments. The proxy injects 500/503, resets, hold-then-drop timeouts, slow responses, cut
     bodies, and on Delta commit PUTs failures before forwarding and lost acknowledgements after the write
     landed.
  4. Quiet: when every delivery is acknowledged, one more silver wave per table and gold wave per view (still
     under faults). Then faults off; bronze is compared with the oracle BEFORE any clean redelivery (an
     acknowledged but lost object would show here); then every object is redelivered once (must commit
     nothing), clean silver and gold steps run, and bronze, silver and gold are compared with the oracle.
  5. bench/results/chaos.md and a summary on stdout; exit 1 if any check failed.
"""
import argparse
import collections
import datetime
import gzip
import heapq
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ENV = os.environ
STATE = ENV.get("LAKEHOUSE_STATE") or os.path.join(ENV.get("LAKEHOUSE_HOME") or os.path.expanduser("~/.cache/lakehouse"), "state")
TARGET = ENV.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/lakehouse-target")
BIN = ENV.get("LAKEHOUSE_CLI") or os.path.join(TARGET, "debug", "lakehouse")
MINIO_BIN = ENV.get("CHAOS_MINIO_BIN") or os.path.join(ENV.get("LAKEHOUSE_HOME") or os.path.expanduser("~/.cache/lakehouse"), "bin", "minio")
MINIO_PORT = int(ENV.get("CHAOS_MINIO_PORT", "9300"))
PROXY_PORT = int(ENV.get("CHAOS_PROXY_PORT", "9310"))
USER, PASSWORD = "lakehouse", "lakehouse-secret"
MINIO = f"http://127.0.0.1:{MINIO_PORT}"
PROXY = f"http://127.0.0.1:{PROXY_PORT}"
LANDING, LAKE = "chaos-landing", "chaos-lake"
LAKE_URI = f"s3://{LAKE}/lake"
RESULTS = os.path.join(HERE, "results")
# Child logs: our warnings, object_store's retries (info) and delta-rs' commit-race warnings.
CHILD_LOG = "warn,object_store=info,buoyant_kernel=off"

STORAGE_OPTIONS = {"AWS_ENDPOINT_URL": MINIO, "AWS_ACCESS_KEY_ID": USER, "AWS_SECRET_ACCESS_KEY": PASSWORD,
                   "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}

SHAPES = {
    # events per run: share of the total; keys: distinct keys per event
    "orders": {"share": 0.40, "keys_per_event": 0.25},
    "customers": {"share": 0.20, "keys_per_event": 0.2},
    "payments": {"share": 0.25, "keys_per_event": 0.3},
    "accounts": {"share": 0.15, "keys_per_event": 0.25},
}
REGIONS = ["north", "south", "east", "west", "central"]
METHODS = ["card", "wire", "cash", "voucher"]
OWNERS = [f"owner{i}" for i in range(8)]
DMS_BASE_US = int(datetime.datetime(2026, 11, 20, tzinfo=datetime.timezone.utc).timestamp() * 1_000_000)
DELETE_SHARE = 0.25
REEMIT_SHARE = 0.03     # events the source sends twice (in a later object)
DUPLICATE_SHARE = 0.30  # extra deliveries of the same objects

VIEWS = {
    "customer_totals": {"sql": "SELECT customer_id, COUNT(*) AS n, SUM(amount) AS total FROM orders GROUP BY customer_id",
                        "keys": ["customer_id"], "sources": ["orders"]},
    "region_totals": {"sql": "SELECT c.region, COUNT(*) AS n, SUM(o.amount) AS total FROM orders o "
                             "JOIN customers c ON o.customer_id = c.id GROUP BY c.region",
                      "keys": ["region"], "sources": ["orders", "customers"]},
    "method_totals": {"sql": "SELECT method, COUNT(*) AS n, SUM(amount) AS total FROM payments GROUP BY method",
                      "keys": ["method"], "sources": ["payments"]},
    "owner_balances": {"sql": "SELECT owner, COUNT(*) AS n, SUM(balance) AS total FROM accounts WHERE is_current "
                              "GROUP BY owner",
                       "keys": ["owner"], "sources": ["accounts"]},
}


def die_with_parent():
    """preexec_fn: the child gets SIGKILL if this script dies (no MinIO or step left behind on its ports)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def log(msg):
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------
# Events, landing objects, deliveries (all seeded)
# ---------------------------------------------------------------------------------------------------------

def generate_events(rng, table, n, n_customers):
    """The table's change stream in source order: one event per sequence value 1..n, each
    {seq, key, op: I/U/D, row: after image (before image for a delete), before}."""
    keys = max(10, int(n * SHAPES[table]["keys_per_event"]))
    live = {}
    events = []
    for seq in range(1, n + 1):
        k = rng.randrange(keys)
        before = live.get(k)
        if before is None:
            op = "I"
        elif rng.random() < DELETE_SHARE:
            op = "D"
        else:
            op = "U"
        if op == "D":
            row = dict(before)
            del live[k]
        else:
            if table == "orders":
                row = {"id": k, "customer_id": rng.randrange(n_customers), "amount": rng.randrange(1, 100_000)}
            elif table == "customers":
                row = {"id": k, "name": f"customer {k} v{seq}", "region": rng.choice(REGIONS)}
            elif table == "payments":
                row = {"payment_id": k, "order_id": rng.randrange(100_000), "method": rng.choice(METHODS),
                       "amount": rng.randrange(1, 100_000)}
            else:
                row = {"id": k, "owner": rng.choice(OWNERS), "balance": rng.randrange(-5_000, 100_000)}
            live[k] = row
        events.append({"seq": seq, "key": k, "op": op, "row": row, "before": before})
    return events


def dms_ts(seq):
    us = DMS_BASE_US + seq * 1000
    return datetime.datetime.fromtimestamp(us / 1e6, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def encode(table, e):
    """One landing line for event `e` in the table's source format."""
    r = e["row"]
    if table in ("orders", "accounts"):
        d = dict(r)
        if e["op"] == "D":
            d = {"id": r["id"]}  # a delete flag needs only the key (and the sequence)
        d["seq"] = e["seq"]
        d["deleted"] = e["op"] == "D"
        return json.dumps(d)
    if table == "customers":
        op = {"I": "c", "U": "u", "D": "d"}[e["op"]]
        after = None if e["op"] == "D" else r
        before = e["before"]
        return json.dumps({"before": before, "after": after, "op": op, "ts_ms": 1_764_000_000_000 + e["seq"],
                           "source": {"version": "2.5.0.Final", "connector": "postgresql", "name": "chaos",
                                      "db": "shop", "schema": "public", "table": "customers", "lsn": e["seq"],
                                      "txId": 1000 + e["seq"], "ts_ms": 1_764_000_000_000 + e["seq"]},
                           "transaction": None})
    # payments: DMS CSV, no header: Op, commit_ts, then the row (deletes carry the before image).
    return f'{e["op"]},{dms_ts(e["seq"])},{r["payment_id"]},{r["order_id"]},{r["method"]},{r["amount"]}'


def build_objects(rng, table, events, min_rows, max_rows):
    """Cuts the stream into landing objects; a share of events is re-emitted in a later object.
    Returns [{table, key, lines: [event], body}]."""
    chunks = []
    i = 0
    while i < len(events):
        n = rng.randint(min_rows, max_rows)
        chunks.append(list(events[i:i + n]))
        i += n
    for ci in range(len(chunks)):
        for e in list(chunks[ci]):
            if rng.random() < REEMIT_SHARE:
                target = rng.randrange(ci, len(chunks))
                chunks[target].insert(rng.randrange(len(chunks[target]) + 1), e)
    ext = {"orders": "jsonl", "customers": "jsonl", "payments": "csv", "accounts": "jsonl"}[table]
    objects = []
    for ci, lines in enumerate(chunks):
        body = ("\n".join(encode(table, e) for e in lines) + "\n").encode()
        key = f"{table}/2026/11/part-{ci:05d}.{ext}"
        if table == "orders" and rng.random() < 0.3:
            key += ".gz"
            body = gzip.compress(body, mtime=0)
        objects.append({"table": table, "key": key, "lines": lines, "body": body})
    return objects


# ---------------------------------------------------------------------------------------------------------
# The oracle (from the generated events only)
# ---------------------------------------------------------------------------------------------------------

TABLE_KEY = {"orders": "id", "customers": "id", "payments": "payment_id", "accounts": "id"}
# Silver columns compared per table (besides the key); `_seq` is the event's sequence.
SILVER_COLS = {"orders": ["customer_id", "amount", "_seq"], "customers": ["name", "region", "_seq"],
               "payments": ["order_id", "method", "amount", "_seq"], "accounts": ["owner", "balance"]}


def seq_value(table, seq):
    return DMS_BASE_US + seq * 1000 if table == "payments" else seq


def oracle_silver(table, events):
    """SCD1: {key: tuple(SILVER_COLS)} of the latest event per key, deletes applied; plus the keys whose
    latest event is a delete. SCD2 (accounts): {(key, valid_from): (owner, balance, valid_to, is_current)}."""
    by_key = collections.defaultdict(list)
    for e in events:
        by_key[e["key"]].append(e)
    if table == "accounts":
        versions, deleted = {}, set()
        for k, es in by_key.items():
            es.sort(key=lambda e: e["seq"])
            for i, e in enumerate(es):
                if e["op"] == "D":
                    continue
                nxt = es[i + 1]["seq"] if i + 1 < len(es) else None
                versions[(k, e["seq"])] = (e["row"]["owner"], e["row"]["balance"], nxt, nxt is None)
            if es[-1]["op"] == "D":
                deleted.add(k)
        return versions, deleted
    live, deleted = {}, set()
    for k, es in by_key.items():
        last = max(es, key=lambda e: e["seq"])
        if last["op"] == "D":
            deleted.add(k)
            continue
        cols = [c for c in SILVER_COLS[table] if c != "_seq"]
        live[k] = tuple(last["row"][c] for c in cols) + (seq_value(table, last["seq"]),)
    return live, deleted


def oracle_gold(silver):
    """Each view recomputed from the oracle's silver tables."""
    orders, customers, payments = silver["orders"][0], silver["customers"][0], silver["payments"][0]
    accounts = silver["accounts"][0]
    out = {v: collections.defaultdict(lambda: [0, 0]) for v in VIEWS}
    for oid, (cust, amount, _) in orders.items():
        g = out["customer_totals"][(cust,)]
        g[0] += 1
        g[1] += amount
        c = customers.get(cust)
        if c is not None:
            g = out["region_totals"][(c[1],)]
            g[0] += 1
            g[1] += amount
    for pid, (_, method, amount, _) in payments.items():
        g = out["method_totals"][(method,)]
        g[0] += 1
        g[1] += amount
    for (k, vf), (owner, balance, vt, cur) in accounts.items():
        if cur:
            g = out["owner_balances"][(owner,)]
            g[0] += 1
            g[1] += balance
    return {v: {k: tuple(x) for k, x in groups.items()} for v, groups in out.items()}


# ---------------------------------------------------------------------------------------------------------
# Infrastructure: MinIO, the proxy, processes
# ---------------------------------------------------------------------------------------------------------

def s3_client():
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=MINIO, region_name="us-east-1", aws_access_key_id=USER,
                        aws_secret_access_key=PASSWORD, config=Config(retries={"max_attempts": 10}))


def port_free(port):
    import socket
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def wait_http(url, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except Exception:
            time.sleep(0.3)
    return False


def proxy_call(path, method="GET"):
    req = urllib.request.Request(PROXY + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


class Proc:
    """One product process: command, output files, scheduled kill."""
    def __init__(self, kind, name, cmd, logdir, seq, meta=None, kill_at=None):
        self.kind, self.name, self.meta = kind, name, meta or {}
        self.out_path = os.path.join(logdir, f"{seq:05d}-{kind}-{name}.out")
        self.err_path = os.path.join(logdir, f"{seq:05d}-{kind}-{name}.err")
        # Output to files, never pipes: a pipe nobody drains stalls the process.
        self.out = open(self.out_path, "w")
        self.err = open(self.err_path, "w")
        self.started = time.time()
        self.kill_at = kill_at
        self.killed = False
        self.hung = False
        self.p = subprocess.Popen(cmd, stdout=self.out, stderr=self.err, stdin=subprocess.DEVNULL,
                                  preexec_fn=die_with_parent, env={**ENV, "RUST_LOG": CHILD_LOG, "AWS_EC2_METADATA_DISABLED": "true"})

    def finish(self):
        self.out.close()
        self.err.close()
        self.elapsed = time.time() - self.started
        self.rc = self.p.returncode
        with open(self.out_path) as f:
            self.stdout = f.read()
        with open(self.err_path, errors="replace") as f:
            self.stderr = f.read()


def error_signature(stderr):
    """The first `error:` line of a failed step, with numbers, hex and quoted paths masked (for counting)."""
    lines = [line for line in stderr.splitlines() if line.startswith("error:") or "panicked at" in line]
    if not lines:
        tail = [line for line in stderr.splitlines() if line.strip()]
        return "(no error line) " + (tail[-1][:160] if tail else "")
    s = re.sub(r"\x1b\[[0-9;]*m", "", lines[0])
    s = re.sub(r"https?://[\d.:]+/" + LAKE + "/lake/", "", s)
    s = re.sub(r"https?://[\d.:]+/" + LANDING + "/", "landing:", s)
    s = s.replace(LAKE_URI + "/", "")
    s = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27,}", "<uuid>", s)
    s = re.sub(r"\d{20}", "<version>", s)
    s = re.sub(r"\b\d+(\.\d+)?(ms|s)\b", "<t>", s)
    s = re.sub(r"(?<![A-Za-z_])\d+(?![A-Za-z_])", "N", s)
    return s[:300]


# Error text that an injected fault explains (storage unreachable, cut, slow, failing).
FAULT_TEXT = re.compile(r"HTTP error|S3 error|object store|error sending request|timed out|[Tt]imeout|Connection reset|"
                        r"body error|connection closed|IncompleteMessage|Service Unavailable|Internal Server Error|"
                        r"SlowDown|InternalError|[Bb]roken pipe|connection error")


def explained_by_fault(p):
    """Whether a failed step's error is a storage failure an injected fault explains. A maintenance run
    fails as a whole when a task failed: its failed tasks' details say why."""
    if p.kind.startswith("maintain"):
        details = []
        for line in p.stdout.splitlines():
            try:
                t = json.loads(line)
            except ValueError:
                continue
            if t.get("outcome") == "failed":
                details.append(t.get("detail", ""))
        return bool(details) and all(FAULT_TEXT.search(d) for d in details)
    first = next((line for line in p.stderr.splitlines() if line.startswith("error:")), "")
    return bool(first) and bool(FAULT_TEXT.search(first)) and "panicked" not in p.stderr


class Chaos:
    def __init__(self, args):
        self.args = args
        self.quick = args.quick
        self.seed = args.seed
        self.kill_rng = random.Random(self.seed * 7919 + 1)
        self.events_total = args.events or (1000 if self.quick else 12000)
        self.run_id = time.strftime("%Y%m%d-%H%M%S")
        self.base = os.path.join(STATE, "chaos")
        self.work = os.path.join(self.base, f"run-{self.run_id}")
        self.logdir = os.path.join(self.work, "logs")
        self.minio_dir = os.path.join(self.base, "minio")
        self.arrival_s = args.arrival_seconds or (60 if self.quick else 420)
        self.deadline_s = (12 if self.quick else 40) * 60
        # A step past this is reported (and killed): far beyond what the faults explain. A maintenance run
        # does several tasks on every layer of a table, each opening it, so it gets longer.
        self.watchdog_s = {"maintain": 600}
        self.watchdog_default_s = 300
        self.bronze_workers = 4
        self.silver_wave = 8     # concurrent `lakehouse silver` on one table
        self.silver_slots = 2    # tables with a wave running at once
        self.gold_wave = 3
        self.gold_slots = 2
        self.maintain_every = 20 if self.quick else 30   # one table or view per run, in turn
        self.kill_share = {"ingest": 0.15, "gold": 0.2, "maintain": 0.3}
        self.procs = []          # running
        self.done = []           # finished Proc objects
        self.seqno = 0
        self.stats = collections.Counter()
        self.errors = collections.Counter()
        self.error_example = {}
        self.unexplained = collections.Counter()  # errors no injected fault explains: findings
        self.findings = []       # (title, evidence)
        self.panics = []
        self.hangs = []
        self.checks = []         # (name, ok, detail)
        self.timings = {}
        self.minio = self.proxy = None
        self.chaos_on = False
        if args.calm:
            # A baseline: the same run without faults or kills (checks the harness and the oracle).
            args.fault_rate = args.commit_fault_rate = 0.0
            self.kill_share = {k: 0.0 for k in self.kill_share}

    # -- setup --------------------------------------------------------------------------------------------

    def prepare_dirs(self):
        os.makedirs(self.logdir, exist_ok=True)
        # Keep the last three runs' logs.
        runs = sorted(d for d in os.listdir(self.base) if d.startswith("run-"))
        for d in runs[:-3]:
            shutil.rmtree(os.path.join(self.base, d), ignore_errors=True)
        shutil.rmtree(self.minio_dir, ignore_errors=True)
        os.makedirs(self.minio_dir)

    def start_minio(self):
        for port in (MINIO_PORT, MINIO_PORT + 1, PROXY_PORT):
            if not port_free(port):
                sys.exit(f"port {port} is in use (another chaos run?); set CHAOS_MINIO_PORT / CHAOS_PROXY_PORT")
        if not os.access(MINIO_BIN, os.X_OK):
            sys.exit(f"no MinIO binary at {MINIO_BIN} (make install builds it)")
        out = open(os.path.join(self.work, "minio.log"), "w")
        self.minio = subprocess.Popen(
            [MINIO_BIN, "server", self.minio_dir, "--address", f"127.0.0.1:{MINIO_PORT}",
             "--console-address", f"127.0.0.1:{MINIO_PORT + 1}"], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
            env={**ENV, "MINIO_ROOT_USER": USER, "MINIO_ROOT_PASSWORD": PASSWORD, "MINIO_BROWSER": "off"})
        if not wait_http(f"{MINIO}/minio/health/live", 60):
            sys.exit(f"MinIO did not start; see {out.name}")
        s3 = s3_client()
        for b in (LANDING, LAKE):
            s3.create_bucket(Bucket=b)
        log(f"MinIO on {MINIO} (data {self.minio_dir}), buckets {LANDING}, {LAKE}")

    def start_proxy(self):
        self.proxy_stats = os.path.join(self.work, "proxy-stats.json")
        self.fault_log = os.path.join(self.work, "faults.jsonl")
        rate, commit_rate = self.args.fault_rate, self.args.commit_fault_rate
        out = open(os.path.join(self.work, "proxy.log"), "w")
        self.proxy_cmd = [sys.executable, os.path.join(HERE, "chaos_proxy.py"), "--listen", str(PROXY_PORT),
                          "--upstream", f"127.0.0.1:{MINIO_PORT}", "--seed", str(self.seed), "--rate", str(rate),
                          "--commit-rate", str(commit_rate), "--category-rates", self.category_rates(),
                          "--stats", self.proxy_stats, "--log", self.fault_log]
        self.proxy = subprocess.Popen(self.proxy_cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                      preexec_fn=die_with_parent)
        if not wait_http(f"{PROXY}/__chaos/stats", 20):
            sys.exit(f"the proxy did not start; see {out.name}")
        log(f"proxy on {PROXY} -> {MINIO}: fault rate {rate}, commit fault rate {commit_rate}, seed {self.seed}")

    def category_rates(self):
        """The reads of log entries dominate the requests (~85%); landing objects and data files are rarer
        and get a higher rate, so each path sees faults."""
        r = self.args.fault_rate
        return ",".join(f"{c}={min(1.0, r * m):g}" for c, m in
                        (("landing_get", 4), ("landing_head", 2), ("data_get", 2), ("data_put", 2), ("log_put", 2),
                         ("list", 1), ("log_get", 0.6)))

    def stop_infra(self):
        for name, p in (("proxy", self.proxy), ("minio", self.minio)):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for p in self.procs:
            if p.p.poll() is None:
                p.p.kill()
                p.p.wait()

    def write_config(self):
        storage = f'''aws_endpoint_url = "{PROXY}"
aws_access_key_id = "{USER}"
aws_secret_access_key = "{PASSWORD}"
aws_region = "us-east-1"
aws_allow_http = "true"
'''
        tables = '''
[[table]]
name = "orders"
format = "jsonl"
columns = ["id long not null", "customer_id long", "amount long", "seq long not null", "deleted boolean"]
keys = ["id"]
sequence_by = "seq"
delete_column = "deleted"
target_file_size_mb = 0.05

# Debezium change events (PostgreSQL connector, unwrapped); bronze keeps the envelopes, silver the rows.
[[table]]
name = "customers"
format = "jsonl"
cdc = "debezium"
keys = ["id"]
sequence_by = "source.lsn"
row_columns = ["id long not null", "name string", "region string"]

# AWS DMS CDC files: CSV without header, Op, commit timestamp, then the row.
[[table]]
name = "payments"
format = "csv"
csv_header = false
cdc = "dms"
keys = ["payment_id"]
sequence_by = "commit_ts"
columns = ["Op string", "commit_ts timestamp", "payment_id long not null", "order_id long", "method string", "amount long"]
target_file_size_mb = 0.05

# SCD type 2: every version of an account.
[[table]]
name = "accounts"
format = "jsonl"
columns = ["id long not null", "owner string", "balance long", "seq long not null", "deleted boolean"]
keys = ["id"]
sequence_by = "seq"
delete_column = "deleted"
scd_type = 2
'''
        views = "".join(f'''
[[gold]]
name = "{name}"
sql = "{v['sql']}"
keys = {json.dumps(v['keys'])}
sources = {json.dumps(v['sources'])}
''' for name, v in VIEWS.items())
        self.config = os.path.join(self.work, "pipeline.toml")
        with open(self.config, "w") as f:
            f.write(f"""# Chaos run {self.run_id}, seed {self.seed}: landing and lake through the fault proxy.
[landing]
uri = "s3://{LANDING}"
[landing.storage]
{storage}
[lake]
uri = "{LAKE_URI}"
[lake.storage]
{storage}
{tables}{views}""")

    def generate(self):
        n_customers = max(10, int(self.events_total * SHAPES["customers"]["share"] * SHAPES["customers"]["keys_per_event"]))
        self.events, self.objects = {}, []
        min_rows, max_rows = (3, 20) if self.quick else (5, 40)
        for table, shape in SHAPES.items():
            n = int(round(self.events_total * shape["share"]))
            self.events[table] = generate_events(random.Random(f"{self.seed}/{table}"), table, n, n_customers)
            self.objects += build_objects(random.Random(f"{self.seed}/{table}/objects"), table, self.events[table],
                                          min_rows, max_rows)
        s3 = s3_client()
        for o in self.objects:
            r = s3.put_object(Bucket=LANDING, Key=o["key"], Body=o["body"])
            o["etag"] = r["ETag"].strip('"')
            o["size"] = len(o["body"])
        ops = collections.Counter()
        for table, es in self.events.items():
            for e in es:
                ops[(table, e["op"])] += 1
        self.ops = ops
        self.reemitted = sum(len(o["lines"]) for o in self.objects) - sum(len(es) for es in self.events.values())
        log(f"{sum(len(es) for es in self.events.values())} events ({self.reemitted} re-emitted by the source) in "
            f"{len(self.objects)} landing objects, uploaded")

    # -- deliveries (the queue) ----------------------------------------------------------------------------

    def plan_deliveries(self):
        rng = random.Random(f"{self.seed}/deliveries")
        n_dup = int(round(len(self.objects) * DUPLICATE_SHARE))
        deliveries = list(range(len(self.objects))) + [rng.randrange(len(self.objects)) for _ in range(n_dup)]
        rng.shuffle(deliveries)
        self.n_duplicates = n_dup
        # message: {id, obj, receives}; released at a steady pace over the arrival window.
        self.messages = [{"id": f"msg-{i:06d}", "obj": o, "receives": 0, "acked": False}
                         for i, o in enumerate(deliveries)]
        self.arrivals = [(self.arrival_s * i / max(1, len(self.messages)), i) for i in range(len(self.messages))]
        self.queue = []  # heap of (visible_at, tiebreak, message index)
        self.next_arrival = 0

    def sqs_event(self, msg_ids):
        records = []
        for mid in msg_ids:
            m = self.messages[mid]
            o = self.objects[m["obj"]]
            m["receives"] += 1
            s3rec = {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                     "eventTime": "2026-11-30T00:00:00.000Z", "eventName": "ObjectCreated:Put",
                     "s3": {"s3SchemaVersion": "1.0", "configurationId": "chaos",
                            "bucket": {"name": LANDING, "arn": f"arn:aws:s3:::{LANDING}"},
                            "object": {"key": o["key"], "eTag": o["etag"], "size": o["size"]}}}
            records.append({"messageId": m["id"], "receiptHandle": f"rh-{m['id']}-{m['receives']}",
                            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:chaos-bronze",
                            "awsRegion": "us-east-1", "attributes": {"ApproximateReceiveCount": str(m["receives"])},
                            "body": json.dumps({"Records": [s3rec]})})
        return {"Records": records}

    # -- processes -----------------------------------------------------------------------------------------

    def launch(self, kind, name, args, meta=None, kill_share=0.0, kill_window=(0.05, 4.0)):
        self.seqno += 1
        kill_at = None
        if self.kill_rng.random() < kill_share:
            kill_at = time.time() + self.kill_rng.uniform(*kill_window)
        p = Proc(kind, name, [BIN, *args], self.logdir, self.seqno, meta, kill_at)
        self.procs.append(p)
        self.stats[f"{kind} started"] += 1
        return p

    def start_ingest(self, batch):
        path = os.path.join(self.work, "events", f"ingest-{self.seqno + 1:05d}.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(self.sqs_event(batch), f)
        return self.launch("ingest", f"b{len(batch)}", ["ingest", "--config", self.config, path],
                           {"batch": batch}, self.kill_share["ingest"] if self.chaos_on else 0)

    def start_silver_wave(self, table):
        # 8 concurrent steps on one table; a seeded number of them is killed at a random moment.
        kills = set(self.kill_rng.sample(range(self.silver_wave), self.kill_rng.randint(0, 3))) \
            if self.chaos_on and not self.args.calm else set()
        for i in range(self.silver_wave):
            self.launch("silver", table, ["silver", "--config", self.config, "--table", table], {"table": table},
                        1.0 if i in kills else 0.0, (0.05, 5.0))

    def start_gold_wave(self, view):
        for _ in range(self.gold_wave):
            self.launch("gold", view, ["gold", "--config", self.config, "--view", view], {"view": view},
                        self.kill_share["gold"] if self.chaos_on else 0, (0.05, 5.0))

    def running(self, kind):
        return [p for p in self.procs if p.kind == kind]

    def reap(self):
        now = time.time()
        for p in list(self.procs):
            if p.p.poll() is None:
                if p.kill_at is not None and now >= p.kill_at and not p.killed:
                    p.p.send_signal(signal.SIGKILL)
                    p.killed = True
                    self.stats[f"{p.kind} killed"] += 1
                elif now - p.started > self.watchdog_s.get(p.kind, self.watchdog_default_s) and not p.hung:
                    p.hung = True
                    self.hangs.append((p.kind, p.name, round(now - p.started), p.err_path))
                    log(f"WATCHDOG: {p.kind} {p.name} running {now - p.started:.0f} s; killing ({p.err_path})")
                    p.p.send_signal(signal.SIGKILL)
                continue
            self.procs.remove(p)
            p.finish()
            self.done.append(p)
            self.on_exit(p)

    def on_exit(self, p):
        if "panicked at" in p.stderr:
            self.panics.append((p.kind, p.name, p.err_path,
                                next(line for line in p.stderr.splitlines() if "panicked at" in line)))
        retries = len(re.findall(r"backing off", p.stderr))
        self.stats[f"{p.kind} object_store retries"] += retries
        self.stats[f"{p.kind} commit-race warnings"] += len(re.findall(r"lost a commit race", p.stderr))
        ok = p.rc == 0
        if p.killed and p.rc == -signal.SIGKILL:
            self.stats[f"{p.kind} killed mid-run"] += 1
        elif p.killed:
            self.stats[f"{p.kind} kill came after exit"] += 1
        if not ok and not p.killed and not p.hung:
            self.stats[f"{p.kind} failed"] += 1
            self.note_error(p)
        if ok:
            self.stats[f"{p.kind} ok"] += 1
        if p.kind == "ingest":
            self.on_ingest_exit(p, ok)
        elif p.kind in ("silver", "gold") and ok:
            try:
                out = json.loads(p.stdout.strip().splitlines()[-1])
                self.stats[f"{p.kind} commit-race re-runs"] += max(0, out.get("attempts", 1) - 1)
                if out.get("version") is not None:
                    self.stats[f"{p.kind} commits"] += 1
            except (ValueError, IndexError):
                self.findings.append((f"{p.kind} exited 0 without a JSON summary", p.out_path))

    def on_ingest_exit(self, p, ok):
        batch = p.meta["batch"]
        failed = set(batch)
        if ok:
            try:
                resp = json.loads(p.stdout)
                ids = {f["itemIdentifier"] for f in resp.get("batchItemFailures", [])}
                failed = {i for i in batch if self.messages[i]["id"] in ids}
                self.stats["ingest batchItemFailures"] += len(failed)
            except ValueError:
                self.findings.append(("ingest exited 0 with unparsable output", p.out_path))
        for i in batch:
            if i in failed:
                # Back to the queue after a visibility timeout (compressed): at-least-once.
                heapq.heappush(self.queue, (time.time() + self.kill_rng.uniform(0.5, 3.0), self.kill_rng.random(), i))
                self.stats["messages redelivered"] += 1
            else:
                self.messages[i]["acked"] = True

    # -- phases --------------------------------------------------------------------------------------------

    def chaos_phase(self):
        self.chaos_on = True
        t0 = time.time()
        tables, views = list(SHAPES), list(VIEWS)
        silver_rr = gold_rr = 0
        last_maintain = t0
        maintain_targets = list(SHAPES) + list(VIEWS)
        maintain_rr = 0
        drain_silver, drain_gold = None, None
        quiet = False
        last_log = 0
        while True:
            now = time.time()
            self.reap()
            if now - t0 > self.deadline_s:
                log("deadline: chaos phase did not become quiet")
                self.checks.append(("chaos phase became quiet before the deadline", False,
                                    f"{sum(not m['acked'] for m in self.messages)} deliveries never acknowledged"))
                break
            while self.next_arrival < len(self.arrivals) and t0 + self.arrivals[self.next_arrival][0] <= now:
                heapq.heappush(self.queue, (now, self.kill_rng.random(), self.arrivals[self.next_arrival][1]))
                self.next_arrival += 1
            # Bronze: SQS-style batches of 1-10 visible messages.
            while len(self.running("ingest")) < self.bronze_workers and self.queue and self.queue[0][0] <= now:
                batch = []
                size = self.kill_rng.randint(1, 10)
                while self.queue and self.queue[0][0] <= now and len(batch) < size:
                    batch.append(heapq.heappop(self.queue)[2])
                self.start_ingest(batch)
            bronze_quiet = (self.next_arrival == len(self.arrivals) and not self.queue and not self.running("ingest"))
            if bronze_quiet and drain_silver is None:
                log(f"every delivery acknowledged after {now - t0:.0f} s; one more silver wave per table and gold "
                    f"wave per view{'' if self.args.calm else ' (still under faults)'}")
                drain_silver, drain_gold = list(tables), list(views)
            # Silver: waves of 8 concurrent steps on one table, up to `silver_slots` tables at once, in turn; a
            # table's next wave starts when its last one has finished.
            busy = {p.meta["table"] for p in self.running("silver")}
            if len(busy) < self.silver_slots:
                if drain_silver is None:
                    nxt = next((tables[(silver_rr + i) % len(tables)] for i in range(len(tables))
                                if tables[(silver_rr + i) % len(tables)] not in busy), None)
                    if nxt:
                        self.start_silver_wave(nxt)
                        silver_rr = tables.index(nxt) + 1
                elif drain_silver:
                    nxt = next((t for t in drain_silver if t not in busy), None)
                    if nxt:
                        drain_silver.remove(nxt)
                        self.start_silver_wave(nxt)
            # Gold: the same per view (in the drain: after the last silver wave).
            busy = {p.meta["view"] for p in self.running("gold")}
            if len(busy) < self.gold_slots:
                if drain_gold is None:
                    nxt = next((views[(gold_rr + i) % len(views)] for i in range(len(views))
                                if views[(gold_rr + i) % len(views)] not in busy), None)
                    if nxt:
                        self.start_gold_wave(nxt)
                        gold_rr = views.index(nxt) + 1
                elif drain_gold and not drain_silver and not self.running("silver"):
                    nxt = next((v for v in drain_gold if v not in busy), None)
                    if nxt:
                        drain_gold.remove(nxt)
                        self.start_gold_wave(nxt)
            if drain_silver is None and not self.args.no_maintain and now - last_maintain > self.maintain_every \
                    and not self.running("maintain"):
                last_maintain = now
                target = maintain_targets[maintain_rr % len(maintain_targets)]
                maintain_rr += 1
                self.launch("maintain", target, ["maintain", "--config", self.config, "--table", target], {},
                            self.kill_share["maintain"], (0.5, 8.0))
            if drain_silver == [] and drain_gold == [] and not self.procs:
                quiet = True
                break
            if now - last_log > 20:
                last_log = now
                acked = sum(m["acked"] for m in self.messages)
                log(f"t={now - t0:.0f}s deliveries acked {acked}/{len(self.messages)}, queue {len(self.queue)}, "
                    f"running {len(self.procs)}, killed {sum(v for k, v in self.stats.items() if k.endswith('killed mid-run'))}, "
                    f"faults {self.proxy_faults_total()}")
            time.sleep(0.1)
        # Whatever still runs (deadline) is stopped.
        for p in self.procs:
            p.p.kill()
        while self.procs:
            self.reap()
            time.sleep(0.1)
        self.timings["chaos phase"] = time.time() - t0
        if quiet:
            self.checks.append(("chaos phase became quiet (every delivery acknowledged)", True,
                                f"after {self.timings['chaos phase']:.0f} s"))
        self.chaos_on = False

    def proxy_faults_total(self):
        try:
            with open(self.proxy_stats) as f:
                return json.load(f)["total_faults"]
        except (OSError, ValueError, KeyError):
            return "?"

    def run_clean(self, kind, name, args):
        """One step with faults off; waits for it; a failure is a failed check."""
        p = self.launch(kind, name, args)
        try:
            p.p.wait(timeout=self.watchdog_default_s)
        except subprocess.TimeoutExpired:
            p.hung = True
            self.hangs.append((kind, name, self.watchdog_default_s, p.err_path))
            log(f"WATCHDOG: {kind} {name} running {self.watchdog_default_s} s without faults; killing ({p.err_path})")
            p.p.kill()
            p.p.wait()
        self.procs.remove(p)
        p.finish()
        self.done.append(p)
        if "panicked at" in p.stderr:
            self.panics.append((p.kind, p.name, p.err_path,
                                next(line for line in p.stderr.splitlines() if "panicked at" in line)))
        self.stats[f"{kind} {'ok' if p.rc == 0 else 'failed'}"] += 1
        self.stats[f"{kind} object_store retries"] += len(re.findall(r"backing off", p.stderr))
        if p.rc != 0:
            self.note_error(p)
        return p

    def note_error(self, p):
        sig = error_signature(p.stderr)
        self.errors[(p.kind, sig)] += 1
        self.error_example.setdefault((p.kind, sig), p.err_path)
        if not explained_by_fault(p):
            self.unexplained[(p.kind, sig)] += 1

    def catch_up(self):
        t0 = time.time()
        self.final_stats = proxy_call("/__chaos/faults/off", "POST")
        log(f"faults off: {self.final_stats['total_faults']} injected over {self.final_stats['total_requests']} requests")
        # 1. Bronze as the chaos left it (before any clean redelivery could hide a lost object).
        self.bronze_before = {t: self.read_table(f"bronze/{t}") for t in SHAPES}
        self.bronze_versions_before = {t: self.table_version(f"bronze/{t}") for t in SHAPES}
        # 2. Every object delivered once more, clean: must commit nothing.
        failed_clean = []
        for t in SHAPES:
            ids = [i for i, m in enumerate(self.messages) if self.objects[m["obj"]]["table"] == t]
            seen, batch_ids = set(), []
            for i in ids:
                if self.messages[i]["obj"] not in seen:
                    seen.add(self.messages[i]["obj"])
                    batch_ids.append(i)
            for j in range(0, len(batch_ids), 10):
                batch = batch_ids[j:j + 10]
                path = os.path.join(self.work, "events", f"redeliver-{t}-{j:05d}.json")
                with open(path, "w") as f:
                    json.dump(self.sqs_event(batch), f)
                p = self.run_clean("ingest-clean", t, ["ingest", "--config", self.config, path])
                try:
                    bad = json.loads(p.stdout).get("batchItemFailures", []) if p.rc == 0 else batch
                except ValueError:
                    bad = batch
                if bad:
                    failed_clean.append((t, j, p.rc, p.err_path))
        self.bronze_versions_after = {t: self.table_version(f"bronze/{t}") for t in SHAPES}
        new_commits = {t: (self.bronze_versions_after[t] or 0) - (self.bronze_versions_before[t] or 0) for t in SHAPES}
        self.checks.append(("clean redelivery of every object: all acknowledged", not failed_clean,
                            f"{len(failed_clean)} failed batches {failed_clean[:3]}"))
        self.checks.append(("clean redelivery of every object committed nothing to bronze (all already ingested)",
                            not any(new_commits.values()), f"new bronze commits per table: {new_commits}"))
        # 3. Clean silver steps (twice: the second must have nothing to do), then gold.
        for t in SHAPES:
            for attempt in (1, 2):
                p = self.run_clean("silver-clean", t, ["silver", "--config", self.config, "--table", t])
                out = self.last_json(p)
                ok = p.rc == 0 and (attempt == 1 or (out or {}).get("applied") is None)
                self.checks.append((f"clean silver step {attempt} on {t}" + (" (nothing left to apply)" if attempt == 2 else ""),
                                    ok, f"rc {p.rc}, " + (f"applied {out.get('applied')}, version {out.get('version')}, "
                                                          f"{out.get('changes')} changes" if out else error_signature(p.stderr))))
        for v in VIEWS:
            for attempt in (1, 2):
                p = self.run_clean("gold-clean", v, ["gold", "--config", self.config, "--view", v])
                out = self.last_json(p)
                ok = p.rc == 0 and (attempt == 1 or (out or {}).get("version") is None)
                self.checks.append((f"clean gold step {attempt} on {v}" + (" (nothing left to apply)" if attempt == 2 else ""),
                                    ok, f"rc {p.rc}, " + (f"applied {out.get('applied')}, version {out.get('version')}, "
                                                          f"{out.get('upserted')} upserted, {out.get('deleted')} deleted"
                                                          if out else error_signature(p.stderr))))
        p = self.run_clean("status", "all", ["status", "--config", self.config, "--json"])
        self.status_path = p.out_path
        self.timings["clean catch-up"] = time.time() - t0

    @staticmethod
    def last_json(p):
        try:
            return json.loads(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None

    # -- reading the lake directly (not through the proxy) ------------------------------------------------

    @staticmethod
    def table_version(path):
        from deltalake import DeltaTable
        try:
            return DeltaTable(f"{LAKE_URI}/{path}", storage_options=STORAGE_OPTIONS).version()
        except Exception:
            return None

    @staticmethod
    def read_table(path):
        """Rows as dicts (timestamps as integer microseconds), or None if there is no table."""
        import pyarrow as pa
        from deltalake import DeltaTable
        try:
            dt = DeltaTable(f"{LAKE_URI}/{path}", storage_options=STORAGE_OPTIONS)
        except Exception as e:
            if "no files in log segment" in str(e).lower() or "not a delta table" in str(e).lower() \
                    or "TableNotFound" in type(e).__name__ or "not found" in str(e).lower():
                return None
            raise
        t = dt.to_pyarrow_table()
        cols = {}
        for name in t.column_names:
            c = t.column(name)
            if pa.types.is_timestamp(c.type):
                c = c.cast(pa.timestamp("us", tz=c.type.tz)).cast(pa.int64())
            cols[name] = c.to_pylist()
        return [dict(zip(cols, vals)) for vals in zip(*cols.values())] if cols else []

    # -- the comparison ------------------------------------------------------------------------------------

    def compare(self):
        t0 = time.time()
        self.results = []  # (layer, name, expected, actual, lost, duplicated, resurrected, wrong, unexpected)
        expected_rows = {}
        for o in self.objects:
            for row_no, e in enumerate(o["lines"], start=1):
                expected_rows[(o["key"], row_no)] = e["seq"]
        by_table = collections.defaultdict(dict)
        for (key, row_no), seq in expected_rows.items():
            by_table[key.split("/", 1)[0]][(key, row_no)] = seq
        for label, bronze in (("bronze (after chaos, before redelivery)", self.bronze_before),
                              ("bronze (final)", {t: self.read_table(f"bronze/{t}") for t in SHAPES})):
            for t in SHAPES:
                self.results.append(self.compare_bronze(label, t, by_table[t], bronze[t] or []))
        oracle = {t: oracle_silver(t, self.events[t]) for t in SHAPES}
        for t in SHAPES:
            rows = self.read_table(f"silver/{t}") or []
            if t == "accounts":
                self.results.append(self.compare_scd2(t, oracle[t], rows))
            else:
                self.results.append(self.compare_scd1(t, oracle[t], rows))
        gold = oracle_gold(oracle)
        for v, spec in VIEWS.items():
            rows = self.read_table(f"gold/{v}") or []
            self.results.append(self.compare_gold(v, spec["keys"], gold[v], rows))
        self.quarantine = {}
        for t in SHAPES:
            rows = self.read_table(f"quarantine/{t}")
            self.quarantine[t] = rows or []
        n_quarantined = sum(len(r) for r in self.quarantine.values())
        self.checks.append(("no row quarantined (every generated row is valid)", n_quarantined == 0,
                            f"{n_quarantined} quarantine rows" + (
                                ": " + "; ".join(f"{t}: {r[0].get('reason', r[0])}" for t, r in self.quarantine.items() if r)
                                if n_quarantined else "")))
        for r in self.results:
            ok = all(r[k] == 0 for k in ("lost", "duplicated", "resurrected", "wrong", "unexpected")) \
                and r["expected"] == r["actual"]
            r["ok"] = ok
            self.checks.append((f"oracle: {r['layer']} {r['name']}", ok,
                                f"expected {r['expected']}, actual {r['actual']}, lost {r['lost']}, duplicated "
                                f"{r['duplicated']}, resurrected {r['resurrected']}, wrong {r['wrong']}, unexpected {r['unexpected']}"
                                + (f"; e.g. {r['examples']}" if r.get("examples") else "")))
        self.timings["oracle comparison"] = time.time() - t0

    @staticmethod
    def result(layer, name, expected, actual, lost=0, duplicated=0, resurrected=0, wrong=0, unexpected=0, examples=None):
        return {"layer": layer, "name": name, "expected": expected, "actual": actual, "lost": lost,
                "duplicated": duplicated, "resurrected": resurrected, "wrong": wrong, "unexpected": unexpected,
                "examples": (examples or [])[:3]}

    def compare_bronze(self, label, table, expected, rows):
        counts = collections.Counter((r["_source_key"], r["_source_row"]) for r in rows)
        lost = [k for k in expected if k not in counts]
        dup = sum(c - 1 for c in counts.values() if c > 1)
        unexpected = [k for k in counts if k not in expected]
        # Content: the sequence of the event at that position (seq, source.lsn or commit_ts).
        wrong = []
        for r in rows:
            k = (r["_source_key"], r["_source_row"])
            if k not in expected:
                continue
            got = r.get("seq")
            if table == "payments":
                got = r.get("commit_ts")
                want = seq_value(table, expected[k])
            elif table == "customers":
                got = None  # the envelope's lsn lives in a nested column; positions are checked
                want = None
            else:
                want = expected[k]
            if got != want:
                wrong.append((k, got, want))
        ex = [f"lost {k}" for k in lost[:2]] + [f"dup {k}x{c}" for k, c in counts.items() if c > 1][:2] + \
             [f"wrong {w}" for w in wrong[:2]]
        dup_objects = sorted({k[0] for k, c in counts.items() if c > 1})
        lost_objects = sorted({k[0] for k in lost})
        if (dup_objects or lost_objects) and label.startswith("bronze (after"):
            self.bronze_forensics(table, dup_objects, lost_objects)
        return self.result(label, table, len(expected), len(rows), len(lost), dup, 0, len(wrong), len(unexpected), ex)

    def bronze_forensics(self, table, dup_objects, lost_objects):
        """Evidence for a bronze mismatch: the commits whose txn names each object (read from MinIO directly),
        and the ingest invocations its deliveries went to."""
        s3 = s3_client()
        commits = collections.defaultdict(list)  # object key -> [(version, commit time)]
        prefix = f"lake/bronze/{table}/_delta_log/"
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=LAKE, Prefix=prefix):
            for o in page.get("Contents", []):
                name = o["Key"].rsplit("/", 1)[1]
                if not re.fullmatch(r"\d{20}\.json", name):
                    continue
                body = s3.get_object(Bucket=LAKE, Key=o["Key"])["Body"].read().decode()
                actions = [json.loads(x) for x in body.splitlines() if x.strip()]
                ts = next((a["commitInfo"].get("timestamp") for a in actions if "commitInfo" in a), None)
                when = datetime.datetime.fromtimestamp(ts / 1000, datetime.timezone.utc).strftime("%H:%M:%S.%f")[:-3] \
                    if ts else "?"
                for a in actions:
                    if "txn" in a:
                        commits[a["txn"]["appId"].rsplit("@", 1)[0]].append((int(name[:20]), when))
        for kind, keys in (("ingested more than once", dup_objects), ("missing rows", lost_objects)):
            for key in keys[:3]:
                invocations = []
                for p in self.done:
                    if p.kind == "ingest" and any(self.objects[self.messages[i]["obj"]]["key"] == key
                                                  for i in p.meta["batch"]):
                        state = "killed" if p.killed else f"exit {p.rc}"
                        invocations.append(f"{os.path.basename(p.err_path)[:-4]} ({state}, started "
                                           f"{time.strftime('%H:%M:%S', time.localtime(p.started))})")
                versions = ", ".join(f"v{v} at {w}" for v, w in sorted(commits.get(key, []))) or "none"
                self.findings.append((f"bronze/{table}: object `{key}` {kind}: bronze commits carrying its "
                                      f"txn marker: {versions}; its deliveries went to ingest invocations "
                                      f"{', '.join(invocations)}", self.logdir))

    def compare_scd1(self, table, oracle, rows):
        live, deleted = oracle
        key = TABLE_KEY[table]
        counts = collections.Counter(r[key] for r in rows)
        got = {}
        for r in rows:
            got[r[key]] = tuple(r[c] for c in SILVER_COLS[table])
        lost = [k for k in live if k not in got]
        resurrected = [k for k in got if k in deleted]
        unexpected = [k for k in got if k not in live and k not in deleted]
        wrong = [(k, got[k], live[k]) for k in live if k in got and got[k] != live[k]]
        dup = sum(c - 1 for c in counts.values() if c > 1)
        ex = [f"lost key {k}" for k in lost[:2]] + [f"resurrected key {k}" for k in resurrected[:2]] + \
             [f"wrong key {w[0]}: got {w[1]} want {w[2]}" for w in wrong[:2]]
        return self.result("silver", table, len(live), len(rows), len(lost), dup, len(resurrected), len(wrong),
                           len(unexpected), ex)

    def compare_scd2(self, table, oracle, rows):
        versions, deleted = oracle
        key = TABLE_KEY[table]
        counts = collections.Counter((r[key], r["valid_from"]) for r in rows)
        got = {(r[key], r["valid_from"]): (r["owner"], r["balance"], r["valid_to"], r["is_current"]) for r in rows}
        lost = [k for k in versions if k not in got]
        unexpected = [k for k in got if k not in versions]
        wrong = [(k, got[k], versions[k]) for k in versions if k in got and got[k] != versions[k]]
        dup = sum(c - 1 for c in counts.values() if c > 1)
        current = collections.Counter(r[key] for r in rows if r["is_current"])
        dup += sum(c - 1 for c in current.values() if c > 1)
        resurrected = [k for k in current if k in deleted]
        ex = [f"lost version {k}" for k in lost[:2]] + [f"resurrected key {k}" for k in resurrected[:2]] + \
             [f"wrong version {w[0]}: got {w[1]} want {w[2]}" for w in wrong[:2]] + \
             [f"unexpected version {k}" for k in unexpected[:2]]
        return self.result("silver (SCD2 versions)", table, len(versions), len(rows), len(lost), dup,
                           len(resurrected), len(wrong), len(unexpected), ex)

    def compare_gold(self, view, keys, expected, rows):
        counts = collections.Counter(tuple(r[k] for k in keys) for r in rows)
        got = {tuple(r[k] for k in keys): (r["n"], r["total"]) for r in rows}
        lost = [k for k in expected if k not in got]
        # A group present in gold that the oracle does not have: every row of it was deleted (or never was).
        resurrected = [k for k in got if k not in expected]
        wrong = [(k, got[k], expected[k]) for k in expected if k in got and got[k] != expected[k]]
        dup = sum(c - 1 for c in counts.values() if c > 1)
        ex = [f"lost group {k}" for k in lost[:2]] + [f"extra group {k}" for k in resurrected[:2]] + \
             [f"group {w[0]}: got (n, total) {w[1]} want {w[2]}" for w in wrong[:2]]
        return self.result("gold", view, len(expected), len(rows), len(lost), dup, len(resurrected), len(wrong), 0, ex)

    # -- the report ----------------------------------------------------------------------------------------

    def report(self, wall):
        st = self.final_stats
        uname = " ".join(platform.uname()[i] for i in (0, 2, 4))
        try:
            mem = int(open("/proc/meminfo").read().split()[1]) / 2**20
        except Exception:
            mem = 0
        events = sum(len(es) for es in self.events.values())
        lines = ["# Chaos run: faults, kills and duplicate deliveries against an independent oracle", ""]
        ok = all(c[1] for c in self.checks)
        lines += [f"**Result: {'PASS' if ok else 'FAIL'}** — {sum(not c[1] for c in self.checks)} of {len(self.checks)} checks failed.", ""]
        lines += [f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; machine: {uname}, "
                  f"{os.cpu_count()} cores (shared), {mem:.0f} GB RAM",
                  f"- command: `{self.command}` (seed **{self.seed}**, {'quick' if self.quick else 'full'} run); "
                  f"binary `{BIN}`",
                  f"- wall time {wall / 60:.1f} min: " + ", ".join(f"{k} {v:.0f} s" for k, v in self.timings.items()),
                  f"- MinIO of its own on 127.0.0.1:{MINIO_PORT}; product → fault proxy 127.0.0.1:{PROXY_PORT} → MinIO "
                  f"(landing and lake); oracle reads MinIO directly with Python deltalake",
                  f"- logs of every process: `{self.logdir}`; faults injected, one JSON line each: `{self.fault_log}`", ""]
        lines += ["## Input", "",
                  "| table | format | events | inserts | updates | deletes | landing objects |", "|---|---|---|---|---|---|---|"]
        fmt = {"orders": "upsert JSON lines (30% gzip), delete flag", "customers": "Debezium JSON lines",
               "payments": "AWS DMS CSV (no header)", "accounts": "upsert JSON lines, SCD type 2"}
        for t in SHAPES:
            lines.append(f"| {t} | {fmt[t]} | {len(self.events[t])} | {self.ops[(t, 'I')]} | {self.ops[(t, 'U')]} | "
                         f"{self.ops[(t, 'D')]} | {sum(o['table'] == t for o in self.objects)} |")
        lines += ["", f"{events} events (sequence column per table, unique), {self.reemitted} of them also re-emitted by "
                  f"the source in a later object (bronze keeps both copies, silver must not care); "
                  f"{len(self.objects)} landing objects; **{len(self.messages)} deliveries = {len(self.objects)} + "
                  f"{self.n_duplicates} duplicates ({100 * self.n_duplicates / len(self.objects):.0f}%)**, shuffled, "
                  f"released over {self.arrival_s} s, SQS-style batches of 1-10; failed items and failed or killed "
                  f"invocations redelivered after 0.5-3 s (max receives of one message: "
                  f"{max(m['receives'] for m in self.messages)}).", ""]
        lines += ["Gold views (SQL in the pipeline file, recomputed in Python from the oracle's silver):", ""]
        for v, spec in VIEWS.items():
            lines.append(f"- `{v}`: `{spec['sql']}`")
        lines += ["", "## Faults injected by the proxy (seeded)", "",
                  f"{st['total_faults']} faults over {st['total_requests']} requests; fault probability per request "
                  f"category: " + ", ".join(f"{k} {v:g}" for k, v in st.get("rates", {}).items()) + ".", "",
                  "| kind | count |", "|---|---|"]
        for k, v in sorted(st["faults"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {k} | {v} |")
        lines += ["", "Kinds: `err500`/`err503` answered without forwarding; `reset` = TCP RST without forwarding; "
                  "`timeout` = request held (1-6 s, 15% of them 31-36 s: past the client's 30 s timeout), then the "
                  "connection dropped; `slow` = forwarded, response delayed 0.3-3 s and trickled; `reset_mid_body` = "
                  "forwarded, head and part of the body sent, then RST. On Delta commit PUTs (`_delta_log/N.json`): "
                  "`commit_fail_*` = failed BEFORE forwarding (no commit), `commit_lost_ack_*` = forwarded, the "
                  "commit landed in MinIO, then answered 500 / reset / held and dropped (the client believes it failed).",
                  "", "<details><summary>per request category</summary>", "", "| kind and category | count |", "|---|---|"]
        for k, v in sorted(st["faults_by_category"].items()):
            lines.append(f"| {k} | {v} |")
        lines += ["", "| category | requests |", "|---|---|"]
        for k, v in sorted(st["requests"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {k} | {v} |")
        lines += ["", "</details>", "", "## Processes", "",
                  "| kind | started | ok | failed (error exit) | killed mid-run (SIGKILL) | object_store retries logged | "
                  "commit-race re-runs |", "|---|---|---|---|---|---|---|"]
        for kind in ("ingest", "silver", "gold", "maintain", "ingest-clean", "silver-clean", "gold-clean"):
            s = self.stats
            if not s[f"{kind} started"]:
                continue
            lines.append(f"| {kind} | {s[f'{kind} started']} | {s[f'{kind} ok']} | {s[f'{kind} failed']} | "
                         f"{s[f'{kind} killed mid-run']} | {s[f'{kind} object_store retries']} | "
                         f"{s[f'{kind} commit-race re-runs'] + s[f'{kind} commit-race warnings'] if kind == 'ingest' else s[f'{kind} commit-race re-runs']} |")
        waves = collections.Counter((p.kind, p.meta.get("table") or p.meta.get("view")) for p in self.done
                                    if p.kind in ("silver", "gold"))
        lines += ["", f"Silver: waves of {self.silver_wave} concurrent `lakehouse silver` on one table (0-3 of each "
                  f"wave killed), {self.silver_slots} tables' waves at a time (waves per table: "
                  + ", ".join(f"{t} {waves[('silver', t)] // self.silver_wave}" for t in SHAPES)
                  + f"); gold: waves of {self.gold_wave} concurrent steps per view, {self.gold_slots} views at a time; "
                  f"ingest: {self.bronze_workers} at once; `lakehouse maintain --table T` every {self.maintain_every} s, "
                  f"tables and views in turn (compaction, checkpoint, log cleanup, vacuum racing the steps)"
                  f"{' (off)' if self.args.no_maintain else ''}. Bronze batchItemFailures: "
                  f"{self.stats['ingest batchItemFailures']}; messages redelivered: {self.stats['messages redelivered']}.", ""]
        if self.errors:
            lines += ["Errors the failed steps reported (first `error:` line; numbers masked). *fault* = a storage "
                      "failure an injected fault explains (the step failed and its work was retried); **no** = a "
                      "finding (see Findings):", "",
                      "| process | error | count | fault? | example log |", "|---|---|---|---|---|"]
            for (kind, sig), n in self.errors.most_common(25):
                fault = "**no**" if (kind, sig) in self.unexplained else "fault"
                lines.append(f"| {kind} | `{sig.replace('|', '/')}` | {n} | {fault} | "
                             f"`{os.path.relpath(self.error_example[(kind, sig)], self.work)}` |")
            lines.append("")
        lines += ["## Oracle comparison (after quiet and the clean catch-up)", "",
                  "| layer | table / view | expected | actual | lost | duplicated | resurrected | wrong | unexpected | ok |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.results:
            lines.append(f"| {r['layer']} | {r['name']} | {r['expected']} | {r['actual']} | {r['lost']} | "
                         f"{r['duplicated']} | {r['resurrected']} | {r['wrong']} | {r['unexpected']} | "
                         f"{'yes' if r['ok'] else '**NO**'} |")
        tot = {k: sum(r[k] for r in self.results) for k in ("lost", "duplicated", "resurrected", "wrong", "unexpected")}
        lines += ["", f"**Totals: {tot['lost']} lost / {tot['duplicated']} duplicated / {tot['resurrected']} resurrected "
                  f"/ {tot['wrong']} wrong / {tot['unexpected']} unexpected.**", "",
                  "Bronze: one row per (`_source_key`, `_source_row`) of every landing object, and the row's sequence "
                  "matches the generated event at that position. Silver (SCD1): the latest event per key by sequence, "
                  "deletes applied; resurrected = a key whose latest event is a delete. Silver (SCD2): every version "
                  "(key, valid_from) with valid_to = the key's next event, is_current; resurrected = a current version "
                  "of a deleted key. Gold: the view's groups (n, total); resurrected = a group the oracle does not have.",
                  "", "## Checks", ""]
        for name, good, detail in self.checks:
            lines.append(f"- {'✅' if good else '❌'} {name} — {detail}")
        lines += ["", "## Findings", ""]
        if not (self.panics or self.hangs or self.findings or self.unexplained):
            lines.append("No panic, no process past the watchdog, no error that an injected fault does not explain.")
        for (kind, sig), n in self.unexplained.most_common():
            lines.append(f"- {kind} failed {n}x with an error no injected fault explains: `{sig}` "
                         f"(e.g. `{self.error_example[(kind, sig)]}`)")
        for kind, name, path, line in self.panics:
            lines.append(f"- PANIC in {kind} {name}: `{line.strip()}` ({path})")
        for kind, name, secs, path in self.hangs:
            lines.append(f"- {kind} {name} still running after {secs} s (watchdog "
                         f"{self.watchdog_s.get(kind, self.watchdog_default_s)} s), killed ({path})")
        for title, path in self.findings:
            lines.append(f"- {title} ({path})")
        lines += ["", f"Reproduce: `CHAOS_SEED={self.seed} make chaos{' CHAOS_ARGS=--quick' if self.quick else ''}` "
                  "(the fault schedule is a function of the seed and each request's identity and occurrence; process "
                  "timing still varies run to run, so a race may show in one run and not the next). Deterministic "
                  "reproductions of earlier findings, without random faults: `python bench/chaos_repro.py "
                  "bronze-create-race` and `python bench/chaos_repro.py gold-empty-view`."]
        return "\n".join(lines) + "\n"

    # -- main ----------------------------------------------------------------------------------------------

    def run(self):
        t0 = time.time()
        argv = " ".join(sys.argv[1:])
        seed_env = f"CHAOS_SEED={ENV['CHAOS_SEED']} " if ENV.get("CHAOS_SEED") else ""
        self.command = (f"{seed_env}make chaos" + (f" CHAOS_ARGS='{argv}'" if argv else "")) if ENV.get("MAKELEVEL") \
            else f"{seed_env}python bench/chaos.py {argv}".strip()
        if not os.access(BIN, os.X_OK):
            sys.exit(f"no lakehouse binary at {BIN} (set LAKEHOUSE_CLI)")
        self.prepare_dirs()
        log(f"seed {self.seed}, {'quick' if self.quick else 'full'} run, work dir {self.work}, binary {BIN}")
        try:
            self.start_minio()
            self.start_proxy()
            self.write_config()
            ts = time.time()
            self.generate()
            self.timings["generate + upload"] = time.time() - ts
            self.plan_deliveries()
            self.chaos_phase()
            self.catch_up()
            self.compare()
        finally:
            self.stop_infra()
        if self.panics:
            self.checks.append(("no process panicked", False, f"{len(self.panics)} panics"))
        self.checks.append(("no process outlived the watchdog", not self.hangs, f"{len(self.hangs)} processes"))
        wall = time.time() - t0
        text = self.report(wall)
        os.makedirs(RESULTS, exist_ok=True)
        # `make test` runs --quick: it must not overwrite the full run's committed report.
        with open(os.path.join(RESULTS, "chaos-quick.md" if self.quick else "chaos.md"), "w") as f:
            f.write(text)
        with open(os.path.join(self.work, "chaos.md"), "w") as f:
            f.write(text)
        failed = [c for c in self.checks if not c[1]]
        tot = {k: sum(r[k] for r in self.results) for k in ("lost", "duplicated", "resurrected", "wrong")}
        st = self.final_stats
        print(f"chaos seed {self.seed} ({'quick' if self.quick else 'full'}): {sum(len(e) for e in self.events.values())} "
              f"events, {len(self.objects)} objects, {len(self.messages)} deliveries ({self.n_duplicates} duplicates); "
              f"{st['total_faults']} faults injected ({', '.join(f'{k} {v}' for k, v in sorted(st['faults'].items()))}); "
              f"killed: " + ", ".join(f"{k} {self.stats[f'{k} killed mid-run']}" for k in ("ingest", "silver", "gold", "maintain")))
        for r in self.results:
            print(f"  {'ok ' if r['ok'] else 'BAD'} {r['layer']:<40} {r['name']:<16} expected {r['expected']:>6} actual "
                  f"{r['actual']:>6}  lost {r['lost']} dup {r['duplicated']} resurrected {r['resurrected']} wrong {r['wrong']}")
        print(f"TOTAL: {tot['lost']} lost / {tot['duplicated']} duplicated / {tot['resurrected']} resurrected / "
              f"{tot['wrong']} wrong; {len(failed)} of {len(self.checks)} checks failed; {wall / 60:.1f} min; "
              f"report bench/results/{'chaos-quick.md' if self.quick else 'chaos.md'}")
        for name, _, detail in failed:
            print(f"  FAILED: {name} — {detail}")
        return 1 if failed else 0


def main():
    # Second in line for the CPU: the run shares a small machine (and its compiler) with others.
    try:
        os.nice(10)
    except OSError:
        pass
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="~1,000 events, a couple of minutes")
    p.add_argument("--seed", type=int, default=int(ENV.get("CHAOS_SEED", "42")), help="default $CHAOS_SEED or 42")
    p.add_argument("--events", type=int, help="total events (default 12,000; 1,000 with --quick)")
    p.add_argument("--arrival-seconds", type=int, help="window over which deliveries are released")
    p.add_argument("--fault-rate", type=float, default=0.05, help="fault probability of an ordinary request")
    p.add_argument("--commit-fault-rate", type=float, default=0.25, help="fault probability of a Delta commit PUT")
    p.add_argument("--no-maintain", action="store_true", help="no `lakehouse maintain` during the chaos phase")
    p.add_argument("--calm", action="store_true", help="baseline: no faults and no kills (checks harness and oracle)")
    args = p.parse_args()
    # SIGTERM (an interrupted make) unwinds like Ctrl-C: MinIO, the proxy and the steps are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(Chaos(args).run())


if __name__ == "__main__":
    main()
