"""Cold start of each function, measured as Lambda runs it: the release binary of the function is started
as a fresh process against a local Lambda Runtime API (a minimal emulator here: `/runtime/invocation/next`,
`.../response`, `.../error`, `/runtime/init/error`), given one event, and stopped after its answer. The lake
is on MinIO with one table of $COLD_SIZES rows (default 10k and 1M) and a gold view on it.

Reported per function and table size (median of $COLD_ROUNDS fresh processes, default 3):
  init      process start → the runtime's first `next` (exec, runtime, logging, config, clients);
  config    of which: loading and validating the pipeline file (the function's own log line);
  open      opening tables during the first event (delta-rs log replay from the last checkpoint; the
            functions' `table opened` debug lines);
  step      the rest of the first event: the step's reads, work, writes and commit;
  total     process start → the event's answer.
Plus each function's size: the host release binary, and the arm64 Lambda zip (`make lambda-zip`) when built.
Writes bench/results/coldstart.md and coldstart.json.
"""
import http.server
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
import zipfile

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = os.environ
TARGET = ENV["CARGO_TARGET_DIR"]
BIN_DIR = ENV.get("LAKEHOUSE_BIN_DIR", os.path.join(TARGET, "release"))
CLI = ENV.get("LAKEHOUSE_CLI", os.path.join(BIN_DIR, "lakehouse"))
SIZES = [int(s) for s in ENV.get("COLD_SIZES", "10000 1000000").split()]
ROUNDS = int(ENV.get("COLD_ROUNDS", "3"))
WORK = os.path.join(ENV["LAKEHOUSE_STATE"], "bench-coldstart")
RESULTS = ENV.get("COLD_OUT", os.path.join(HERE, "results"))
LAKE = ENV.get("LAKE_BUCKET", "lake")
LANDING = "coldstart-landing"
FUNCTIONS = ENV.get("COLD_FUNCTIONS", "bronze silver gold maintain").split()
MEMORY_MB = {"bronze": 1024, "silver": 2048, "gold": 2048, "maintain": 2048}  # as in the SAM template


def log(msg):
    print(f"[bench-coldstart] {msg}", file=sys.stderr, flush=True)


def s3():
    return boto3.client("s3", endpoint_url=ENV["MINIO_ENDPOINT"], region_name="us-east-1",
                        aws_access_key_id=ENV["MINIO_ROOT_USER"], aws_secret_access_key=ENV["MINIO_ROOT_PASSWORD"])


def storage_toml():
    return (f'aws_endpoint_url = "{ENV["MINIO_ENDPOINT"]}"\naws_access_key_id = "{ENV["MINIO_ROOT_USER"]}"\n'
            f'aws_secret_access_key = "{ENV["MINIO_ROOT_PASSWORD"]}"\naws_region = "us-east-1"\n'
            'aws_allow_http = "true"\n')


def pipeline(size, run):
    return f"""
[landing]
uri = "s3://{LANDING}/{run}-{size}"
[landing.storage]
{storage_toml()}
[lake]
uri = "s3://{LAKE}/coldstart-{run}-{size}"
[lake.storage]
{storage_toml()}
[[table]]
name = "orders"
format = "jsonl"
columns = ["id long not null", "seq long", "amount long", "status string", "deleted boolean"]
keys = ["id"]
sequence_by = "seq"
delete_column = "deleted"

[[gold]]
name = "by_status"
sql = "SELECT status, count(*) AS n, sum(amount) AS total FROM orders GROUP BY status"
keys = ["status"]
sources = ["orders"]
"""


def rows(ids, seq, rng):
    return "".join(
        f'{{"id": {i}, "seq": {seq}, "amount": {rng.randint(0, 10**6)}, "status": "s{i % 7}", "deleted": false}}\n'
        for i in ids)


