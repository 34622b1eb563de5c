"""Minimal, deterministic reproductions of what the chaos run (bench/chaos.py) found. No random faults: a
MinIO of its own (127.0.0.1:9300) behind the proxy (bench/chaos_proxy.py on 9310), with at most one targeted
delay, and two or three `lakehouse` invocations.

    python bench/chaos_repro.py bronze-create-race   # one object ingested twice when bronze is created concurrently
    python bench/chaos_repro.py gold-empty-view      # a view whose result is empty can never be written

Exit status 1 when the bug reproduces (the expected outcome is printed next to the actual one), 0 if not.
LAKEHOUSE_CLI (default $CARGO_TARGET_DIR/debug/lakehouse); state under $LAKEHOUSE_STATE/chaos/repro.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True
import chaos  # noqa: E402  (the run's constants and helpers)

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(chaos.STATE, "chaos", "repro")
TABLE = '''
[[table]]
name = "t"
format = "jsonl"
columns = ["id long not null", "g long", "seq long not null", "deleted boolean"]
keys = ["id"]
sequence_by = "seq"
delete_column = "deleted"
'''


def start(delays):
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(os.path.join(WORK, "minio"))
    for port in (chaos.MINIO_PORT, chaos.MINIO_PORT + 1, chaos.PROXY_PORT):
        if not chaos.port_free(port):
            sys.exit(f"port {port} is in use (a chaos run?)")
    log = open(os.path.join(WORK, "infra.log"), "w")
    minio = subprocess.Popen([chaos.MINIO_BIN, "server", os.path.join(WORK, "minio"), "--address",
                              f"127.0.0.1:{chaos.MINIO_PORT}", "--console-address", f"127.0.0.1:{chaos.MINIO_PORT + 1}"],
                             stdout=log, stderr=log, preexec_fn=chaos.die_with_parent,
                             env={**os.environ, "MINIO_ROOT_USER": chaos.USER, "MINIO_ROOT_PASSWORD": chaos.PASSWORD,
                                  "MINIO_BROWSER": "off"})
    cmd = [sys.executable, os.path.join(HERE, "chaos_proxy.py"), "--listen", str(chaos.PROXY_PORT), "--upstream",
           f"127.0.0.1:{chaos.MINIO_PORT}", "--rate", "0", "--commit-rate", "0",
           "--stats", os.path.join(WORK, "proxy-stats.json")]
    for d in delays:
        cmd += ["--delay", d]
    proxy = subprocess.Popen(cmd, stdout=log, stderr=log, preexec_fn=chaos.die_with_parent)
    if not (chaos.wait_http(f"{chaos.MINIO}/minio/health/live", 60) and chaos.wait_http(f"{chaos.PROXY}/__chaos/stats", 20)):
        sys.exit(f"MinIO or the proxy did not start; see {log.name}")
    s3 = chaos.s3_client()
    for b in (chaos.LANDING, chaos.LAKE):
        s3.create_bucket(Bucket=b)
    return [proxy, minio], s3


def config(extra=""):
    storage = f'''aws_endpoint_url = "{chaos.PROXY}"
aws_access_key_id = "{chaos.USER}"
aws_secret_access_key = "{chaos.PASSWORD}"
aws_region = "us-east-1"
aws_allow_http = "true"
'''
    path = os.path.join(WORK, "pipeline.toml")
    with open(path, "w") as f:
        f.write(f'[landing]\nuri = "s3://{chaos.LANDING}"\n[landing.storage]\n{storage}\n'
                f'[lake]\nuri = "{chaos.LAKE_URI}"\n[lake.storage]\n{storage}\n{TABLE}{extra}')
    return path


def event(keys_etags):
    path = os.path.join(WORK, f"event-{len(os.listdir(WORK))}.json")
    with open(path, "w") as f:
        json.dump({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {
            "bucket": {"name": chaos.LANDING}, "object": {"key": k, "eTag": e}}} for k, e in keys_etags]}, f)
    return path


def run(name, args, wait=True):
    out = open(os.path.join(WORK, f"{name}.out"), "w")
    err = open(os.path.join(WORK, f"{name}.err"), "w")
    p = subprocess.Popen([chaos.BIN, *args], stdout=out, stderr=err, preexec_fn=chaos.die_with_parent,
                         env={**os.environ, "RUST_LOG": "warn,buoyant_kernel=off"})
    if wait:
        p.wait()
    return p


def tail(name):
    with open(os.path.join(WORK, f"{name}.out")) as f:
        out = f.read().strip()
    try:
        out = json.dumps(json.loads(out))  # one line
    except ValueError:
        pass
    with open(os.path.join(WORK, f"{name}.err")) as f:
        err = f.read().strip()
    return (out + ("\n" + err if err else "")).strip()


def bronze_create_race():
    """Invocation A finds no bronze table, is slow to open quarantine (a held LIST), then creates bronze and
    commits object X with its marker. Invocation B (a duplicate delivery of X) also found no bronze table, so
    it checked no marker; by the time it reaches `ensure_table`, `open_or_create` returns the table A made,
    at A's commit; B never re-checks the marker, and its commit's read version is after A's commit, so
    delta-rs's conflict check (commits after the read version) cannot see that both carry txn `X@etag`."""
    procs, s3 = start([r"quarantine=4"])  # every request naming the quarantine table is held 4 s
    try:
        cfg = config()
        body = "".join(json.dumps({"id": i, "g": i % 2, "seq": i, "deleted": False}) + "\n" for i in range(3))
        etag = s3.put_object(Bucket=chaos.LANDING, Key="t/x.jsonl", Body=body.encode())["ETag"].strip('"')
        ev = event([("t/x.jsonl", etag)])
        a = run("ingest-a", ["ingest", "--config", cfg, ev], wait=False)
        time.sleep(2)
        b = run("ingest-b", ["ingest", "--config", cfg, ev], wait=False)
        a.wait()
        b.wait()
        rows = chaos.Chaos.read_table("bronze/t") or []
        copies = len(rows) / 3
        log = []
        for v in range(0, (chaos.Chaos.table_version("bronze/t") or 0) + 1):
            key = f"lake/bronze/t/_delta_log/{v:020d}.json"
            actions = [json.loads(x) for x in s3.get_object(Bucket=chaos.LAKE, Key=key)["Body"].read().decode().splitlines()]
            txns = [a["txn"]["appId"] for a in actions if "txn" in a]
            op = next((a["commitInfo"].get("operation") for a in actions if "commitInfo" in a), "?")
            log.append(f"  version {v}: {op}, txn {txns}, {sum('add' in a for a in actions)} file(s) added")
        print("bronze-create-race: two deliveries of one object (3 rows) while bronze/t does not exist yet")
        print(f"  invocation A (first): {tail('ingest-a')}")
        print(f"  invocation B (2 s later): {tail('ingest-b')}")
        print("\n".join(log))
        print(f"  bronze rows: {len(rows)} (expected 3: the object exactly once); ingested {copies:g} times")
        return len(rows) != 3
    finally:
        stop(procs)


