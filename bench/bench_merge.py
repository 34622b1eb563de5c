"""Silver MERGE benchmark: 1,000-row CDC batches (50% updates, 40% inserts, 10% deletes) merged into silver
tables of $BENCH_SIZES rows (default 100k and 1M; 10M on demand) on MinIO, side by side with Python
deltalake in the same run, each on its natural layout (ours: key-clustered files of the default target
size; the peer: write_deltalake defaults and a bare MERGE with the same semantics).

Workloads, one after the other on the same tables (W2 runs on whatever layout W1 left):
  W1  updates and deletes of keys uniform over the table;
  W2  updates and deletes in the newest 1% of the key space (the usual CDC shape).
Each round: the batch lands in bronze (not timed), then one `lakehouse silver` step (the release binary,
a fresh process: cold snapshots) and the peer's MERGE (a fresh Python process), each under /usr/bin/time.
Round 0 is a warm-up; the report has medians of $BENCH_ROUNDS rounds (default 5). At the end both tables
are compared row for row. Writes bench/results/merge.{md,json,png}.
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
WORK = os.path.join(ENV["LAKEHOUSE_STATE"], "bench-merge")
BUCKET = ENV["LAKE_BUCKET"]
CHUNK = 1_000_000  # rows per base file: the initial load arrives as a backfill of 1M-row objects
RESULTS = os.path.join(HERE, "results")


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


def row(i, seq, rng, status="open", deleted=False):
    amount = "null" if deleted else rng.randint(0, 10**6)
    st = "null" if deleted else f'"{status}"'
    return f'{{"id": {i}, "seq": {seq}, "amount": {amount}, "status": {st}, "deleted": {str(deleted).lower()}}}\n'


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


def same_rows(ours, theirs):
    from deltalake import DeltaTable
    cols = ["id", "seq", "amount", "status"]
    a = DeltaTable(ours, storage_options=storage()).to_pyarrow_table(columns=cols).sort_by("id")
    b = DeltaTable(theirs, storage_options=storage()).to_pyarrow_table(columns=cols).sort_by("id")
    return a.num_rows, a.equals(b)


def bench_size(n, run_id):
    root = os.path.join(WORK, f"data-{n}")
    data = os.path.join(root, "landing", "accounts")
    bases, rounds = generate(data, n)
    lake = f"s3://{BUCKET}/bench-merge/{run_id}-{n}"
    cfg = os.path.join(WORK, f"pipeline-{n}.toml")
    file_mb = ENV.get("BENCH_FILE_MB")
    with open(cfg, "w") as f:
        f.write(f"""{f'target_file_size_mb = {file_mb}' if file_mb else ''}
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
[[table]]
name = "accounts"
format = "jsonl"
keys = ["id"]
sequence_by = "seq"
delete_column = "deleted"
columns = ["id long not null", "seq long not null", "amount long", "status string", "deleted boolean"]
""")
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
            for engine, runs in (("lakehouse", ours[1:]), ("python-deltalake", theirs[1:])):  # round 0 warms up
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
    return {"rows": n, "cells": cells, "load_s": load_s, "peer_load_s": peer_load_s, "final_rows": rows,
            "layout": layout(f"{lake}/silver/accounts"), "peer_layout": layout(py_uri)}


def report(results):
    lines = ["| silver rows | workload | process | engine | step ms (median) | peer ÷ ours | peak RSS MB (median / max) "
             "| files scanned | files rewritten (median / max) | MB rewritten |", "|" + "---|" * 10]
    for res in results:
        for c in res["cells"]:
            peer = next(p for p in res["cells"] if p["workload"] == c["workload"] and p["mode"] == c["mode"]
                        and p["engine"] == "python-deltalake")
            ratio = f"**{peer['step_ms'] / c['step_ms']:.2f}x**" if c["engine"] == "lakehouse" else ""
            scanned = f"{c['files_scanned']:.0f}" if c["engine"] == "lakehouse" else "-"
            lines.append(f"| {c['rows']:,} | {c['workload']} | {c['mode']} | {c['engine']} | {c['step_ms']:.0f} | "
                         f"{ratio} | {c['rss_mb']:.0f} / {c['max_rss_mb']:.0f} | {scanned} | "
                         f"{c['files_rewritten']:.0f} / {c['max_files_rewritten']} | {c['mb_rewritten']:.1f} |")
    lay = ["| silver rows | initial load s (ours / peer) | ours: files, overlapping, MB | peer: files, MB | rows equal |",
           "|---|---|---|---|---|"]
    for res in results:
        l, p = res["layout"], res["peer_layout"]
        lay.append(f"| {res['rows']:,} | {res['load_s']:.1f} / {res['peer_load_s']:.1f} | {l['files']}, "
                   f"{l['overlapping']}, {l['mb']:.0f} | {p['files']}, {p['mb']:.0f} | {res['final_rows']:,} rows, yes |")
    versions = subprocess.run([PY, "-c", "import deltalake, pyarrow; print(deltalake.__version__, pyarrow.__version__)"],
                              capture_output=True, text=True).stdout.split()
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
        "`write_deltalake` defaults. `peer ÷ ours` > 1 means we are faster.",
        "",
        *lines,
        "",
        "After all rounds (both tables compared row for row: equal):",
        "",
        *lay,
        "",
        "![step ms against table size](merge.png)",
        "",
        "Reproduce: `make bench-merge` (`BENCH_SIZES=\"100000 1000000 10000000\"`, `BENCH_ROUNDS`, `BENCH_FILE_MB`).",
    ]) + "\n"


def chart(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, mode in zip(axes, MODES):
        for engine, style in (("lakehouse", "-"), ("python-deltalake", "--")):
            for w, marker in (("W1", "o"), ("W2", "s")):
                pts = [(c["rows"], c["step_ms"]) for r in results for c in r["cells"]
                       if c["engine"] == engine and c["workload"] == w and c["mode"] == mode]
                ax.plot(*zip(*pts), style, marker=marker, label=f"{engine} {w}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("silver table rows")
        ax.set_title(f"{mode} process")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("1,000-row CDC step, ms (median)")
    axes[1].legend()
    fig.suptitle("Silver MERGE: step time against table size (W1 uniform keys, W2 newest 1%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    os.makedirs(WORK, exist_ok=True)
    os.makedirs(RESULTS, exist_ok=True)
    s3 = boto3.client("s3", endpoint_url=ENV["MINIO_ENDPOINT"], region_name="us-east-1",
                      aws_access_key_id=ENV["MINIO_ROOT_USER"], aws_secret_access_key=ENV["MINIO_ROOT_PASSWORD"])
    try:
        s3.create_bucket(Bucket=BUCKET)
    except Exception:
        pass
    run_id = int(time.time())
    results = [bench_size(n, run_id) for n in SIZES]
    with open(os.path.join(RESULTS, "merge.json"), "w") as f:
        json.dump(results, f, indent=1)
    chart(results, os.path.join(RESULTS, "merge.png"))
    text = report(results)
    with open(os.path.join(RESULTS, "merge.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
