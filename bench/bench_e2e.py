"""End-to-end freshness benchmark (make bench-e2e): one `lakehouse run` (the local runner, release build by
default) serves the seed's shape, E2E_TABLES tables (default 70) each with a gold view, on LocalStack (landing
bucket, S3 notifications, SQS) and MinIO (lake), while every table receives one landing file per
E2E_PERIOD_S seconds (default 60: an event every minute, the tables staggered) for E2E_MINUTES minutes
(default 15). A run takes about E2E_MINUTES + 2 x the longest window (~45 min at the defaults).

Per-table trigger windows: table i gets window E2E_WINDOWS[i % len] seconds (default 1,5,30,60,300,900: from
1 s to 15 min, about a sixth of the tables each) with batch_size 10000, so the window's time decides; the
runner applies a table's window once, end to end (a silver or gold message counts its window from the oldest
upload behind it, so it is not held for a second one). Each view waits E2E_GOLD_WINDOW seconds
(default 1; `table` = its table's window).

Per uploaded file (one S3 event) it records the time from the upload finishing to the bronze, silver and gold
commits that made its rows visible, read afterwards from the tables' Delta logs (commitInfo timestamps and the
lakehouse lineage: bronze sourceKeys, silver/gold upstreamVersions); the runner's peak RSS; and the handlers'
time per batch and layer from the runner's log (`runner: batch handled`). After the uploads it waits until
every file is visible in gold, at most E2E_DRAIN_S (default 2 x the longest window + the gold window + 180 s).
Writes bench/results/e2e.md, e2e.png (freshness distribution) and e2e.json (latencies, and the step
durations bench/cost.py takes with --durations).

Env: E2E_TABLES (70), E2E_MINUTES (15), E2E_WINDOWS ("1,5,30,60,300,900"), E2E_GOLD_WINDOW (1), E2E_PERIOD_S
(60), E2E_ROWS (200), E2E_DRAIN_S, E2E_OUT (results directory, default bench/results), LAKEHOUSE_CLI.
Endpoints: E2E_LOCALSTACK_ENDPOINT / E2E_MINIO_ENDPOINT (else LOCALSTACK_ENDPOINT / MINIO_ENDPOINT, else
127.0.0.1:4566 / :9000), so a run can use services on other ports.
E2E_SQS=mini: no LocalStack at all (a smoke run): the landing bucket is on the MinIO, the queues are
bench/mini_sqs.py's in-memory SQS on 127.0.0.1:$E2E_MINI_SQS_PORT (default 9603), and the bench sends each
file's S3 notification itself right after the upload (so bronze latency misses S3's notification delay).
"""
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ENV = os.environ


def env(name, default, legacy=None):
    return ENV.get(name) or (ENV.get(legacy) if legacy else None) or default


TABLES = int(env("E2E_TABLES", "70", "BENCH_TABLES"))
MINUTES = float(env("E2E_MINUTES", "15"))
WINDOWS = [float(w) for w in env("E2E_WINDOWS", "1,5,30,60,300,900").split(",")]
GOLD_WINDOW = env("E2E_GOLD_WINDOW", "1")
PERIOD = float(env("E2E_PERIOD_S", "60"))
ROWS = int(env("E2E_ROWS", "200", "BENCH_ROWS"))
BIN = ENV.get("LAKEHOUSE_CLI") or os.path.join(ENV.get("CARGO_TARGET_DIR", os.path.expanduser(
    "~/.cache/lakehouse-target")), "release", "lakehouse")
LS = env("E2E_LOCALSTACK_ENDPOINT", ENV.get("LOCALSTACK_ENDPOINT", "http://127.0.0.1:4566"))
MINIO = env("E2E_MINIO_ENDPOINT", ENV.get("MINIO_ENDPOINT", "http://127.0.0.1:9000"))
MINI_SQS = ENV.get("E2E_SQS", "") == "mini"
MINI_SQS_PORT = int(env("E2E_MINI_SQS_PORT", "9603"))
USER, PASSWORD = ENV["MINIO_ROOT_USER"], ENV["MINIO_ROOT_PASSWORD"]
OUT = env("E2E_OUT", os.path.join(HERE, "results"))
STATE = os.path.join(ENV.get("LAKEHOUSE_STATE", "/tmp"), "bench-e2e")
LAYERS = ("bronze", "silver", "gold")


