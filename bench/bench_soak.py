"""Soak benchmark: does a step cost the same after thousands of steps? One pipeline of $SOAK_TABLES tables
(default 5) on MinIO, each fed $SOAK_STEPS small CDC objects (default 2,000; 5-30 changes each: inserts,
updates and deletes over 20,000 keys), one bronze + silver step per object, back to back (time compressed:
a month of per-minute batches is ~43,000 steps). Two fresh lakes side by side (same machine noise for
both): one with maintenance every $SOAK_MAINTAIN_EVERY steps per table (the schedule, compressed), one
without any.

Each table of each lake is one `lakehouse replay --maintain-every N --status-every M` process (warm
snapshots, as a warm Lambda container); all run side by side. Reported: step latency (bronze + silver) p50/p99 over the
first and last 10% of steps, cold table open time, files, commits since the last checkpoint and live
bytes over steps (from the status lines), and the storage left in the bucket at the end.
Writes bench/results/soak.{md,json,png}.
"""
import json
import os
import random
import statistics
import subprocess
import sys
import time

import boto3

import bench_merge as bm

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = os.environ
TABLES = int(ENV.get("SOAK_TABLES", "5"))
STEPS = int(ENV.get("SOAK_STEPS", "2000"))
MAINTAIN_EVERY = int(ENV.get("SOAK_MAINTAIN_EVERY", "100"))
STATUS_EVERY = int(ENV.get("SOAK_STATUS_EVERY", "100"))
KEYS = 20_000
BIN = ENV.get("LAKEHOUSE_CLI", os.path.join(ENV["CARGO_TARGET_DIR"], "release", "lakehouse"))
WORK = os.path.join(ENV["LAKEHOUSE_STATE"], "bench-soak")
BUCKET = ENV["LAKE_BUCKET"]
RESULTS = os.path.join(HERE, "results")


def log(msg):
    print(f"[bench-soak] {msg}", file=sys.stderr, flush=True)


def generate(root):
    """STEPS objects per table, deterministic; returns {table: [paths]}."""
    out = {}
    for t in range(TABLES):
        name = f"t{t}"
        d = os.path.join(root, "landing", name)
        os.makedirs(d, exist_ok=True)
        paths = [os.path.join(d, f"b-{s:05}.jsonl") for s in range(STEPS)]
        out[name] = paths
        marker = os.path.join(d, f"done-{STEPS}")
        if os.path.exists(marker):
            continue
        rng = random.Random(t)
        seq = 0
        for p in paths:
            lines = []
            for _ in range(rng.randint(5, 30)):
                seq += 1
                k = rng.randrange(KEYS)
                deleted = rng.random() < 0.1
                amount = "null" if deleted else rng.randint(0, 10**6)
                lines.append(f'{{"id": {k}, "seq": {seq}, "amount": {amount}, "deleted": {str(deleted).lower()}}}\n')
            with open(p, "w") as f:
                f.writelines(lines)
        open(marker, "w").close()
    return out


def config(root, lake):
    tables = "".join(f"""
[[table]]
name = "t{t}"
format = "jsonl"
keys = ["id"]
sequence_by = "seq"
delete_column = "deleted"
tombstone_retention_days = 7
columns = ["id long not null", "seq long not null", "amount long", "deleted boolean"]
""" for t in range(TABLES))
    path = os.path.join(root, f"pipeline-{lake.rsplit('/', 1)[-1]}.toml")
    with open(path, "w") as f:
        f.write(bm.pipeline_head(root, lake) + tables)
    return path