class RuntimeApi:
    """The Lambda Runtime API for one process and one event: records when the runtime first asks for an
    event (its init is over) and when it answers."""

    def __init__(self, event):
        self.event = json.dumps(event).encode()
        self.first_next = None
        self.answered = None
        self.answer = None
        self.failed = None
        self.served = False
        self.done = threading.Event()
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.endswith("/runtime/invocation/next"):
                    if api.first_next is None:
                        api.first_next = time.perf_counter()
                    if api.served:
                        api.done.wait(600)  # the next event never comes; the process is stopped
                        self.send_response(500)
                        self.end_headers()
                        return
                    api.served = True
                    self.send_response(200)
                    self.send_header("Lambda-Runtime-Aws-Request-Id", "cold-1")
                    self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 900_000))
                    self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                                     "arn:aws:lambda:us-east-1:000000000000:function:cold")
                    self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(api.event)
                else:
                    self.send_response(404)
                    self.end_headers()

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                now = time.perf_counter()
                if self.path.endswith("/response"):
                    api.answered, api.answer = now, body
                else:
                    api.answered, api.failed = now, body or self.path.encode()
                self.send_response(202)
                self.end_headers()
                api.done.set()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.done.set()
        self.server.shutdown()


def invoke(function, config_path, event):
    """One cold start: a fresh process of the function's binary, one event. Returns the phases in ms."""
    api = RuntimeApi(event)
    errf = os.path.join(WORK, f"{function}.stderr")
    env = {**ENV, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{api.port}", "AWS_LAMBDA_FUNCTION_NAME": function,
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(MEMORY_MB[function]), "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
           "AWS_REGION": "us-east-1", "LAKEHOUSE_CONFIG": config_path,
           "RUST_LOG": "warn,buoyant_kernel=off,lakehouse=debug"}
    with open(errf, "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([os.path.join(BIN_DIR, function)], env=env, stdout=err, stderr=err)
        finished = api.done.wait(600)
    proc.kill()
    proc.wait()
    api.close()
    if not finished or api.failed is not None:
        sys.exit(f"{function}: no answer or an error: {api.failed!r}\n" + open(errf).read()[-3000:])
    config_ms, open_ms = None, 0.0
    for line in open(errf):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        fields = rec.get("fields", {})
        if fields.get("message") == "config loaded":
            config_ms = float(fields["ms"])
        elif fields.get("message") == "table opened":
            open_ms += float(fields["ms"])
    init = (api.first_next - start) * 1000
    total = (api.answered - start) * 1000
    return {"init": init, "config": config_ms, "open": open_ms, "step": total - init - open_ms, "total": total,
            "answer": json.loads(api.answer or b"null")}


def build_lake(size, run):
    """One table of `size` rows through bronze, silver and gold (the release CLI's backfill)."""
    rng = random.Random(size)
    cfg = os.path.join(WORK, f"pipeline-{size}.toml")
    with open(cfg, "w") as f:
        f.write(pipeline(size, run))
    client = s3()
    chunk = 1_000_000
    for n, lo in enumerate(range(0, size, chunk)):
        client.put_object(Bucket=LANDING, Key=f"{run}-{size}/orders/base-{n:03}.jsonl",
                          Body=rows(range(lo, min(size, lo + chunk)), 1, rng).encode())
    t = time.perf_counter()
    with open(os.path.join(WORK, "backfill.log"), "w") as out:
        subprocess.run([CLI, "backfill", "--config", cfg], check=True, stdout=out, stderr=out)
    log(f"{size:,} rows: bronze, silver and gold built in {time.perf_counter() - t:.0f} s")
    return cfg


def measure(size, run):
    cfg = build_lake(size, run)
    rng = random.Random(size + 1)
    client = s3()
    out = {f: [] for f in FUNCTIONS}
    for r in range(ROUNDS):
        key = f"{run}-{size}/orders/step-{r}.jsonl"
        body = rows(rng.sample(range(size), 1000), 2 + r, rng).encode()
        put = client.put_object(Bucket=LANDING, Key=key, Body=body)
        s3_event = {"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "bench"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {"x-amz-request-id": "bench", "x-amz-id-2": "bench"},
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "bronze",
                   "bucket": {"name": LANDING, "ownerIdentity": {"principalId": "bench"},
                              "arn": f"arn:aws:s3:::{LANDING}"},
                   "object": {"key": key, "sequencer": "00", "eTag": put["ETag"], "size": len(body)}}}]}
        events = {
            "bronze": s3_event,
            "silver": {"type": "lakehouse.committed", "layer": "bronze", "table": "orders", "version": 0},
            "gold": {"type": "lakehouse.committed", "layer": "silver", "table": "orders", "version": 0},
            "maintain": {"table": "orders"},
        }
        for f in FUNCTIONS:
            m = invoke(f, cfg, events[f])
            out[f].append(m)
            log(f"{size:,} rows, round {r}: {f} init {m['init']:.0f} ms (config {m['config']:.1f}), "
                f"open {m['open']:.0f} ms, step {m['step']:.0f} ms, total {m['total']:.0f} ms")
    return out