def gold_window(table_window):
    return table_window if GOLD_WINDOW == "table" else float(GOLD_WINDOW)


DRAIN_S = float(env("E2E_DRAIN_S", str(2 * max(WINDOWS) + gold_window(max(WINDOWS)) + 180)))

run = f"e2e-{int(time.time())}"
tables = [f"t{i:02d}" for i in range(TABLES)]
window_of = {t: WINDOWS[i % len(WINDOWS)] for i, t in enumerate(tables)}
lake = boto3.client("s3", endpoint_url=MINIO, region_name="us-east-1", aws_access_key_id=USER,
                    aws_secret_access_key=PASSWORD)
lake_bucket = ENV.get("LAKE_BUCKET", "lake")
try:
    lake.create_bucket(Bucket=lake_bucket)
except Exception:
    pass

# Landing bucket → bronze queue (with DLQ), silver and gold queues.
mini = None
if MINI_SQS:
    sys.path.insert(0, HERE)
    from mini_sqs import MiniSqs
    mini = MiniSqs(MINI_SQS_PORT).start()
    SQS_ENDPOINT = f"http://127.0.0.1:{MINI_SQS_PORT}"
    s3, landing_endpoint, landing_keys = lake, MINIO, (USER, PASSWORD)
else:
    SQS_ENDPOINT = LS
    s3 = boto3.client("s3", endpoint_url=LS, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test")
    landing_endpoint, landing_keys = LS, ("test", "test")
sqs = boto3.client("sqs", endpoint_url=SQS_ENDPOINT, region_name="us-east-1", aws_access_key_id="test",
                   aws_secret_access_key="test")
landing = f"landing-{run}"
s3.create_bucket(Bucket=landing)
dlq = sqs.create_queue(QueueName=f"{run}-dlq")["QueueUrl"]
dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
queues = {}
for layer in LAYERS:
    # Longer than the longest window: a message waiting for its window must not come back meanwhile.
    attrs = {"VisibilityTimeout": str(int(max(60, 2 * max(WINDOWS) + 120)))}
    if layer == "bronze":
        attrs["RedrivePolicy"] = redrive
    queues[layer] = sqs.create_queue(QueueName=f"{run}-{layer}", Attributes=attrs)["QueueUrl"]
if not MINI_SQS:
    arn = sqs.get_queue_attributes(QueueUrl=queues["bronze"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=landing, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})

lake_uri = f"s3://{lake_bucket}/bench-e2e/{run}"
cfg = [f'''[landing]
uri = "s3://{landing}"
[landing.storage]
aws_endpoint_url = "{landing_endpoint}"
aws_access_key_id = "{landing_keys[0]}"
aws_secret_access_key = "{landing_keys[1]}"
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
endpoint_url = "{SQS_ENDPOINT}"
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
batch_size = 10000
batch_window_seconds = {window_of[t]:g}

[[gold]]
name = "{t}_by_grp"
sql = "SELECT grp, COUNT(*) AS n, SUM(v) AS total FROM {t} GROUP BY grp"
keys = ["grp"]
sources = ["{t}"]
batch_size = 10000
batch_window_seconds = {gold_window(window_of[t]):g}
''')
os.makedirs(STATE, exist_ok=True)
cfg_path = os.path.join(STATE, f"{run}.toml")
with open(cfg_path, "w") as f:
    f.write("\n".join(cfg))

log_path = os.path.join(STATE, f"{run}-runner.log")
log = open(log_path, "w")
runner = subprocess.Popen([BIN, "run", "--config", cfg_path, "--max-poll-seconds", "1"], stdout=log, stderr=log,
                          env={**ENV, "RUST_LOG": "warn,buoyant_kernel=off,lakehouse::runner=info", "NO_COLOR": "1"})


def rss_kb(field):
    try:
        with open(f"/proc/{runner.pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def notify(key):
    """E2E_SQS=mini: the S3 notification LocalStack would send for this upload."""
    rec = {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
           "eventTime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
           "eventName": "ObjectCreated:Put",
           "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": landing, "arn": f"arn:aws:s3:::{landing}"},
                  "object": {"key": key, "sequencer": "00"}}}
    sqs.send_message(QueueUrl=queues["bronze"], MessageBody=json.dumps({"Records": [rec]}))


