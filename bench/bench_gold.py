"""Gold benchmark: a 1,000-row CDC batch (500 updates that move rows between groups, 100 deletes, 400 inserts,
keys uniform over the table: bench_merge's W1 files) reaches gold views over silver tables of $BENCH_GOLD_SIZES
rows (default 1M and 10M) on MinIO. Per round the batch goes through bronze and silver (not timed), then each
view's `lakehouse gold` step runs in a fresh process (the release binary), and so does the peer's for the same
view: a Python script that reads silver with deltalake, aggregates with pyarrow and overwrites the view
(bench/peer_gold.py), what a Python job keeping such a view does. Views:
  by_status       COUNT(*), SUM, MAX by status (3 groups; updates move rows between them): kept by deltas;
  by_bucket       COUNT(*), SUM, MIN by id % 1000 (1,000 groups): kept by deltas;
  mean_by_status  COUNT(*), AVG by status: AVG is not kept by deltas, so its touched groups are recomputed
                  over silver (today's path for any view deltas do not follow).
Round 0 warms up; medians of $BENCH_ROUNDS rounds (default 5). The target: a by-deltas step at 10M rows is at
most 1.5x the same step at 1M. At the end each of our views is compared row for row with the peer's.
Writes bench/results/gold.{md,json,png}.
"""
import os
import statistics
import sys
import time

import bench_merge as bm

ENV = os.environ
SIZES = [int(s) for s in ENV.get("BENCH_GOLD_SIZES", "1000000 10000000").split()]
RESULTS = bm.RESULTS
WORK = bm.WORK = os.path.join(ENV["LAKEHOUSE_STATE"], "bench-gold")
VIEWS = {
    "by_status": ("SELECT status, COUNT(*) AS accounts, SUM(amount) AS total, MAX(amount) AS top "
                  "FROM accounts GROUP BY status", "status"),
    "by_bucket": ("SELECT id % 1000 AS bucket, COUNT(*) AS accounts, SUM(amount) AS total, MIN(amount) AS low "
                  "FROM accounts GROUP BY id % 1000", "bucket"),
    "mean_by_status": ("SELECT status, COUNT(*) AS accounts, AVG(amount) AS mean FROM accounts GROUP BY status",
                       "status"),
}


def log(msg):
    print(f"[bench-gold] {msg}", file=sys.stderr, flush=True)


def gold(cfg, view, full=False):
    out, wall, rss = bm.timed([bm.BIN, "gold", "--config", cfg, "--view", view, *(["--full"] if full else [])],
                              env={"RUST_LOG": ENV.get("BENCH_LOG", "warn")})
    return {**out[-1], "wall_s": wall, "rss_mb": rss}


def peer(silver, prefix, view):
    out, wall, rss = bm.timed([bm.PY, os.path.join(bm.HERE, "peer_gold.py"), silver, prefix, view])
    return {**out[-1], "wall_s": wall, "rss_mb": rss}