def start_mode(root, data, run_id, maintain):
    """Starts one `lakehouse replay` per table on a fresh lake; returns what finish_mode needs."""
    mode = "maintained" if maintain else "unmaintained"
    lake = f"s3://{BUCKET}/bench-soak/{run_id}-{mode}"
    cfg = config(root, lake)
    procs = {}
    for name, paths in data.items():
        cmd = [BIN, "replay", "--config", cfg, "--table", name, "--status-every", str(STATUS_EVERY)]
        if maintain:
            cmd += ["--maintain-every", str(MAINTAIN_EVERY)]
        cmd += [p.lstrip("/") for p in paths]
        # Output to files, not pipes: a pipe nobody reads while another process is waited for fills up
        # and stalls its process (everything must run side by side the whole time).
        out = open(os.path.join(root, f"{mode}-{name}.out"), "w")
        err = open(os.path.join(root, f"{mode}-{name}.err"), "w")
        procs[name] = (subprocess.Popen(cmd, stdout=out, stderr=err, env={**ENV, "RUST_LOG": ENV.get("SOAK_RUST_LOG", "warn"), "NO_COLOR": "1"}), out, err)
    return mode, run_id, procs, time.time()


def read_outputs(root, mode, names, partial=False):
    """The step, status and maintenance lines each table's replay wrote; with `partial`, as far as every
    table of the mode got (a run stopped early)."""
    tables = {}
    for name in names:
        lines = []
        for x in open(os.path.join(root, f"{mode}-{name}.out")):
            try:
                lines.append(json.loads(x))
            except ValueError:
                pass  # a line cut by a stopped run
        steps = [x for x in lines if "bronze_ms" in x]
        if len(steps) != STEPS and not partial:
            sys.exit(f"{mode} {name}: {len(steps)} steps, not {STEPS}")
        tables[name] = {
            "step_ms": [x["bronze_ms"] + x["elapsed_ms"] for x in steps],
            "silver_ms": [x["elapsed_ms"] for x in steps],
            "status": [x for x in lines if "status" in x],
            "maintain": [x for x in lines if "maintain" in x],
        }
    done = min(len(t["step_ms"]) for t in tables.values())
    for t in tables.values():
        t["step_ms"], t["silver_ms"] = t["step_ms"][:done], t["silver_ms"][:done]
        t["status"] = [x for x in t["status"] if x["step"] <= done]
        t["maintain"] = [x for x in t["maintain"] if x["maintain"] <= done]
    return tables, done


def storage_of(run_id, mode):
    s3 = boto3.client("s3", endpoint_url=ENV["MINIO_ENDPOINT"], region_name="us-east-1",
                      aws_access_key_id=ENV["MINIO_ROOT_USER"], aws_secret_access_key=ENV["MINIO_ROOT_PASSWORD"])
    storage = {"objects": 0, "bytes": 0, "log_objects": 0}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"bench-soak/{run_id}-{mode}/"):
        for o in page.get("Contents", []):
            storage["objects"] += 1
            storage["bytes"] += o["Size"]
            storage["log_objects"] += "/_delta_log/" in o["Key"]
    return storage