# Uploads: every table one file per PERIOD seconds, tables staggered evenly over the period; each file
# updates random keys of its table (10% deletes).
rng = random.Random(7)
uploaded = {}  # key -> (table, upload-done epoch ms)
seq = 0
start = time.time()
schedule = sorted((i * PERIOD / TABLES + k * PERIOD, t) for i, t in enumerate(tables)
                  for k in range(int(MINUTES * 60 / PERIOD) + 1) if i * PERIOD / TABLES + k * PERIOD < MINUTES * 60)
late = []
peak = 0
for n, (due, t) in enumerate(schedule):
    wait = start + due - time.time()
    if wait > 0:
        time.sleep(wait)
    else:
        late.append(-wait)
    lines = []
    for _ in range(ROWS):
        seq += 1
        lines.append(json.dumps({"id": rng.randrange(5000), "grp": rng.randrange(50), "v": rng.randrange(1000),
                                 "seq": seq, "deleted": rng.random() < 0.1}))
    key = f"{t}/part-{n:06d}.jsonl"
    s3.put_object(Bucket=landing, Key=key, Body=("\n".join(lines) + "\n").encode())
    uploaded[key] = (t, time.time() * 1000)
    if MINI_SQS:
        notify(key)
    if n % 50 == 0:
        peak = max(peak, rss_kb("VmHWM:"))
        if runner.poll() is not None:
            sys.exit(f"the runner stopped (exit {runner.returncode}); log: {log_path}")
upload_s = time.time() - start
n_files = len(uploaded)


class Logs:
    """Every table's Delta log commits (version, commitInfo timestamp ms, commitInfo), read incrementally:
    each refresh lists only the keys after the last commit read and reads only the new commit files."""

    def __init__(self):
        self.commits = {}
        self.after = {}

    def refresh(self, layer, name):
        prefix = f"bench-e2e/{run}/{layer}/{name}/_delta_log/"
        kw = {"Bucket": lake_bucket, "Prefix": prefix}
        if (layer, name) in self.after:
            kw["StartAfter"] = self.after[(layer, name)]
        out = self.commits.setdefault((layer, name), [])
        for page in lake.get_paginator("list_objects_v2").paginate(**kw):
            for o in page.get("Contents", []):
                k = o["Key"]
                if not re.search(r"/\d{20}\.json$", k):
                    continue
                body = lake.get_object(Bucket=lake_bucket, Key=k)["Body"].read().decode()
                for line in body.splitlines():
                    a = json.loads(line)
                    if "commitInfo" in a:
                        out.append((int(k.rsplit("/", 1)[1].split(".")[0]), a["commitInfo"]["timestamp"],
                                    a["commitInfo"]))
                self.after[(layer, name)] = k
        out.sort(key=lambda c: c[0])
        return out


logs = Logs()
done = {}  # key -> (bronze ms, silver ms, gold ms) once visible in gold