def sizes():
    out = {}
    for f in FUNCTIONS:
        binary = os.path.join(BIN_DIR, f)
        zip_path = os.path.join(TARGET, "lambda", f, "bootstrap.zip")
        row = {"binary_mb": os.path.getsize(binary) / 2**20}
        if os.path.exists(zip_path):
            row["zip_mb"] = os.path.getsize(zip_path) / 2**20
            with zipfile.ZipFile(zip_path) as z:
                row["unzipped_mb"] = sum(i.file_size for i in z.infolist()) / 2**20
        out[f] = row
    return out


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def main():
    os.makedirs(WORK, exist_ok=True)
    client = s3()
    for b in (LANDING, LAKE):
        try:
            client.create_bucket(Bucket=b)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
    run = time.strftime("%H%M%S")
    results = {size: measure(size, run) for size in SIZES}
    art = sizes()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# Cold start per function (fresh process, local Lambda Runtime API, lake on MinIO)", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, shared and noisy; {date}; {rustc}; host "
        f"{os.path.basename(BIN_DIR)} build (x86_64 gnu; Lambda runs the arm64 release build). Command: "
        f"`make bench-coldstart` "
        f"(COLD_SIZES={' '.join(map(str, SIZES))}, COLD_ROUNDS={ROUNDS}). Median of {ROUNDS} fresh processes.", "",
        "Each event is the function's first: bronze ingests a new 1,000-row object, silver merges it, gold "
        "recomputes the touched groups, maintenance maintains the table. *init*: process start → the runtime's "
        "first `next` (of which *config*: loading the pipeline file); *open*: the step's table opens (delta-rs log "
        "replay); *step*: the rest of the first event; *total*: process start → answer.", "",
        "| function | table rows | init ms | of which config ms | open ms | step ms | total ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size, by_fn in results.items():
        for f, ms in by_fn.items():
            lines.append(f"| {f} | {size:,} | {med([m['init'] for m in ms]):.1f} | "
                         f"{med([m['config'] for m in ms]):.2f} | {med([m['open'] for m in ms]):.0f} | "
                         f"{med([m['step'] for m in ms]):.0f} | {med([m['total'] for m in ms]):.0f} |")
    lines += ["", "## Artifact sizes", "",
              "| function | host binary MB | arm64 Lambda zip MB | unzipped MB |", "|---|---:|---:|---:|"]
    for f, row in art.items():
        z = f"{row['zip_mb']:.1f}" if "zip_mb" in row else "not built (`make lambda-zip`)"
        u = f"{row['unzipped_mb']:.1f}" if "unzipped_mb" in row else "-"
        lines.append(f"| {f} | {row['binary_mb']:.1f} | {z} | {u} |")
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "coldstart.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(RESULTS, "coldstart.json"), "w") as f:
        json.dump({"date": date, "sizes": art,
                   "runs": {str(k): {fn: [{x: m[x] for x in ("init", "config", "open", "step", "total")}
                                          for m in ms] for fn, ms in v.items()} for k, v in results.items()}},
                  f, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
