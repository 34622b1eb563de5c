"""Independent readers of the product's tables (make bench-readers): a small lake built with the product on
MinIO, then every table it wrote opened by Spark + Delta, DuckDB (delta extension) and polars, each compared
row for row with Python deltalake's reading of the same version.

    bench/readers.py            (runs in $LAKEHOUSE_HOME/venv-spark: `infra/local/install.sh spark`)

Env: LAKEHOUSE_CLI (default $CARGO_TARGET_DIR/release/lakehouse), MINIO_ENDPOINT, MINIO_ROOT_USER,
MINIO_ROOT_PASSWORD, LAKE_BUCKET, LAKEHOUSE_STATE, READERS_ROUNDS (3), BENCH_RESULTS (bench/results);
READERS_REUSE=1 reads the lake the last run built again instead of building one; READERS_LOG sets the
CLI's RUST_LOG.

1. The lake: four tables and four gold views, each kind the product writes: `orders` (upserts with a delete
   flag, decimal / timestamp / date / double columns, a few bad rows: quarantine), `customers` (Debezium),
   `payments` (AWS DMS CSV without header), `accounts` (SCD type 2); views over one table, a join, the
   current SCD2 rows and the DMS table. READERS_ROUNDS rounds of landing objects (inserts, then updates,
   deletes, late events), each followed by `lakehouse backfill` (one bronze commit per object), and
   `lakehouse maintain` before the last round (compaction commits, checkpoints), so every table has several
   versions, some read through a checkpoint, and silver's change feed holds inserts, updates and deletes.
2. Every Delta table under the lake (found by listing `_delta_log/`: bronze, quarantine, silver, silver
   tombstones, gold) is read at its current version by Python deltalake (the reference) and by:
   - Spark 4 + delta-spark: count, rows, `readChangeFeed` from the first version with the change data feed
     to the current one (compared with deltalake's `load_cdf` on the data columns, `_change_type` and
     `_commit_version`; `_commit_timestamp` differs by design: Spark takes the commit file's mtime), and
     time travel to the previous version (`versionAsOf`);
   - DuckDB + the delta extension (loaded by path from its PyPI package): `delta_scan` over s3 with a
     secret pointing at MinIO, and `version =>` one back;
   - polars: `read_delta` with storage options, and `version=` one back.
   Rows are compared as multisets of tuples, values normalised (timestamps to UTC microseconds, decimals to
   their exact value, structs and lists recursively). The product's own count (`lakehouse status --json`)
   is checked against deltalake's too.
3. bench/results/readers.md (and .json): table x reader -> rows, equal, CDF, time travel; exit 1 if any
   reader disagrees or fails.
"""
import collections
import datetime
import decimal
import glob
import gzip
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import time
import traceback

os.environ["TZ"] = "UTC"  # PySpark's collect() turns timestamps into naive datetimes in the local zone
time.tzset()

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import spark_env  # noqa: E402