def latencies(todo_tables):
    """Files newly visible in gold, for the tables that still have files missing."""
    for t in todo_tables:
        bronze = logs.refresh("bronze", t)
        silver = [(v, ts, ci.get("lakehouse.upstreamVersions", {}).get("bronze", {}).get("to"))
                  for v, ts, ci in logs.refresh("silver", t)]
        gold = [(v, ts, ci.get("lakehouse.upstreamVersions", {}).get(t, {}).get("to"))
                for v, ts, ci in logs.refresh("gold", f"{t}_by_grp")]
        key_bronze = {}
        for v, ts, ci in bronze:
            for k in ci.get("lakehouse.sourceKeys", []):
                key_bronze.setdefault(k, (v, ts))
        for key, (table, up) in uploaded.items():
            if table != t or key in done or key not in key_bronze:
                continue
            bv, bts = key_bronze[key]
            s = next(((v, ts) for v, ts, to in silver if to is not None and to >= bv), None)
            if s is None:
                continue
            g = next((ts for v, ts, to in gold if to is not None and to >= s[0]), None)
            if g is None:
                continue
            done[key] = (bts - up, s[1] - up, g - up)


# Drain: wait until every upload is visible in gold (or give up after DRAIN_S).
deadline = time.time() + DRAIN_S
todo = set(tables)
while True:
    peak = max(peak, rss_kb("VmHWM:"))
    latencies(sorted(todo))
    todo = {t for key, (t, _) in uploaded.items() if key not in done}
    if not todo or time.time() > deadline or runner.poll() is not None:
        break
    time.sleep(10)
drain_s = time.time() - start - upload_s
peak = max(peak, rss_kb("VmHWM:"))
runner.send_signal(signal.SIGTERM)
try:
    runner.wait(timeout=120)
except subprocess.TimeoutExpired:
    runner.kill()
log.close()
missing = n_files - len(done)
dlq_left = int(sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
               ["Attributes"]["ApproximateNumberOfMessages"])
if mini:
    mini.stop()


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def stats(xs):
    return {"n": len(xs), "p50": pct(xs, 50), "p95": pct(xs, 95), "p99": pct(xs, 99),
            "max": max(xs) if xs else float("nan"), "mean": statistics.fmean(xs) if xs else float("nan")}


# The handlers' time per batch and layer (the runner's `batch handled` lines).
batches = {layer: [] for layer in LAYERS}
pattern = re.compile(r"runner: batch handled.*?layer=\"?(\w+)\"?.*?messages=(\d+).*?elapsed_ms=(\d+)")
for line in open(log_path, errors="replace"):
    m = pattern.search(re.sub(r"\x1b\[[0-9;]*m", "", line))
    if m and m.group(1) in batches:
        batches[m.group(1)].append((int(m.group(2)), int(m.group(3))))
steps = {layer: {"n": len(b), "mean_ms": statistics.fmean([ms for _, ms in b]) if b else None,
                 "p50_ms": pct([ms for _, ms in b], 50) if b else None,
                 "p95_ms": pct([ms for _, ms in b], 95) if b else None,
                 "max_ms": max([ms for _, ms in b]) if b else None,
                 "messages_mean": statistics.fmean([n for n, _ in b]) if b else None}
         for layer, b in batches.items()}

