"""A counting HTTP/1.1 proxy in front of MinIO (stdlib asyncio only): every S3 request is forwarded byte for
byte and recorded (method, path, query, status, bytes), so a benchmark can count requests per S3 API, per
table and per kind of object (data, Delta log, checkpoint) for each step it runs. SigV4 signs the Host
header, which is kept as the client sent it, so MinIO verifies signatures against the proxy's address.

As a library (bench/cost.py): `p = CountingProxy(listen_port, "127.0.0.1:9600"); p.start(); mark = p.mark();
... ; reqs = p.since(mark); p.stop()`. As a program it prints the counts by API at exit (SIGTERM/SIGINT):

    python bench/count_proxy.py --listen 9602 --upstream 127.0.0.1:9600 [--log requests.jsonl]

Classification (`classify`) follows the S3 price list's tiers: PUT, COPY, POST and LIST requests are one tier,
GET, HEAD and all other requests the cheaper one, DELETE is free.
"""
import argparse
import asyncio
import json
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from urllib.parse import parse_qs, unquote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from chaos_proxy import Proxy as _Framing  # noqa: E402  (HTTP framing helpers, no faults)

read_head = _Framing.read_head
read_body = _Framing.read_body


def s3_api(method, path, query, copy_source=False):
    """The S3 API an HTTP request calls (path-style addressing: /bucket/key)."""
    q = parse_qs(query, keep_blank_values=True)
    has_key = "/" in path.lstrip("/")
    if method == "GET" and not has_key:
        if "list-type" in q:
            return "ListObjectsV2"
        if "location" in q:
            return "GetBucketLocation"
        if "versions" in q:
            return "ListObjectVersions"
        if "uploads" in q:
            return "ListMultipartUploads"
        return "ListObjects" if not q or {"prefix", "delimiter", "marker", "max-keys"} & set(q) else "GetBucket?"
    if method == "GET":
        return "ListParts" if "uploadId" in q else "GetObject"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if method == "PUT":
        if not has_key:
            return "CreateBucket"
        if "partNumber" in q:
            return "UploadPartCopy" if copy_source else "UploadPart"
        return "CopyObject" if copy_source else "PutObject"
    if method == "POST":
        if "delete" in q:
            return "DeleteObjects"
        if "uploads" in q:
            return "CreateMultipartUpload"
        if "uploadId" in q:
            return "CompleteMultipartUpload"
        return "PostObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in q else ("DeleteObject" if has_key else "DeleteBucket")
    return f"{method}?"


# Price tiers (S3 Standard): "PUT, COPY, POST, LIST requests" / "GET, SELECT, and all other requests" /
# "DELETE and CANCEL requests are free". DeleteObjects is a POST: counted in the PUT tier (conservative).
PUT_TIER = {"PutObject", "CopyObject", "UploadPart", "UploadPartCopy", "CreateMultipartUpload",
            "CompleteMultipartUpload", "PostObject", "DeleteObjects", "ListObjectsV2", "ListObjects",
            "ListObjectVersions", "ListMultipartUploads", "ListParts", "CreateBucket"}
FREE_TIER = {"DeleteObject", "AbortMultipartUpload", "DeleteBucket"}


def tier(api):
    if api in FREE_TIER:
        return "free"
    return "put" if api in PUT_TIER else "get"


CHECKPOINT_RE = re.compile(r"/_delta_log/(\d{20}\.checkpoint(\.\d+\.\d+)?\.parquet|_last_checkpoint)$")
COMMIT_RE = re.compile(r"/_delta_log/\d{20}\.json$")
LAYERS = ("silver_tombstones", "quarantine", "bronze", "silver", "gold")


def classify(r, landing_bucket):
    """(api, tier, layer, kind) of one recorded request. kind: landing, data, log (commit JSON), checkpoint
    (checkpoint parquet, _last_checkpoint), cdf (_change_data), other; layer: the lake directory."""
    api = s3_api(r["method"], r["path"], r["query"], r.get("copy", False))
    parts = r["path"].lstrip("/").split("/", 1)
    bucket, key = parts[0], (parts[1] if len(parts) > 1 else "")
    if api in ("ListObjectsV2", "ListObjects", "ListObjectVersions"):
        key = unquote(parse_qs(r["query"]).get("prefix", [""])[0])
        # A listing from a start-after key (delta-rs lists the log from a version on) names the table too.
        key = key or unquote(parse_qs(r["query"]).get("start-after", [""])[0])
    layer = next((layer for layer in LAYERS if f"/{layer}/" in f"/{key}"), "-")
    if bucket == landing_bucket:
        kind, layer = "landing", "landing"
    elif "/_delta_log" in f"/{key}":
        key_ = "/" + key
        kind = "checkpoint" if CHECKPOINT_RE.search(key_) else ("log" if COMMIT_RE.search(key_) or
                                                                key_.endswith("/_delta_log/") else "log_other")
    elif "/_change_data/" in key:
        kind = "cdf"
    elif key.endswith(".parquet"):
        kind = "data"
    else:
        kind = "other"
    return api, tier(api), layer, kind