def finish_mode(started):
    mode, run_id, procs, t0 = started
    for name, (p, out, err) in procs.items():
        p.wait()
        out.close()
        err.close()
        if p.returncode != 0:
            sys.exit(f"{mode} {name}: replay failed\n{open(err.name).read()[-3000:]}")
    wall = time.time() - t0
    tables, done = read_outputs(os.path.dirname(next(iter(procs.values()))[1].name), mode, list(procs))
    storage = storage_of(run_id, mode)
    log(f"{mode}: {TABLES}x{done} steps in {wall:.0f} s; storage {storage}")
    return {"mode": mode, "wall_s": wall, "tables": tables, "storage": storage, "steps": done}


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def summary(run):
    tenth = max(1, run["steps"] // 10)
    first = [v for t in run["tables"].values() for v in t["step_ms"][:tenth]]
    last = [v for t in run["tables"].values() for v in t["step_ms"][-tenth:]]
    status_first = [s for t in run["tables"].values() for s in t["status"][:1]]
    status_last = [s for t in run["tables"].values() for s in t["status"][-1:]]
    mean = lambda xs: statistics.mean(xs) if xs else 0
    # The sawtooth between maintenance runs: the 10 steps before each run against the 10 after the one
    # before it (cycles after the first, whose start is a cold one), pooled over cycles and tables.
    before, after = [], []
    for t in run["tables"].values():
        ms = t["step_ms"]
        for start in range(MAINTAIN_EVERY, len(ms) - MAINTAIN_EVERY + 1, MAINTAIN_EVERY):
            after += ms[start:start + 10]
            before += ms[start + MAINTAIN_EVERY - 10:start + MAINTAIN_EVERY]
    return {
        "sawtooth_p50": statistics.median(before) / statistics.median(after) if before and after else None,
        "mode": run["mode"], "steps": run["steps"],
        "first_p50": statistics.median(first), "first_p99": pct(first, 99),
        "last_p50": statistics.median(last), "last_p99": pct(last, 99),
        "ratio_p50": statistics.median(last) / statistics.median(first),
        "open_ms_first": mean([s["open_ms"] for s in status_first]),
        "open_ms_last": mean([s["open_ms"] for s in status_last]),
        "bronze_files_last": mean([s["bronze"]["files"] for s in status_last]),
        "silver_files_last": mean([s["silver"]["files"] for s in status_last]),
        "bronze_log_tail_last": mean([s["bronze"]["since_checkpoint"] for s in status_last]),
        "storage_mb": run["storage"]["bytes"] / 2**20, "log_objects": run["storage"]["log_objects"],
        "objects": run["storage"]["objects"],
        "maintenance_runs": sum(len(t["maintain"]) for t in run["tables"].values()),
        "maintenance_ms_p50": statistics.median([m["elapsed_ms"] for t in run["tables"].values()
                                                 for m in t["maintain"]] or [0]),
    }


def report(runs, sums):
    head = ("| mode | steps per table | step p50 first 10% (ms) | p50 last 10% | last ÷ first | p99 first | p99 last | "
            "between maintenance runs: last 10 ÷ first 10 | cold open first / last (ms) | bronze files at end | silver files at end | bronze commits since checkpoint | "
            "bucket objects (log) | bucket MB | maintenance runs (p50 ms) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in sums:
        lines.append(f"| {s['mode']} | {s['steps']} | {s['first_p50']:.0f} | {s['last_p50']:.0f} | **{s['ratio_p50']:.2f}x** | "
                     f"{s['first_p99']:.0f} | {s['last_p99']:.0f} | "
                     f"{'-' if s['sawtooth_p50'] is None or s['mode'] != 'maintained' else format(s['sawtooth_p50'], '.2f') + 'x'} | "
                     f"{s['open_ms_first']:.0f} / {s['open_ms_last']:.0f} | "
                     f"{s['bronze_files_last']:.0f} | {s['silver_files_last']:.0f} | {s['bronze_log_tail_last']:.0f} | "
                     f"{s['objects']} ({s['log_objects']}) | {s['storage_mb']:.1f} | "
                     f"{s['maintenance_runs']} ({s['maintenance_ms_p50']:.0f}) |")
    uname = subprocess.run(["uname", "-srm"], capture_output=True, text=True).stdout.strip()
    return "\n".join([
        "# Soak: step cost over thousands of steps, with and without maintenance",
        "",
        f"{time.strftime('%Y-%m-%d')} · {uname} · {os.cpu_count()} cores (shared, noisy) · MinIO on loopback · "
        f"command: `make bench-soak` (SOAK_TABLES={TABLES} SOAK_STEPS={STEPS} SOAK_MAINTAIN_EVERY={MAINTAIN_EVERY})",
        "",
        f"{TABLES} table(s) per lake, up to {STEPS} steps each (one 5-30-change CDC object, bronze then silver, warm "
        f"process); two lakes side by side: maintenance every {MAINTAIN_EVERY} steps per table in one, none in "
        "the other. "
        "Step = bronze + silver milliseconds. Targets with maintenance: last-10% p50 ≤ 1.2x first-10% p50, and "
        "between maintenance runs the 10 steps before a run ≤ 1.2x the 10 after the previous one (p50, pooled).",
        "",
        *lines,
        "",
        "![step latency against step number](soak.png)",
        "",
    ])


def chart(runs, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 3, figsize=(16, 8))
    axes = axes.flatten()
    w = max(1, max(r["steps"] for r in runs) // 50)
    # Per status line (every STATUS_EVERY steps): the mean over tables of a value of bronze + silver.
    panels = [
        ("bronze + silver data files per table", "files", lambda s: s["bronze"]["files"] + s["silver"]["files"]),
        ("cold open of bronze + silver", "ms", lambda s: s["open_ms"]),
        ("commits since the last checkpoint (bronze + silver)", "commits",
         lambda s: s["bronze"]["since_checkpoint"] + s["silver"]["since_checkpoint"]),
        ("live bytes of bronze + silver per table", "MB", lambda s: (s["bronze"]["bytes"] + s["silver"]["bytes"]) / 2**20),
    ]
    for run, color in zip(runs, ("tab:blue", "tab:red")):
        tables = list(run["tables"].values())
        per_step = [statistics.median(t["step_ms"][i] for t in tables) for i in range(run["steps"])]
        xs = list(range(0, run["steps"], w))
        axes[0].plot(xs, [statistics.median(per_step[i:i + w]) for i in xs], color=color, label=run["mode"])
        axes[1].plot(xs, [statistics.median(sorted(per_step[i:i + w])[-max(1, w // 10):]) for i in xs],
                     color=color, label=run["mode"])
        n = min(len(t["status"]) for t in tables)
        steps = [tables[0]["status"][i]["step"] for i in range(n)]
        for ax, (_, _, f) in zip(axes[2:], panels):
            ax.plot(steps, [statistics.mean(f(t["status"][i]) for t in tables) for i in range(n)],
                    color=color, label=run["mode"])
    axes[0].set(title=f"step latency, median over tables ({w}-step bins)", xlabel="step", ylabel="ms")
    axes[1].set(title="step latency, slowest 10% of each bin", xlabel="step", ylabel="ms")
    for ax, (title, unit, _) in zip(axes[2:], panels):
        ax.set(title=title, xlabel="step", ylabel=unit)
    for a in axes:
        a.legend()
        a.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    os.makedirs(WORK, exist_ok=True)
    os.makedirs(RESULTS, exist_ok=True)
    bm.ensure_bucket()
    root = os.path.join(WORK, "data")
    if len(sys.argv) > 2 and sys.argv[1] == "--analyze":
        # A run stopped early (`--analyze RUN_ID`): report what every table of each lake completed.
        run_id = sys.argv[2]
        names = [f"t{t}" for t in range(TABLES)]
        runs = []
        for mode in ("maintained", "unmaintained"):
            tables, done = read_outputs(root, mode, names, partial=True)
            runs.append({"mode": mode, "wall_s": 0, "tables": tables, "storage": storage_of(run_id, mode),
                         "steps": done})
    else:
        data = generate(root)
        run_id = time.strftime("%Y%m%d-%H%M%S")
        # Both modes side by side (separate lakes), so they share the machine's noise alike.
        started = [start_mode(root, data, run_id, maintain) for maintain in (True, False)]
        runs = [finish_mode(s) for s in started]
    sums = [summary(r) for r in runs]
    for s in sums:
        log(json.dumps(s))
    with open(os.path.join(RESULTS, "soak.json"), "w") as f:
        json.dump({"summary": sums, "steps": STEPS, "tables": TABLES, "maintain_every": MAINTAIN_EVERY}, f, indent=1)
    with open(os.path.join(RESULTS, "soak.md"), "w") as f:
        f.write(report(runs, sums))
    chart(runs, os.path.join(RESULTS, "soak.png"))
    log("wrote bench/results/soak.{md,json,png}")


if __name__ == "__main__":
    main()