lat = {layer: [v[i] for v in done.values()] for i, layer in enumerate(LAYERS)}
by_window = {}
for w in WINDOWS:
    keys = [k for k, (t, _) in uploaded.items() if window_of[t] == w]
    vis = [done[k] for k in keys if k in done]
    by_window[f"{w:g}"] = {"tables": sum(1 for t in tables if window_of[t] == w), "files": len(keys),
                           "visible": len(vis),
                           **{layer: stats([v[i] for v in vis]) for i, layer in enumerate(LAYERS)}}


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
build = "debug" if "/debug/" in BIN else ("release" if "/release/" in BIN else "?")
meta = {"date": now, "machine": f"{sh('uname', '-srm')}, {os.cpu_count()} cores ({cpu})", "cli": BIN,
        "cli_version": sh(BIN, "--version"), "cli_build": build,
        "cli_mtime": datetime.fromtimestamp(os.stat(BIN).st_mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": sh("git", "log", "-1", "--format=%h %cd", "--date=iso"),
        "services": ("MinIO (landing and lake) + in-memory SQS (bench/mini_sqs.py), notifications sent by the bench"
                     if MINI_SQS else f"LocalStack {ENV.get('LOCALSTACK_VERSION', '?')} (landing, S3 notifications, "
                     f"SQS) + MinIO {ENV.get('MINIO_VERSION', '?')} (lake)"),
        "command": "make bench-e2e" if not ENV.get("E2E_COMMAND") else ENV["E2E_COMMAND"]}
try:  # what Lambda would bill per function (the SAM template's MemorySize), beside the runner's measured RSS
    sys.path.insert(0, HERE)
    from cost import template_facts
    billed_memory = template_facts()[0]
except Exception:  # noqa: BLE001 - optional context only
    billed_memory = {}
result = {"meta": meta, "tables": TABLES, "billed_memory_mb": billed_memory, "minutes": MINUTES, "period_s": PERIOD, "rows_per_file": ROWS,
          "windows_s": WINDOWS, "gold_window": GOLD_WINDOW, "files": n_files, "visible_in_gold": len(done),
          "missing": missing, "dlq": dlq_left, "runner_peak_rss_mb": peak / 1024, "upload_s": upload_s,
          "drain_s": drain_s, "uploads_late_max_s": max(late) if late else 0.0,
          "latency_ms": {layer: stats(xs) for layer, xs in lat.items()}, "by_window": by_window, "steps": steps}
os.makedirs(OUT, exist_ok=True)
with open(os.path.join(OUT, "e2e.json"), "w") as f:
    json.dump(result, f, indent=1)


def chart(path):
    try:
        import matplotlib
    except ImportError:
        print("matplotlib missing: no e2e.png (run with the tools venv's python)", file=sys.stderr)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 5.5))
    for layer, color in (("silver", "tab:blue"), ("gold", "tab:orange")):
        xs = sorted(x / 1000 for x in lat[layer])
        if xs:
            a.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", color=color,
                   label=f"{layer} (p50 {pct(xs, 50):.1f} s, p99 {pct(xs, 99):.1f} s)")
    a.set(xscale="log", xlabel="upload → visible (s, log scale)", ylabel="share of files",
          title=f"Freshness of {n_files} files, {TABLES} tables, one runner")
    from matplotlib.ticker import FuncFormatter, NullFormatter
    a.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.xaxis.set_minor_formatter(NullFormatter())
    a.grid(True, which="both", alpha=0.3)
    a.legend()
    labels, data, pos, colors = [], [], [], []
    for i, w in enumerate(WINDOWS):
        vis = [done[k] for k, (t, _) in uploaded.items() if window_of[t] == w and k in done]
        for j, (layer, color) in enumerate((("silver", "tab:blue"), ("gold", "tab:orange"))):
            data.append([v[1 + j] / 1000 for v in vis] or [float("nan")])
            pos.append(i * 3 + j)
            colors.append(color)
        labels.append(f"{w:g} s\n({sum(1 for t in tables if window_of[t] == w)} tables)")
    bp = b.boxplot(data, positions=pos, widths=0.8, whis=(1, 99), showfliers=False, patch_artist=True)
    for patch, color in zip(bp["boxes"], colors):
        patch.set_facecolor(color)
    for i, w in enumerate(WINDOWS):
        b.plot([i * 3 - 0.5, i * 3 + 1.5], [w, w], color="gray", linestyle=":", linewidth=1)
    b.set_xticks([i * 3 + 0.5 for i in range(len(WINDOWS))])
    b.set_xticklabels(labels)
    b.set(yscale="log", xlabel="table's trigger window", ylabel="upload → visible (s, log scale)",
          title="By trigger window (box p25-p75, whiskers p1-p99)")
    b.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    from matplotlib.patches import Patch
    from matplotlib.lines import Line2D
    b.legend(handles=[Patch(color="tab:blue", label="silver"), Patch(color="tab:orange", label="gold"),
                      Line2D([], [], color="gray", linestyle=":", label="the window")], loc="upper left")
    b.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


has_png = chart(os.path.join(OUT, "e2e.png"))


def row(name, s):
    return (f"| {name} | {s['n']} | {s['p50']:.0f} | {s['p95']:.0f} | {s['p99']:.0f} | {s['max']:.0f} |")