def gold_empty_view():
    """A gold view whose full result has no group (source silver exists but is empty, or every row was
    deleted): the first step (or `--full`) overwrites gold with zero batches, which delta-rs refuses."""
    procs, s3 = start([])
    try:
        cfg = config('''
[[gold]]
name = "v"
sql = "SELECT g, COUNT(*) AS n FROM t GROUP BY g"
keys = ["g"]
sources = ["t"]
''')
        body = (json.dumps({"id": 1, "g": 1, "seq": 1, "deleted": False}) + "\n" +
                json.dumps({"id": 1, "seq": 2, "deleted": True}) + "\n")
        etag = s3.put_object(Bucket=chaos.LANDING, Key="t/insert-then-delete.jsonl", Body=body.encode())["ETag"].strip('"')
        run("ingest", ["ingest", "--config", cfg, event([("t/insert-then-delete.jsonl", etag)])])
        run("silver", ["silver", "--config", cfg, "--table", "t"])
        g1 = run("gold", ["gold", "--config", cfg, "--view", "v"])
        g2 = run("gold-again", ["gold", "--config", cfg, "--view", "v"])
        g3 = run("gold-full", ["gold", "--config", cfg, "--view", "v", "--full"])
        print("gold-empty-view: one insert and its delete; silver is empty; view v = SELECT g, COUNT(*) ... GROUP BY g")
        print(f"  silver: {tail('silver')}")
        for name, p in (("gold", g1), ("gold-again", g2), ("gold-full", g3)):
            print(f"  lakehouse {name.replace('-again', ' (again)').replace('-full', ' --full')}: exit {p.returncode}: "
                  f"{tail(name).splitlines()[0] if tail(name) else ''}")
        print("  expected: exit 0 and an empty gold table (zero groups), every time")
        return any(p.returncode != 0 for p in (g1, g2, g3))
    finally:
        stop(procs)


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def main():
    cases = {"bronze-create-race": bronze_create_race, "gold-empty-view": gold_empty_view}
    if len(sys.argv) != 2 or sys.argv[1] not in cases:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(cases)}")
    if not os.access(chaos.BIN, os.X_OK):
        sys.exit(f"no lakehouse binary at {chaos.BIN} (set LAKEHOUSE_CLI)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    reproduced = cases[sys.argv[1]]()
    print("REPRODUCED" if reproduced else "not reproduced")
    sys.exit(1 if reproduced else 0)


if __name__ == "__main__":
    main()
