"""Silver MERGE benchmark: 1,000-row CDC batches (50% updates, 40% inserts, 10% deletes) merged into silver
tables of $BENCH_SIZES rows (default 100k and 1M; 10M on demand) on MinIO, side by side with Python
deltalake and with the reference architecture, Spark Structured Streaming + Delta (bench/peer_spark.py;
BENCH_SPARK=0 skips it), in the same run, each on its natural layout (ours: key-clustered files of the default
target size; Python deltalake: write_deltalake defaults and a bare MERGE with the same semantics; Spark: the
base written by Spark, then foreachBatch MERGEs).

Workloads, one after the other on the same tables (W2 runs on whatever layout W1 left):
  W1  updates and deletes of keys uniform over the table;
  W2  updates and deletes in the newest 1% of the key space (the usual CDC shape).
Each round: the batch lands in bronze (not timed), then one `lakehouse silver` step (the release binary,
a fresh process: cold snapshots) and the peer's MERGE (a fresh Python process), each under /usr/bin/time.
Spark: per workload and mode, one process (session start, a streaming query over a landing directory on
MinIO) to which the same files are added one by one; its micro-batch times (round 0: the first micro-batch,
reported apart) and the JVM's peak RSS. Round 0 is a warm-up; the report has medians of $BENCH_ROUNDS
rounds (default 5). At the end all tables are compared row for row. Writes bench/results/merge.{md,json,png}.
"""
import json
import os
import random
import statistics
import subprocess
import sys
import time

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = os.environ
SIZES = [int(s) for s in ENV.get("BENCH_SIZES", "100000 1000000").split()]
ROUNDS = int(ENV.get("BENCH_ROUNDS", "5"))
BIN = ENV.get("LAKEHOUSE_CLI", os.path.join(ENV["CARGO_TARGET_DIR"], "release", "lakehouse"))
PY = os.path.join(ENV["TOOLS_VENV"], "bin", "python")
SPARK = ENV.get("BENCH_SPARK", "1") != "0"
# Spark only up to this many rows (0: every size): its 10M cell alone takes longer than all of ours.
SPARK_MAX_ROWS = int(ENV.get("BENCH_SPARK_MAX_ROWS", "0"))
SPARK_PY = os.path.join(ENV.get("LAKEHOUSE_HOME") or os.path.expanduser("~/.cache/lakehouse"), "venv-spark", "bin", "python")
WORK = os.path.join(ENV["LAKEHOUSE_STATE"], "bench-merge")
BUCKET = ENV["LAKE_BUCKET"]
CHUNK = 1_000_000  # rows per base file: the initial load arrives as a backfill of 1M-row objects
RESULTS = ENV.get("BENCH_RESULTS") or os.path.join(HERE, "results")


def log(msg):
    print(f"[bench-merge] {msg}", file=sys.stderr, flush=True)


def timed(cmd, env=None):
    """Runs cmd under /usr/bin/time; returns (its stdout JSON lines, wall s, peak RSS MB)."""
    tfile = os.path.join(WORK, "time")
    p = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", tfile, *cmd], capture_output=True, text=True,
                       env={**ENV, **(env or {})})
    if p.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    wall, rss = open(tfile).read().split()[-2:]
    lines = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    return lines, float(wall), int(rss) / 1024


def timed_files(cmd, name):
    """Like timed(), for a long-running child (Spark: a JVM under Python): stdout and stderr go to files under
    WORK (no pipes for the JVM to hold open); returns (its stdout JSON lines, wall s, peak RSS MB of the
    largest process)."""
    tfile, ofile, efile = (os.path.join(WORK, f"{name}.{x}") for x in ("time", "out", "err"))
    with open(ofile, "w") as o, open(efile, "w") as e:
        rc = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", tfile, *cmd], stdout=o, stderr=e,
                            stdin=subprocess.DEVNULL, env=ENV).returncode
    if rc != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{open(efile).read()[-3000:]}")
    wall, rss = open(tfile).read().split()[-2:]
    lines = [json.loads(x) for x in open(ofile).read().splitlines() if x.startswith("{")]
    return lines, float(wall), int(rss) / 1024