overall = "| visible in | files | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n" + \
    "\n".join(row(layer, result["latency_ms"][layer]) for layer in LAYERS)
per_window = ("| window | tables | files (visible) | silver p50 / p95 / p99 s | gold p50 / p95 / p99 s |\n"
              "|---|---|---|---|---|\n")
for w, d in by_window.items():
    sv, gd = d["silver"], d["gold"]
    per_window += (f"| {w} s | {d['tables']} | {d['files']} ({d['visible']}) | {sv['p50'] / 1000:.1f} / "
                   f"{sv['p95'] / 1000:.1f} / {sv['p99'] / 1000:.1f} | {gd['p50'] / 1000:.1f} / {gd['p95'] / 1000:.1f} / "
                   f"{gd['p99'] / 1000:.1f} |\n")
step_rows = "| layer | batches | messages per batch (mean) | mean ms | p50 ms | p95 ms | max ms |\n|---|---|---|---|---|---|---|\n"
for layer in LAYERS:
    s = steps[layer]
    if s["n"]:
        step_rows += (f"| {layer} | {s['n']} | {s['messages_mean']:.1f} | {s['mean_ms']:.0f} | {s['p50_ms']:.0f} | "
                      f"{s['p95_ms']:.0f} | {s['max_ms']:.0f} |\n")
gw = "each its table's window" if GOLD_WINDOW == "table" else f"{float(GOLD_WINDOW):g} s"
report = f"""# Freshness at the seed's scale: {TABLES} tables through one runner

{now} · {meta['machine']} · `{meta['cli_version']}` ({build} build, binary of {meta['cli_mtime']}) · git `{meta['git']}`
· {meta['services']} · command: `{meta['command']}` (E2E_TABLES={TABLES} E2E_MINUTES={MINUTES:g}
E2E_WINDOWS={",".join(f"{w:g}" for w in WINDOWS)} E2E_GOLD_WINDOW={GOLD_WINDOW} E2E_PERIOD_S={PERIOD:g}
E2E_ROWS={ROWS})

One `lakehouse run` serves {TABLES} tables (JSONL upserts with 10% deletes) and one gold view per table
(group-by over silver). Every table receives one file of {ROWS} rows every {PERIOD:g} s, the tables staggered
({TABLES * 60 / PERIOD:.0f} files per minute in all), for {upload_s / 60:.1f} min: {n_files} files. Trigger windows
per table (time-driven, batch_size 10000): {", ".join(f"{w:g} s" for w in WINDOWS)}, assigned round robin
(table i gets window i mod {len(WINDOWS)}); the runner applies a table's window once, end to end (silver and
gold messages count their window from the oldest upload behind them); every view waits {gw}. Latency: upload finished → the commit that made the file's rows
visible (commitInfo timestamps, same clock). Figures are from a shared, noisy machine.

{overall}

By trigger window:

{per_window}
![freshness distribution](e2e.png)

Files not visible in gold when measured: {missing} (waited {drain_s:.0f} s after the last upload, at most
{DRAIN_S:.0f} s). Messages in the DLQ: {dlq_left}. Runner peak RSS: **{peak / 1024:.0f} MB** for all {TABLES} tables
and views. Uploads started late by up to {max(late) if late else 0:.1f} s (the bench's own pace).

The handlers' time per batch (the runner's `batch handled` lines; the durations `bench/cost.py --durations
bench/results/e2e.json` bills):

{step_rows}
Reproduce: `make bench-e2e` (E2E_TABLES, E2E_MINUTES, E2E_WINDOWS, E2E_GOLD_WINDOW, E2E_PERIOD_S, E2E_ROWS).
"""
if not has_png:
    report = report.replace("![freshness distribution](e2e.png)\n", "")
with open(os.path.join(OUT, "e2e.md"), "w") as f:
    f.write(report)
print(report)
if missing:
    sys.exit(f"{missing} uploaded files never became visible in gold; runner log: {log_path}")