def same_view(ours, theirs, key):
    """Row for row, floats to 12 significant digits (AVG: pyarrow and DataFusion sum in other orders)."""
    from deltalake import DeltaTable
    a = DeltaTable(ours, storage_options=bm.storage()).to_pyarrow_table().sort_by(key).to_pylist()
    b = DeltaTable(theirs, storage_options=bm.storage()).to_pyarrow_table().sort_by(key).to_pylist()
    norm = lambda rows: [{k: (float(f"{v:.12g}") if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    return len(a), norm(a) == norm(b)


def bench_size(n, run_id):
    # The same files as bench-merge's (shared when it ran: generating 10M rows takes a while).
    root = os.path.join(ENV["LAKEHOUSE_STATE"], "bench-merge", f"data-{n}")
    data = os.path.join(root, "landing", "accounts")
    bases, rounds = bm.generate(data, n)
    paths = [os.path.join(data, f) for f in rounds[("w1", "cold")]]
    lake = f"s3://{bm.BUCKET}/bench-gold/{run_id}-{n}"
    cfg = os.path.join(WORK, f"pipeline-{n}.toml")
    views = "".join(f'[[gold]]\nname = "{v}"\nsql = "{sql}"\nkeys = ["{key}"]\nsources = ["accounts"]\n'
                    for v, (sql, key) in VIEWS.items())
    with open(cfg, "w") as f:
        f.write(bm.pipeline_head(root, lake) + bm.ACCOUNTS + views)
    t0 = time.time()
    for b in bases:
        bm.ingest(cfg, os.path.join(data, b))
        bm.silver(cfg)
    log(f"{n} rows in silver in {time.time() - t0:.1f} s")
    first = {v: gold(cfg, v, full=True) for v in VIEWS}
    for v, c in first.items():
        log(f"{n} {v}: first (full) step {c['elapsed_ms']:.0f} ms")
    silver_uri, peer_prefix = f"{lake}/silver/accounts", f"{lake}/python-gold"
    runs = {(v, e): [] for v in VIEWS for e in ("lakehouse", "peer")}
    for r, path in enumerate(paths):
        bm.ingest(cfg, path)
        s = bm.silver(cfg)
        if s.get("changes") != 1000:
            sys.exit(f"our silver step saw {s.get('changes')} changes, not 1000: {s}")
        for v in VIEWS:
            c = gold(cfg, v)
            if c["full"] or c["version"] is None:
                sys.exit(f"{v}: not an incremental step: {c}")
            runs[(v, "lakehouse")].append(c)
            p = peer(silver_uri, peer_prefix, v)
            runs[(v, "peer")].append(p)
            log(f"{n} round {r} {v}: {c['elapsed_ms']:.0f} ms, groups {c['groups_touched']}, by deltas "
                f"{c.get('by_deltas')}, RSS {c['rss_mb']:.0f} MB | peer {p['elapsed_ms']:.0f} ms, RSS "
                f"{p['rss_mb']:.0f} MB")
    cells = []
    for (v, engine), rs in runs.items():
        rs = rs[1:]  # round 0 warms up
        med = lambda k: statistics.median(x.get(k) or 0 for x in rs)
        cells.append({"rows": n, "view": v, "engine": engine, "step_ms": med("elapsed_ms"), "wall_s": med("wall_s"),
                      "rss_mb": med("rss_mb"), "max_rss_mb": max(x["rss_mb"] for x in rs),
                      "groups": med("groups_touched"), "by_deltas": med("by_deltas"),
                      "recomputed": sum((x.get("groups_touched") or 0) - (x.get("by_deltas") or 0) for x in rs)})
    equal = {}
    for v, (_, key) in VIEWS.items():
        groups, same = same_view(f"{lake}/gold/{v}", f"{peer_prefix}/{v}", key)
        if not same:
            sys.exit(f"{n}: our gold view {v} and the peer's differ")
        equal[v] = groups
    return {"rows": n, "cells": cells, "first": {v: c["elapsed_ms"] for v, c in first.items()}, "groups": equal}


def report(results):
    lines = ["| silver rows | view | engine: path | step ms (median) | peer ÷ ours | groups touched (median) | "
             "by deltas (median) | groups recomputed (all rounds) | peak RSS MB (median / max) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        for c in res["cells"]:
            if c["engine"] == "peer":
                lines.append(f"| {c['rows']:,} | {c['view']} | Python deltalake + pyarrow: full recompute | "
                             f"{c['step_ms']:.0f} | | | | | {c['rss_mb']:.0f} / {c['max_rss_mb']:.0f} |")
                continue
            peer_ms = next(p["step_ms"] for p in res["cells"] if p["view"] == c["view"] and p["engine"] == "peer")
            path = "by deltas" if c["by_deltas"] else "touched groups recomputed"
            lines.append(f"| {c['rows']:,} | {c['view']} | lakehouse: {path} | {c['step_ms']:.0f} | "
                         f"**{peer_ms / c['step_ms']:.2f}x** | {c['groups']:.0f} | {c['by_deltas']:.0f} | "
                         f"{c['recomputed']} | {c['rss_mb']:.0f} / {c['max_rss_mb']:.0f} |")
    scale = []
    if len(results) >= 2:
        small, big = results[0], results[-1]
        scale = ["", f"Growth from {small['rows']:,} to {big['rows']:,} silver rows (target for views kept by deltas: "
                 "≤ 1.5x):", ""]
        for c in small["cells"]:
            b = next(x for x in big["cells"] if x["view"] == c["view"] and x["engine"] == c["engine"])
            scale.append(f"- {c['view']}, {c['engine']}: {c['step_ms']:.0f} → {b['step_ms']:.0f} ms "
                         f"(**{b['step_ms'] / c['step_ms']:.2f}x**)")
    groups = "; ".join(f"{r['rows']:,} rows: " + ", ".join(f"{v} {g} groups" for v, g in r["groups"].items())
                       for r in results)
    return "\n".join([
        "# Gold: a 1,000-row change against silver's size",
        "",
        f"Release build, MinIO on loopback, this machine; medians of {bm.ROUNDS} rounds after a warm-up; each step a "
        "fresh process (`lakehouse gold --view V`; the peer a fresh Python process recomputing that view). "
        "Reproduce: `make bench-gold` (BENCH_GOLD_SIZES, BENCH_ROUNDS).",
        "",
        *lines,
        *scale,
        "",
        f"Every view equal to the peer's row for row at the end ({groups}).",
        "",
    ])


def chart(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, v in enumerate(VIEWS):
        for engine, style in (("lakehouse", "o-"), ("peer", "s--")):
            pts = [(r["rows"], c["step_ms"]) for r in results for c in r["cells"]
                   if c["view"] == v and c["engine"] == engine]
            ax.plot(*zip(*pts), style, color=f"C{k}", label=f"{v}: " + ("ours" if engine == "lakehouse" else
                                                                          "Python recompute"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("silver table rows")
    ax.set_ylabel("gold step after a 1,000-row change, ms (median)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Gold: step time against silver's size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    bm.run_sizes("gold", WORK, SIZES, bench_size, chart, report)


if __name__ == "__main__":
    main()