ENV = os.environ
BIN = ENV.get("LAKEHOUSE_CLI") or os.path.join(ENV["CARGO_TARGET_DIR"], "release", "lakehouse")
STATE = ENV.get("LAKEHOUSE_STATE") or os.path.join(spark_env.HOME, "state")
WORK = os.path.join(STATE, "readers")
BUCKET = ENV.get("LAKE_BUCKET", "lake")
ROUNDS = int(ENV.get("READERS_ROUNDS", "3"))
RESULTS = ENV.get("BENCH_RESULTS") or os.path.join(HERE, "results")
ENDPOINT = ENV["MINIO_ENDPOINT"]
STORAGE = {"AWS_ENDPOINT_URL": ENDPOINT, "AWS_ACCESS_KEY_ID": ENV["MINIO_ROOT_USER"],
           "AWS_SECRET_ACCESS_KEY": ENV["MINIO_ROOT_PASSWORD"], "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
READERS = ("spark", "duckdb", "polars")


def log(msg):
    print(f"[readers {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------
# The lake
# ---------------------------------------------------------------------------------------------------------

CONFIG = """
[landing]
uri = "file://{landing}"
[lake]
uri = "{lake}"
[lake.storage]
aws_endpoint_url = "{endpoint}"
aws_access_key_id = "{user}"
aws_secret_access_key = "{password}"
aws_region = "us-east-1"
aws_allow_http = "true"

# Upserts with a delete flag; several small silver files (compacted by maintenance); bad rows: quarantine.
[[table]]
name = "orders"
format = "jsonl"
columns = ["id long not null", "customer_id long", "amount decimal(12,2)", "placed_at timestamp", "day date",
           "ratio double", "note string", "seq long not null", "deleted boolean"]
keys = ["id"]
sequence_by = "seq"
delete_column = "deleted"
target_file_size_mb = 0.01

# Debezium change events (unwrapped); bronze keeps the envelopes, silver the rows.
[[table]]
name = "customers"
format = "jsonl"
cdc = "debezium"
keys = ["id"]
sequence_by = "source.lsn"
row_columns = ["id long not null", "name string", "region string", "updated_at timestamp"]

# AWS DMS CDC: CSV without header, Op, commit timestamp, then the row.
[[table]]
name = "payments"
format = "csv"
csv_header = false
cdc = "dms"
keys = ["payment_id"]
sequence_by = "commit_ts"
columns = ["Op string", "commit_ts timestamp", "payment_id long not null", "order_id long", "method string",
           "amount decimal(10,2)"]

# SCD type 2: every version of an account.
[[table]]
name = "accounts"
format = "jsonl"
columns = ["id long not null", "owner string", "balance long", "seq long not null", "deleted boolean"]
keys = ["id"]
sequence_by = "seq"
delete_column = "deleted"
scd_type = 2

[[gold]]
name = "customer_revenue"
sql = "SELECT customer_id, COUNT(*) AS orders, SUM(amount) AS revenue, MAX(placed_at) AS last_order FROM orders GROUP BY customer_id"
keys = ["customer_id"]
sources = ["orders"]

[[gold]]
name = "region_revenue"
sql = "SELECT c.region, COUNT(*) AS orders, SUM(o.amount) AS revenue FROM orders o JOIN customers c ON o.customer_id = c.id GROUP BY c.region"
keys = ["region"]
sources = ["orders", "customers"]

[[gold]]
name = "owner_balances"
sql = "SELECT owner, COUNT(*) AS accounts, SUM(balance) AS total FROM accounts WHERE is_current GROUP BY owner"
keys = ["owner"]
sources = ["accounts"]

[[gold]]
name = "method_totals"
sql = "SELECT method, COUNT(*) AS payments, SUM(amount) AS total FROM payments GROUP BY method"
keys = ["method"]
sources = ["payments"]
"""

REGIONS = ["north", "south", "east", "west"]
METHODS = ["card", "wire", "cash"]
OWNERS = [f"owner{i}" for i in range(5)]
BASE = datetime.datetime(2026, 11, 20, 8, 0, tzinfo=datetime.timezone.utc)


def ts(seconds, micro=0):
    return (BASE + datetime.timedelta(seconds=seconds, microseconds=micro)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Source:
    """Seeded CDC events for the four tables, round by round: round 0 inserts, later rounds update, delete,
    insert, and re-send a few old (late) events."""

    def __init__(self, seed=11):
        self.rng = random.Random(seed)
        self.seq = 0
        self.live = {t: {} for t in ("orders", "customers", "payments", "accounts")}
        self.next_id = {t: 1 for t in self.live}
        self.sent = {t: [] for t in self.live}

    def tick(self):
        self.seq += 1
        return self.seq

    def changes(self, table, r, n):
        """n events for `table` in round r: [(op, key, row)]."""
        out = []
        for _ in range(n):
            live = self.live[table]
            if r == 0 or not live or self.rng.random() < 0.3:
                op, k = "I", self.next_id[table]
                self.next_id[table] += 1
            elif self.rng.random() < 0.25:
                op, k = "D", self.rng.choice(sorted(live))
            else:
                op, k = "U", self.rng.choice(sorted(live))
            seq = self.tick()
            before = live.get(k)
            if op == "D":
                row = live.pop(k)
            else:
                row = self.row(table, k, seq)
                live[k] = row
            ev = (op, k, row, seq, before)
            out.append(ev)
            self.sent[table].append(ev)
        if r > 0:  # late events: re-sent copies of older ones (the sequence guard must drop them)
            out += self.rng.sample(self.sent[table][:-n], min(3, len(self.sent[table]) - n))
        self.rng.shuffle(out)
        return out

    def row(self, table, k, seq):
        g = self.rng
        if table == "orders":
            return {"id": k, "customer_id": g.randrange(1, 40), "amount": f"{g.randrange(100, 10**7) / 100:.2f}",
                    "placed_at": ts(seq * 37, g.randrange(10**6)), "day": f"2026-11-{g.randrange(1, 29):02}",
                    "ratio": g.random() * 100, "note": g.choice(["", "gift", "rush", None, "naïve ünïcode ✓"])}
        if table == "customers":
            return {"id": k, "name": f"customer {k} v{seq}", "region": g.choice(REGIONS),
                    "updated_at": ts(seq * 11)}
        if table == "payments":
            return {"payment_id": k, "order_id": g.randrange(1, 500), "method": g.choice(METHODS),
                    "amount": f"{g.randrange(1, 10**6) / 100:.2f}"}
        return {"id": k, "owner": g.choice(OWNERS), "balance": g.randrange(-5000, 100_000)}

    def encode(self, table, ev):
        op, k, row, seq, before = ev
        if table in ("orders", "accounts"):
            d = {"id": k, "seq": seq, "deleted": True} if op == "D" else {**row, "seq": seq, "deleted": False}
            if table == "orders" and op != "D":
                d["amount"] = float(d["amount"])
            return json.dumps(d, ensure_ascii=False)
        if table == "customers":
            return json.dumps({"before": before, "after": None if op == "D" else row,
                               "op": {"I": "c", "U": "u", "D": "d"}[op], "ts_ms": 1_764_000_000_000 + seq,
                               "source": {"connector": "postgresql", "db": "shop", "table": "customers", "lsn": seq},
                               "transaction": None})
        commit = (BASE + datetime.timedelta(seconds=seq, microseconds=seq)).strftime("%Y-%m-%d %H:%M:%S.%f")
        return f'{op},{commit},{row["payment_id"]},{row["order_id"]},{row["method"]},{row["amount"]}'


BAD_ORDER_LINES = [
    '{"id": 9001, "customer_id": 1, "amount": "n/a", "seq": 1, "deleted": false}',  # not a decimal
    '{"id": 9002, "customer_id": 1, "amount": 1.005, "seq": 1, "deleted": false}',  # too many decimals
    '{"id": 9003, "customer_id": 1, "amount": 1.00, "seq": 1, "deleted": false, "surprise": 1}',  # unknown field
    '{"id": 9004, "customer_id": 1, "amo',  # not JSON
]


def build_lake(run_id):
    root = os.path.join(WORK, f"run-{run_id}")
    landing = os.path.join(root, "landing")
    lake = f"s3://{BUCKET}/readers/{run_id}"
    os.makedirs(landing)
    cfg = os.path.join(root, "pipeline.toml")
    with open(cfg, "w") as f:
        f.write(CONFIG.format(landing=landing, lake=lake, endpoint=ENDPOINT, user=ENV["MINIO_ROOT_USER"],
                              password=ENV["MINIO_ROOT_PASSWORD"]))
    src = Source()
    sizes = {"orders": 600, "customers": 40, "payments": 60, "accounts": 40}
    backfills = []
    for r in range(ROUNDS):
        for table, n in sizes.items():
            events = src.changes(table, r, n if r == 0 else n // 2)
            half = len(events) // 2
            for part, chunk in enumerate((events[:half], events[half:])):
                lines = [src.encode(table, e) for e in chunk]
                if table == "orders" and r == 1 and part == 0:
                    lines += BAD_ORDER_LINES
                ext = "csv" if table == "payments" else "jsonl"
                d = os.path.join(landing, table, f"round={r}")
                os.makedirs(d, exist_ok=True)
                body = ("\n".join(lines) + "\n").encode()
                name = os.path.join(d, f"part-{part}.{ext}")
                if table == "orders" and part == 1:  # some gzip
                    name += ".gz"
                    body = gzip.compress(body, mtime=0)
                with open(name, "wb") as f:
                    f.write(body)
        t0 = time.time()
        run([BIN, "backfill", "--config", cfg, "--chunk", "1"], f"backfill-{r}", root)
        backfills.append(time.time() - t0)
        log(f"round {r}: backfill in {backfills[-1]:.1f} s")
        if r == ROUNDS - 2:  # maintenance before the last round: compactions, checkpoints in the log
            out = run([BIN, "maintain", "--config", cfg], "maintain", root)
            log(f"maintenance: {len(out.splitlines())} tasks did something")
    return cfg, lake, root, backfills


def run(cmd, name, root):
    """A child with its output in files under root (no pipes); exits on failure."""
    o, e = os.path.join(root, f"{name}.out"), os.path.join(root, f"{name}.err")
    with open(o, "w") as fo, open(e, "w") as fe:
        rc = subprocess.run(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
                            env={**ENV, **({"RUST_LOG": ENV["READERS_LOG"]} if ENV.get("READERS_LOG") else {})}).returncode
    if rc != 0:
        sys.exit(f"{' '.join(cmd)} failed ({rc}):\n{open(e).read()[-3000:]}")
    return open(o).read()


def find_tables(lake):
    """Every Delta table under the lake: [(layer, name, uri, has a checkpoint)]."""
    import boto3
    s3 = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1",
                      aws_access_key_id=ENV["MINIO_ROOT_USER"], aws_secret_access_key=ENV["MINIO_ROOT_PASSWORD"])
    prefix = lake[len(f"s3://{BUCKET}/"):] + "/"
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for o in page.get("Contents", []):
            rel = o["Key"][len(prefix):]
            if "/_delta_log/" in rel:
                path, log_file = rel.split("/_delta_log/", 1)
                found[path] = found.get(path, False) or ".checkpoint" in log_file
    order = {"bronze": 0, "quarantine": 1, "silver": 2, "silver_tombstones": 3, "gold": 4}
    out = []
    for path, checkpoint in found.items():
        layer, _, name = path.partition("/")
        out.append((layer, name, f"{lake}/{path}", checkpoint))
    return sorted(out, key=lambda t: (order.get(t[0], 9), t[1]))


# ---------------------------------------------------------------------------------------------------------
# Normalising and comparing rows
# ---------------------------------------------------------------------------------------------------------

def norm(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        return v + 0.0  # -0.0 -> 0.0
    if isinstance(v, decimal.Decimal):
        return format(v.normalize(), "f") if v else "0"
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return "ts:" + v.isoformat(timespec="microseconds")
    if isinstance(v, datetime.date):
        return "date:" + v.isoformat()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "bytes:" + bytes(v).hex()
    if hasattr(v, "asDict"):  # a Spark Row (struct)
        v = v.asDict(recursive=False)
    if isinstance(v, dict):
        return tuple(sorted((str(k), norm(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(norm(x) for x in v)
    return v


def bag(rows):
    return collections.Counter(tuple(norm(x) for x in r) for r in rows)


def compare(ref, got):
    """(equal, detail) of two Counters of normalised tuples."""
    if ref == got:
        return True, ""
    missing, extra = ref - got, got - ref
    return False, (f"{sum(missing.values())} rows only in deltalake, {sum(extra.values())} only in the reader; "
                   f"e.g. deltalake {list(missing)[:2]} vs reader {list(extra)[:2]}")


def deltalake_rows(uri, version, cols=None):
    from deltalake import DeltaTable
    dt = DeltaTable(uri, storage_options=STORAGE, version=version)
    t = dt.to_pyarrow_table()
    cols = cols or t.column_names
    return cols, [tuple(r[c] for c in cols) for r in t.to_pylist()]


CDF_META = ("_change_type", "_commit_version")


def deltalake_cdf(uri, start, end, cols):
    from deltalake import DeltaTable
    dt = DeltaTable(uri, storage_options=STORAGE)
    import pyarrow as pa
    t = pa.RecordBatchReader.from_stream(dt.load_cdf(starting_version=start, ending_version=end)).read_all()
    return [tuple(r[c] for c in cols + list(CDF_META)) for r in t.to_pylist()]


def cdf_start(uri):
    """The first version from which the change data feed is on (None if it is off at the current one)."""
    from deltalake import DeltaTable
    dt = DeltaTable(uri, storage_options=STORAGE)
    if dt.metadata().configuration.get("delta.enableChangeDataFeed", "false").lower() != "true":
        return None
    for v in range(0, dt.version() + 1):
        c = DeltaTable(uri, storage_options=STORAGE, version=v).metadata().configuration
        if c.get("delta.enableChangeDataFeed", "false").lower() == "true":
            return v
    return None


class Spark:
    name = "spark"

    def __init__(self):
        self.spark, self.start_s = spark_env.session("readers", cores=2, **{
            "spark.ui.showConsoleProgress": "false", "spark.sql.shuffle.partitions": "4",
            "spark.databricks.delta.snapshotPartitions": "4"})

    def _df(self, uri, version=None):
        r = self.spark.read.format("delta")
        if version is not None:
            r = r.option("versionAsOf", version)
        return r.load(spark_env.s3a(uri))

    def _collect(self, df, cols):
        from pyspark.sql import functions as F
        return [tuple(r) for r in df.select(*[F.col(f"`{c}`") for c in cols]).collect()]

    def count(self, uri):
        return self._df(uri).count()

    def rows(self, uri, version, cols):
        return self._collect(self._df(uri, version), cols)

    def cdf(self, uri, start, end, cols):
        df = (self.spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", start)
              .option("endingVersion", end).load(spark_env.s3a(uri)))
        return self._collect(df, cols + list(CDF_META))

    def close(self):
        proc = getattr(self.spark.sparkContext._gateway, "proc", None)
        self.peak_mb = spark_env.rss_mb(proc.pid) if proc else None
        self.spark.stop()
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(30)


class DuckDB:
    name = "duckdb"

    def __init__(self):
        import duckdb
        import duckdb_extension_delta
        import duckdb_extension_httpfs
        self.con = duckdb.connect(config={"allow_unsigned_extensions": "true",
                                          "autoinstall_known_extensions": "false",
                                          "autoload_known_extensions": "false"})
        for mod, ext in ((duckdb_extension_httpfs, "httpfs"), (duckdb_extension_delta, "delta")):
            path = glob.glob(os.path.join(os.path.dirname(mod.__file__), "extensions", "*", f"{ext}.duckdb_extension"))[0]
            self.con.execute(f"LOAD '{path}'")
        host = ENDPOINT.split("://", 1)[1].rstrip("/")
        # Credentials always given: without them the delta extension falls back to the cloud's credential
        # chain (an instance metadata endpoint), which is not on this machine.
        self.con.execute(f"""CREATE SECRET minio (TYPE S3, KEY_ID '{ENV["MINIO_ROOT_USER"]}',
            SECRET '{ENV["MINIO_ROOT_PASSWORD"]}', ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false,
            REGION 'us-east-1')""")
        self.con.execute("SET TimeZone = 'UTC'")

    def _scan(self, uri, version=None):
        return f"delta_scan('{uri}'" + (f", version => {int(version)})" if version is not None else ")")

    def count(self, uri):
        return self.con.execute(f"SELECT count(*) FROM {self._scan(uri)}").fetchone()[0]

    def rows(self, uri, version, cols):
        sel = ", ".join('"' + c.replace('"', '""') + '"' for c in cols)
        return self.con.execute(f"SELECT {sel} FROM {self._scan(uri, version)}").fetchall()

    def close(self):
        self.con.close()


class Polars:
    name = "polars"

    def __init__(self):
        import polars
        self.pl = polars

    def _read(self, uri, version=None):
        return self.pl.read_delta(uri, version=version, storage_options=STORAGE)

    def count(self, uri):
        return self._read(uri).height

    def rows(self, uri, version, cols):
        return self._read(uri, version).select(cols).rows()

    def close(self):
        pass


def attempt(fn):
    try:
        return fn(), None
    except Exception as e:  # a reader that cannot open a table is a finding, not a crash
        msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
        log(f"  error: {msg}")
        if ENV.get("READERS_TRACE"):
            traceback.print_exc()
        return None, msg


def check_table(layer, name, uri, checkpoint, readers, product_rows):
    from deltalake import DeltaTable
    dt = DeltaTable(uri, storage_options=STORAGE)
    version = dt.version()
    cols, ref_rows = deltalake_rows(uri, version)
    ref = bag(ref_rows)
    prev = version - 1 if version >= 1 else None
    ref_prev = bag(deltalake_rows(uri, prev, cols)[1]) if prev is not None else None
    cstart = cdf_start(uri)
    ref_cdf = bag(deltalake_cdf(uri, cstart, version, cols)) if cstart is not None else None
    proto = dt.protocol()
    info = {"layer": layer, "table": name, "uri": uri, "version": version, "rows": len(ref_rows),
            "files": len(dt.file_uris()), "checkpoint": checkpoint,
            "columns": cols, "cdf_from": cstart, "cdf_rows": sum(ref_cdf.values()) if ref_cdf is not None else None,
            "protocol": f"{proto.min_reader_version}/{proto.min_writer_version}", "product_rows": product_rows,
            "readers": {}}
    log(f"{layer}/{name}: v{version}, {len(ref_rows)} rows, protocol {info['protocol']}"
        + (f", change feed from v{cstart}: {info['cdf_rows']} changes" if cstart is not None else ""))
    for rd in readers:
        res = {}
        res["count"], err = attempt(lambda: rd.count(uri))
        rows, err2 = attempt(lambda: rd.rows(uri, version, cols))
        res["error"] = err or err2
        if rows is not None:
            res["equal"], res["detail"] = compare(ref, bag(rows))
        else:
            res["equal"] = False
        if res["count"] is not None and res["count"] != len(ref_rows):
            res["equal"] = False
            res["detail"] = (res.get("detail") or "") + f" count {res['count']} != {len(ref_rows)}"
        if prev is not None:
            tt, err = attempt(lambda: rd.rows(uri, prev, cols))
            res["time_travel"] = compare(ref_prev, bag(tt))[0] if tt is not None else False
            if err:
                res["error"] = res["error"] or f"time travel: {err}"
        else:
            res["time_travel"] = None
        if cstart is not None and hasattr(rd, "cdf"):
            ch, err = attempt(lambda: rd.cdf(uri, cstart, version, cols))
            if ch is not None:
                res["cdf"], d = compare(ref_cdf, bag(ch))
                if not res["cdf"]:
                    res["cdf_detail"] = d
            else:
                res["cdf"] = False
                res["error"] = res["error"] or f"change feed: {err}"
        else:
            res["cdf"] = None
        info["readers"][rd.name] = res
        flag = "ok" if res["equal"] and res["time_travel"] is not False and res["cdf"] is not False else "DIFFERS"
        log(f"  {rd.name}: {res['count']} rows, equal {res['equal']}, time travel {res['time_travel']}, "
            f"change feed {res['cdf']} -> {flag}" + (f" ({res.get('detail') or res.get('cdf_detail') or res['error']})"
                                                    if flag != "ok" else ""))
    return info


def product_counts(cfg, root):
    """Rows per table as `lakehouse status --json` reports them: {"layer/name": rows}."""
    text = run([BIN, "status", "--config", cfg, "--json"], "status", root)
    out = {}
    for entry in json.loads(text):
        for layer in entry.get("layers", []):
            if layer.get("exists") and isinstance(layer.get("rows"), int):
                out[layer["table"]] = layer["rows"]
    return out


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------

def yn(v):
    return "n/a" if v is None else ("yes" if v else "**no**")


def report(tables, meta):
    lines = ["| table | version | files | checkpoint | protocol | rows (deltalake) | product's count | reader | rows | "
             "equal | change feed | time travel (v-1) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in tables:
        for i, r in enumerate(READERS):
            res = t["readers"].get(r)
            if res is None:
                continue
            head = (f"| {t['layer']}/{t['table']} | {t['version']} | {t['files']} | {'yes' if t['checkpoint'] else 'no'} | "
                    f"{t['protocol']} | {t['rows']:,} | "
                    f"{'-' if t['product_rows'] is None else format(t['product_rows'], ',')} |") if i == 0 else "| | | | | | | |"
            cdf = yn(res["cdf"]) + (f" (v{t['cdf_from']}-{t['version']}, {t['cdf_rows']} changes)"
                                    if res["cdf"] is not None else "")
            lines.append(f"{head} {r} | {'error' if res['count'] is None else format(res['count'], ',')} | "
                         f"{yn(res['equal'])} | {cdf} | {yn(res['time_travel'])} |")
    problems = []
    for t in tables:
        for r, res in t["readers"].items():
            bad = [k for k in ("equal", "cdf", "time_travel") if res.get(k) is False]
            if bad or res.get("error"):
                problems.append(f"- {t['layer']}/{t['table']} with {r}: {', '.join(bad) or 'error'}: "
                                f"{res.get('error') or res.get('detail') or res.get('cdf_detail')}")
        if t["product_rows"] is not None and t["product_rows"] != t["rows"]:
            problems.append(f"- {t['layer']}/{t['table']}: `lakehouse status` says {t['product_rows']} rows, "
                            f"deltalake reads {t['rows']}")
    v = meta["versions"]
    return "\n".join([
        f"# Independent readers of the product's tables ({meta['date']})",
        "",
        f"Machine: {meta['machine']}. Lake on MinIO (loopback), written by `lakehouse backfill` ({meta['binary']}) "
        f"in {meta['rounds']} rounds (inserts, then updates, deletes, late events; one bronze commit per object; "
        f"`lakehouse maintain` before the last round: compactions and checkpoints): {meta['tables']} Delta tables.",
        f"Readers: Spark {v.get('spark', '?')} (PySpark {v.get('pyspark', '?')}, Hadoop {v.get('hadoop', '?')} S3A, "
        f"Java {v.get('java', '?')}) + delta-spark {v.get('delta-spark', '?')}; DuckDB {v.get('duckdb', '?')} + "
        f"delta extension {v.get('duckdb-extension-delta', '?')} (PyPI package, loaded by path); polars "
        f"{v.get('polars', '?')}; the reference: Python deltalake {v.get('deltalake', '?')} (pyarrow "
        f"{v.get('pyarrow', '?')}).",
        "",
        "Each reader's rows at the table's current version are compared with deltalake's as a multiset (values "
        "normalised: timestamps to UTC microseconds, decimals to their exact value); `time travel` reads the "
        "version before and compares the same way; `change feed` (Spark's `readChangeFeed`, from the first "
        "version with the feed on to the current one) is compared with deltalake's `load_cdf` on the data "
        "columns, `_change_type` and `_commit_version` (`_commit_timestamp` differs by design: Spark takes the "
        "commit file's modification time). DuckDB and polars have no change feed reader (n/a). `product's count`: "
        "`lakehouse status --json` where it reports the table.",
        "",
        *lines,
        "",
        "Disagreements: " + ("none." if not problems else ""),
        *problems,
        "",
        f"Reproduce: `{meta['command']}` (or, with MinIO up: `infra/local/install.sh spark && "
        "$LAKEHOUSE_HOME/venv-spark/bin/python bench/readers.py`).",
    ]) + "\n"


def main():
    import boto3
    os.makedirs(WORK, exist_ok=True)
    os.makedirs(RESULTS, exist_ok=True)
    for d in sorted(glob.glob(os.path.join(WORK, "run-*")))[:-2]:
        shutil.rmtree(d, ignore_errors=True)
    s3 = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1",
                      aws_access_key_id=ENV["MINIO_ROOT_USER"], aws_secret_access_key=ENV["MINIO_ROOT_PASSWORD"])
    try:
        s3.create_bucket(Bucket=BUCKET)
    except Exception:
        pass
    previous = sorted(glob.glob(os.path.join(WORK, "run-*", "lake.json")))
    if ENV.get("READERS_REUSE") == "1" and previous:  # development: read the last lake again
        with open(previous[-1]) as f:
            cfg, lake, root, backfills = json.load(f)
        log(f"reusing {lake}")
    else:
        log(f"building the lake with {BIN}")
        cfg, lake, root, backfills = build_lake(int(time.time()))
        with open(os.path.join(root, "lake.json"), "w") as f:
            json.dump([cfg, lake, root, backfills], f)
    tables = find_tables(lake)
    log(f"{len(tables)} tables under {lake}")
    counts = product_counts(cfg, root)
    readers = []
    for cls in (Spark, DuckDB, Polars):
        r, err = attempt(cls)
        if r is None:
            sys.exit(f"cannot start {cls.name}: {err}")
        readers.append(r)
    log(f"Spark session in {readers[0].start_s:.1f} s")
    results = [check_table(layer, name, uri, checkpoint, readers, counts.get(f"{layer}/{name}"))
               for layer, name, uri, checkpoint in tables]
    versions = spark_env.versions(readers[0].spark)
    for r in readers:
        r.close()
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": f"{os.cpu_count()} cores, {platform.machine()}, {platform.platform()}",
            "binary": f"{os.path.basename(os.path.dirname(BIN))} build", "rounds": ROUNDS, "tables": len(tables),
            "versions": versions, "backfill_s": backfills, "spark_session_s": readers[0].start_s,
            "command": "make bench-readers"}
    text = report(results, meta)
    with open(os.path.join(RESULTS, "readers.md"), "w") as f:
        f.write(text)
    with open(os.path.join(RESULTS, "readers.json"), "w") as f:
        json.dump({"meta": meta, "tables": results}, f, indent=1, default=str)
    print(text)
    bad = [t for t in results for r in t["readers"].values()
           if r.get("error") or r["equal"] is False or r["cdf"] is False or r["time_travel"] is False]
    bad += [t for t in results if t["product_rows"] is not None and t["product_rows"] != t["rows"]]
    if bad:
        sys.exit(f"{len(bad)} disagreement(s): see {os.path.join(RESULTS, 'readers.md')}")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