def spark(*args, name="spark"):
    """bench/peer_spark.py: (per-file JSON lines, its summary line)."""
    out, _, _ = timed_files([SPARK_PY, os.path.join(HERE, "peer_spark.py"), *args], name)
    summary = next(o for o in out if o.get("summary"))
    return [o for o in out if not o.get("summary")], summary


def row(i, seq, rng, status="open", deleted=False):
    amount = "null" if deleted else rng.randint(0, 10**6)
    st = "null" if deleted else f'"{status}"'
    return f'{{"id": {i}, "seq": {seq}, "amount": {amount}, "status": {st}, "deleted": {str(deleted).lower()}}}\n'


# The benchmarks' silver table (bench-merge, bench-gold): accounts keyed by id, CDC by seq.
ACCOUNTS = """[[table]]
name = "accounts"
format = "jsonl"
keys = ["id"]
sequence_by = "seq"
delete_column = "deleted"
columns = ["id long not null", "seq long not null", "amount long", "status string", "deleted boolean"]
"""
WORKLOADS = ("w1", "w2")
MODES = ("cold", "warm")


def generate(data, n):
    """base-*.jsonl (ids 0..n-1, seq 1) and, per workload and mode, ROUNDS+1 batch files; deterministic.
    Returns (base file names, {(workload, mode): [file names]})."""
    os.makedirs(data, exist_ok=True)
    bases = [f"base-{c:03}.jsonl" for c in range((n + CHUNK - 1) // CHUNK)]
    rounds = {(w, m): [f"{w}-{m}-{r}.jsonl" for r in range(ROUNDS + 1)] for w in WORKLOADS for m in MODES}
    if not os.path.exists(os.path.join(data, "base-done")):
        log(f"generating {n} rows")
        rng = random.Random(n)
        for c, name in enumerate(bases):
            with open(os.path.join(data, name), "w") as f:
                f.writelines(row(i, 1, rng) for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)))
        open(os.path.join(data, "base-done"), "w").close()
    marker = os.path.join(data, f"rounds-done-{ROUNDS}")
    if os.path.exists(marker):
        return bases, rounds
    rng = random.Random(n + 1)
    next_id = n
    for k, (w, m) in enumerate(rounds):
        for r, name in enumerate(rounds[(w, m)]):
            seq = 10 + 100 * k + r
            lo = 0 if w == "w1" else next_id - max(next_id // 100, 600)
            existing = rng.sample(range(lo, next_id), 600)
            rows = [row(i, seq, rng, "updated") for i in existing[:500]]
            rows += [row(i, seq, rng, deleted=True) for i in existing[500:]]
            rows += [row(next_id + j, seq, rng, "new") for j in range(400)]
            next_id += 400
            rng.shuffle(rows)
            with open(os.path.join(data, name), "w") as f:
                f.writelines(rows)
    open(marker, "w").close()
    return bases, rounds


def event(path):
    ev = os.path.join(WORK, "event.json")
    with open(ev, "w") as f:
        json.dump({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": ""},
                                                                       "object": {"key": path.lstrip("/")}}}]}, f)
    return ev


def ingest(cfg, path):
    subprocess.run([BIN, "ingest", "--config", cfg, event(path)], check=True, capture_output=True,
                   env={**ENV, "RUST_LOG": "warn"})


def silver(cfg):
    """One cold step: a fresh `lakehouse silver` process."""
    out, wall, rss = timed([BIN, "silver", "--config", cfg, "--table", "accounts"],
                           env={"RUST_LOG": ENV.get("BENCH_LOG", "warn")})
    return {**out[-1], "wall_s": wall, "rss_mb": rss}


def replay(cfg, paths):
    """Warm steps: bronze then silver per file, in one `lakehouse replay` process."""
    out, wall, rss = timed([BIN, "replay", "--config", cfg, "--table", "accounts", *[p.lstrip("/") for p in paths]],
                           env={"RUST_LOG": ENV.get("BENCH_LOG", "warn")})
    return [{**o, "wall_s": wall / len(out), "rss_mb": rss} for o in out]


def peer(*args):
    out, wall, rss = timed([PY, os.path.join(HERE, "peer_merge.py"), *args])
    return [{**o, "wall_s": wall / len(out), "rss_mb": rss} for o in out]