class CountingProxy:
    """The proxy in a background thread; `requests` is the list of every request seen so far."""

    def __init__(self, listen_port, upstream, log_path=None):
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.port = listen_port
        self.requests = []
        self.lock = threading.Lock()
        self.log = open(log_path, "a", buffering=1) if log_path else None
        self.loop = None
        self.thread = None
        self.ready = threading.Event()
        self.tasks = set()

    def mark(self):
        with self.lock:
            return len(self.requests)

    def since(self, mark):
        with self.lock:
            return list(self.requests[mark:])

    def record(self, r):
        with self.lock:
            self.requests.append(r)
        if self.log:
            self.log.write(json.dumps(r) + "\n")

    async def handle(self, reader, writer):
        # asyncio keeps only weak references to connection tasks: hold them until they end.
        task = asyncio.current_task()
        self.tasks.add(task)
        up_r = up_w = None
        try:
            while True:
                got = await read_head(reader)
                if got is None:
                    return
                head, first, headers = got
                method, target = first.split(" ")[:2]
                started = time.time()
                if headers.get("expect", "").lower() == "100-continue":
                    # Clients that wait for it (boto3 PUTs) send the body only after an interim answer.
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    await writer.drain()
                body = await read_body(reader, headers)
                for fresh in (up_w is None, True):
                    if up_w is None:
                        up_r, up_w = await asyncio.open_connection(*self.upstream, limit=2**20)
                    try:
                        up_w.write(head + body)
                        await up_w.drain()
                        got = await read_head(up_r)
                        while got is not None and got[1].split(" ")[1].startswith("1"):
                            got = await read_head(up_r)  # MinIO's own 100 Continue: already answered
                    except (ConnectionError, OSError):
                        got = None
                    if got is not None:
                        break
                    up_w.close()
                    up_r = up_w = None
                    if fresh:
                        raise ConnectionError("upstream closed")
                rhead, rfirst, rheaders = got
                status = int(rfirst.split(" ")[1])
                no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
                close_after = rheaders.get("connection", "").lower() == "close"
                if no_body:
                    rbody = b""
                else:
                    framed = "chunked" in rheaders.get("transfer-encoding", "").lower() or "content-length" in rheaders
                    rbody = await read_body(up_r, rheaders, until_eof=True)
                    close_after = close_after or not framed
                if close_after:
                    up_w.close()
                    up_r = up_w = None
                path, _, query = target.partition("?")
                self.record({"t0": started, "t": time.time(), "method": method, "path": unquote(path), "query": query,
                             "status": status, "copy": "x-amz-copy-source" in headers,
                             "req_bytes": int(headers.get("x-amz-decoded-content-length",
                                                          headers.get("content-length", "0")) or 0),
                             "resp_bytes": len(rbody)})
                writer.write(rhead + rbody)
                await writer.drain()
                if close_after:
                    writer.close()
                    return
        except (ConnectionError, asyncio.IncompleteReadError, OSError, ValueError, IndexError):
            try:
                writer.transport.abort()
            except Exception:
                pass
        finally:
            self.tasks.discard(task)
            if up_w is not None:
                up_w.close()
            try:
                writer.close()
            except Exception:
                pass

    async def _serve(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port, limit=2**20, backlog=512)
        self.stopped = asyncio.Event()
        self.ready.set()
        await self.stopped.wait()
        self.server.close()

    def start(self):
        def run():
            self.loop = asyncio.new_event_loop()
            self.loop.run_until_complete(self._serve())
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError(f"count proxy did not start on 127.0.0.1:{self.port}")
        return self

    def stop(self):
        if self.loop:
            self.loop.call_soon_threadsafe(self.stopped.set)
            self.thread.join(5)
        if self.log:
            self.log.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1")
    p.add_argument("--upstream", required=True, help="host:port of MinIO")
    p.add_argument("--log", help="JSON lines file: one line per request")
    p.add_argument("--landing-bucket", default="landing")
    args = p.parse_args()
    proxy = CountingProxy(args.listen, args.upstream, args.log).start()
    print(f"count proxy on 127.0.0.1:{args.listen} -> {args.upstream}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    proxy.stop()
    by = Counter(classify(r, args.landing_bucket)[:2] for r in proxy.requests)
    print(json.dumps({f"{api} ({t})": n for (api, t), n in sorted(by.items())}, indent=1))


if __name__ == "__main__":
    main()