def layout(uri):
    """Files of a table and how many overlap another file's id range (0 = perfectly clustered)."""
    from deltalake import DeltaTable
    a = DeltaTable(uri, storage_options=storage()).get_add_actions(flatten=True)
    ranges = sorted(zip(a.column("min.id").to_pylist(), a.column("max.id").to_pylist()))
    overlapping = sum(1 for i in range(1, len(ranges)) if ranges[i][0] <= ranges[i - 1][1])
    return {"files": len(ranges), "overlapping": overlapping, "mb": sum(a.column("size_bytes").to_pylist()) / 2**20}


def storage():
    return {"AWS_ENDPOINT_URL": ENV["MINIO_ENDPOINT"], "AWS_ACCESS_KEY_ID": ENV["MINIO_ROOT_USER"],
            "AWS_SECRET_ACCESS_KEY": ENV["MINIO_ROOT_PASSWORD"], "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}


def pipeline_head(root, lake, extra=""):
    """The pipeline file's landing (local files under root) and lake (on MinIO) sections."""
    return f"""{extra}
[landing]
uri = "file://{root}/landing"
[lake]
uri = "{lake}"
[lake.storage]
aws_endpoint_url = "{ENV['MINIO_ENDPOINT']}"
aws_access_key_id = "{ENV['MINIO_ROOT_USER']}"
aws_secret_access_key = "{ENV['MINIO_ROOT_PASSWORD']}"
aws_region = "us-east-1"
aws_allow_http = "true"
"""


def ensure_bucket():
    s3 = boto3.client("s3", endpoint_url=ENV["MINIO_ENDPOINT"], region_name="us-east-1",
                      aws_access_key_id=ENV["MINIO_ROOT_USER"], aws_secret_access_key=ENV["MINIO_ROOT_PASSWORD"])
    try:
        s3.create_bucket(Bucket=BUCKET)
    except Exception:
        pass


def run_sizes(name, work, sizes, bench_size, chart, report):
    """A bench's main: bench_size(n, run_id) per size on a fresh lake prefix, then
    bench/results/NAME.{json,png,md} from the results, the chart and the report functions."""
    os.makedirs(work, exist_ok=True)
    os.makedirs(RESULTS, exist_ok=True)
    ensure_bucket()
    run_id = int(time.time())
    results = [bench_size(n, run_id) for n in sizes]
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(results, f, indent=1)
    chart(results, os.path.join(RESULTS, f"{name}.png"))
    text = report(results)
    with open(os.path.join(RESULTS, f"{name}.md"), "w") as f:
        f.write(text)
    print(text)

def same_rows(ours, theirs):
    from deltalake import DeltaTable
    cols = ["id", "seq", "amount", "status"]
    a = DeltaTable(ours, storage_options=storage()).to_pyarrow_table(columns=cols).sort_by("id")
    b = DeltaTable(theirs, storage_options=storage()).to_pyarrow_table(columns=cols).sort_by("id")
    try:
        return a.num_rows, a.equals(b.cast(a.schema))
    except Exception:  # a type or nullability that does not cast: not equal
        return a.num_rows, False


def bench_size(n, run_id):
    root = os.path.join(WORK, f"data-{n}")
    data = os.path.join(root, "landing", "accounts")
    bases, rounds = generate(data, n)
    lake = f"s3://{BUCKET}/bench-merge/{run_id}-{n}"
    cfg = os.path.join(WORK, f"pipeline-{n}.toml")
    file_mb = ENV.get("BENCH_FILE_MB")
    with open(cfg, "w") as f:
        f.write(pipeline_head(root, lake, f'target_file_size_mb = {file_mb}' if file_mb else '') + ACCOUNTS)
    t0 = time.time()
    for b in bases:  # the initial load: a backfill of 1M-row objects, one silver step each
        ingest(cfg, os.path.join(data, b))
        silver(cfg)
    load_s = time.time() - t0
    py_uri = f"{lake}/python-silver/accounts"
    t0 = time.time()
    peer("init", py_uri, *[os.path.join(data, b) for b in bases])
    peer_load_s = time.time() - t0
    log(f"{n} rows loaded: ours {load_s:.1f} s, peer {peer_load_s:.1f} s; ours {layout(f'{lake}/silver/accounts')}")
    spark_uri, spark_runs, spark_load_s = f"{lake}/spark-silver/accounts", [], None
    with_spark = SPARK and (not SPARK_MAX_ROWS or n <= SPARK_MAX_ROWS)
    if with_spark:  # the base written by Spark itself (not timed: the reference system's own initial load)
        t0 = time.time()
        spark("init", spark_uri, *[os.path.join(data, b) for b in bases], name=f"spark-init-{n}")
        spark_load_s = time.time() - t0
        log(f"{n} rows loaded by Spark in {spark_load_s:.1f} s")
    cells = []
    for w in WORKLOADS:
        for mode in MODES:
            paths = [os.path.join(data, name) for name in rounds[(w, mode)]]
            if mode == "cold":  # a fresh process per step, ours and the peer's
                ours, theirs = [], []
                for path in paths:
                    ingest(cfg, path)
                    ours.append(silver(cfg))
                    theirs += peer("merge", py_uri, path)
            else:  # one process for all the rounds, ours and the peer's
                ours = replay(cfg, paths)
                theirs = peer("merge", py_uri, *paths)
            for r, (o, p) in enumerate(zip(ours, theirs)):
                if o.get("changes") != 1000:
                    sys.exit(f"our step saw {o.get('changes')} changes, not 1000: {o}")
                log(f"{n} {w} {mode} round {r}: ours {o['elapsed_ms']:.0f} ms {o['path']} scanned "
                    f"{o['files_scanned']} rewritten {o['files_rewritten']} | peer {p['elapsed_ms']:.0f} ms "
                    f"rewritten {p['files_rewritten']}")
            engines = [("lakehouse", ours[1:]), ("python-deltalake", theirs[1:])]
            if with_spark:  # one streaming query for the cell's files, after ours and the peer's (not concurrently)
                sp, summary = spark("stream", spark_uri, f"{lake}/spark-landing/accounts",
                                    f"{lake}/spark-checkpoint/accounts", *paths, name=f"spark-{n}-{w}-{mode}")
                for r, b in enumerate(sp):
                    if b["rows"] != 1000:
                        sys.exit(f"Spark's micro-batch read {b['rows']} rows, not 1000: {b}")
                    log(f"{n} {w} {mode} round {r}: spark micro-batch {b['elapsed_ms']:.0f} ms (merge "
                        f"{b['merge_ms']:.0f} ms, upload to commit {b['latency_ms']:.0f} ms) rewritten "
                        f"{b['files_rewritten']}")
                log(f"{n} {w} {mode}: spark session {summary['session_s']:.1f} s, query start "
                    f"{summary['query_start_s']:.1f} s, first micro-batch {summary['first_batch_ms']:.0f} ms, "
                    f"JVM peak RSS {summary['jvm_peak_rss_mb']:.0f} MB")
                spark_runs.append({"workload": w.upper(), "mode": mode, **summary,
                                   "merge_ms": [b["merge_ms"] for b in sp], "batch_ms": [b["elapsed_ms"] for b in sp]})
                engines.append(("spark-delta", [{**b, "wall_s": b["latency_ms"] / 1000,
                                                 "rss_mb": summary["jvm_peak_rss_mb"]} for b in sp[1:]]))
            for engine, runs in engines:  # round 0 warms up
                med = lambda k: statistics.median(x.get(k) or 0 for x in runs)
                cells.append({"rows": n, "workload": w.upper(), "mode": mode, "engine": engine,
                              "step_ms": med("elapsed_ms"), "wall_s": med("wall_s"), "rss_mb": med("rss_mb"),
                              "files_scanned": med("files_scanned"), "files_rewritten": med("files_rewritten"),
                              "mb_rewritten": med("bytes_rewritten") / 2**20,
                              "max_files_rewritten": max(x.get("files_rewritten") or 0 for x in runs),
                              "max_rss_mb": max(x["rss_mb"] for x in runs)})
    rows, equal = same_rows(f"{lake}/silver/accounts", py_uri)
    if not equal:
        sys.exit(f"{n}: our silver and the peer's table differ")
    res = {"rows": n, "cells": cells, "load_s": load_s, "peer_load_s": peer_load_s, "final_rows": rows,
           "layout": layout(f"{lake}/silver/accounts"), "peer_layout": layout(py_uri)}
    if with_spark:
        spark_rows, spark_equal = same_rows(f"{lake}/silver/accounts", spark_uri)
        if not spark_equal:
            sys.exit(f"{n}: our silver ({rows} rows) and Spark's table ({spark_rows} rows) differ")
        res.update(spark=spark_runs, spark_load_s=spark_load_s, spark_layout=layout(spark_uri))
    return res


def report(results):
    spark_on = any(r.get("spark") for r in results)
    peers = [("python-deltalake", "peer ÷ ours")] + ([("spark-delta", "Spark ÷ ours")] if spark_on else [])
    lines = ["| silver rows | workload | process | engine | step ms (median) | " + " | ".join(h for _, h in peers) +
             " | peak RSS MB (median / max) | files scanned | files rewritten (median / max) | MB rewritten |",
             "|" + "---|" * (9 + len(peers))]
    for res in results:
        for c in res["cells"]:
            ratios = []
            for engine, _ in peers:
                p = next((p for p in res["cells"] if p["workload"] == c["workload"] and p["mode"] == c["mode"]
                          and p["engine"] == engine), None)
                ratios.append(f"**{p['step_ms'] / c['step_ms']:.2f}x**" if c["engine"] == "lakehouse" and p else "")
            scanned = f"{c['files_scanned']:.0f}" if c["engine"] == "lakehouse" else "-"
            lines.append(f"| {c['rows']:,} | {c['workload']} | {c['mode']} | {c['engine']} | {c['step_ms']:.0f} | "
                         f"{' | '.join(ratios)} | {c['rss_mb']:.0f} / {c['max_rss_mb']:.0f} | {scanned} | "
                         f"{c['files_rewritten']:.0f} / {c['max_files_rewritten']} | {c['mb_rewritten']:.1f} |")
    lay = ["| silver rows | initial load s (ours / peer" + (" / Spark" if spark_on else "") + ") | ours: files, "
           "overlapping, MB | peer: files, MB |" + (" Spark: files, MB |" if spark_on else "") + " rows equal |",
           "|---|---|---|---|" + ("---|" if spark_on else "") + "---|"]
    for res in results:
        l, p, s = res["layout"], res["peer_layout"], res.get("spark_layout")
        load = f"{res['load_s']:.1f} / {res['peer_load_s']:.1f}" + (f" / {res['spark_load_s']:.1f}" if s else "")
        lay.append(f"| {res['rows']:,} | {load} | {l['files']}, {l['overlapping']}, {l['mb']:.0f} | {p['files']}, "
                   f"{p['mb']:.0f} |" + (f" {s['files']}, {s['mb']:.0f} |" if s else " - |" if spark_on else "") +
                   f" {res['final_rows']:,} rows, yes |")
    versions = subprocess.run([PY, "-c", "import deltalake, pyarrow; print(deltalake.__version__, pyarrow.__version__)"],
                              capture_output=True, text=True).stdout.split()
    spark_text = []
    if spark_on:
        runs = [(res["rows"], r) for res in results for r in res.get("spark", [])]
        v = runs[0][1].get("versions", {})
        fixed = ["| silver rows | workload | process | session start s | query start s | first micro-batch ms | "
                 "steady micro-batch ms (median) | its foreachBatch MERGE ms (median) | JVM peak RSS MB |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for n, r in runs:
            fixed.append(f"| {n:,} | {r['workload']} | {r['mode']} | {r['session_s']:.1f} | {r['query_start_s']:.1f} | "
                         f"{r['first_batch_ms']:.0f} | {statistics.median(r['batch_ms'][1:]):.0f} | "
                         f"{statistics.median(r['merge_ms'][1:]):.0f} | {r['jvm_peak_rss_mb']:.0f} |")
        first = runs[0][1]
        spark_text = [
            "",
            f"Spark: PySpark {v.get('pyspark', '?')} (Spark {v.get('spark', '?')}, Hadoop {v.get('hadoop', '?')} S3A, "
            f"Java {v.get('java', '?')}) with delta-spark {v.get('delta-spark', '?')} on `local[2]`, driver memory "
            f"{ENV.get('PEER_SPARK_DRIVER_MEMORY', '2g')}, {first.get('partitions')} shuffle and Delta snapshot "
            "partitions (the defaults, 200 and 50, are for clusters). The reference architecture: Structured Streaming "
            "over a landing directory on MinIO (JSON source, `maxFilesPerTrigger` 1, "
            f"{first.get('trigger')} trigger, checkpoint on MinIO), `foreachBatch` keeping the latest row per key "
            "and running one Delta MERGE with the same clauses. Its table is written by Spark from the base files. "
            "One process per workload and process row: the session, the query, then the same files as ours added "
            "one by one; `step ms` is a micro-batch's `triggerExecution` (listing, reading the file, the MERGE, "
            "offset and commit logs) in a warm JVM, so Spark's rows are always warm: the always-on cluster. "
            "Its fixed costs, paid at every (daily) restart:",
            "",
            *fixed,
        ]
    return "\n".join([
        f"# Silver MERGE benchmark ({time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, {os.cpu_count()} cores, "
        f"MinIO on loopback)",
        "",
        "1,000-row CDC batches (500 updates, 400 inserts of new keys, 100 deletes) into silver; W1: updates and deletes",
        "uniform over the table; W2: in the newest 1% of the key space. W1 runs first, W2 on the layout W1 left.",
        f"Median of {ROUNDS} rounds after one warm-up. `cold`: each step in a fresh process (ours: `lakehouse silver`;",
        "the peer: a Python process, timed after its imports); `warm`: all rounds in one process (ours: `lakehouse",
        "replay`, bronze then silver per file with warm snapshots, as a warm Lambda; the peer: one DeltaTable brought",
        "up to date before each MERGE). Our step (release build): opening or updating bronze/silver/tombstones, reading",
        "the new bronze files, normalising, the tombstone check, the MERGE or append, the tombstone commit. Peer: Python deltalake "
        f"{versions[0] if versions else '?'} (pyarrow {versions[1] if len(versions) > 1 else '?'}): reading",
        "the JSONL batch, loading the table and a bare MERGE with the same semantics, on a table written by",
        "`write_deltalake` defaults. `peer ÷ ours` (and `Spark ÷ ours`) > 1 means we are faster. Figures are noisy",
        "(one shared 2-core machine): read the ratios.",
        *spark_text,
        "",
        *lines,
        "",
        "After all rounds (the tables compared row for row with ours: equal):",
        "",
        *lay,
        "",
        "![step ms against table size](merge.png)",
        "",
        "Reproduce: `make bench-merge` (`BENCH_SIZES=\"100000 1000000 10000000\"`, `BENCH_ROUNDS`, `BENCH_FILE_MB`, "
        "`BENCH_SPARK_MAX_ROWS` (Spark only up to that size), "
        "`BENCH_SPARK=0` without Spark).",
    ]) + "\n"


def chart(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    engines = [("lakehouse", "C0"), ("python-deltalake", "C1"), ("spark-delta", "C2")]
    for ax, mode in zip(axes, MODES):
        for engine, color in engines:
            for w, marker, style in (("W1", "o", "-"), ("W2", "s", "--")):
                pts = [(c["rows"], c["step_ms"]) for r in results for c in r["cells"]
                       if c["engine"] == engine and c["workload"] == w and c["mode"] == mode]
                if pts:
                    ax.plot(*zip(*pts), style, color=color, marker=marker, label=f"{engine} {w}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("silver table rows")
        ax.set_title(f"{mode} process" + (" (Spark: always a warm JVM)" if any(r.get("spark") for r in results) else ""))
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("1,000-row CDC step, ms (median)")
    axes[1].legend(fontsize=8)
    fig.suptitle("Silver MERGE: step time against table size (W1 uniform keys, W2 newest 1%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    if SPARK and not os.path.exists(SPARK_PY):
        sys.exit(f"no {SPARK_PY}: run `infra/local/install.sh spark` (or BENCH_SPARK=0 to leave Spark out)")
    run_sizes("merge", WORK, SIZES, bench_size, chart, report)


if __name__ == "__main__":
    main()
