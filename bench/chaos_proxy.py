"""A fault-injecting HTTP/1.1 proxy between the product and MinIO (Python stdlib asyncio only).

    python bench/chaos_proxy.py --listen 9310 --upstream 127.0.0.1:9300 --seed 42 --stats F --log F

Every request is forwarded byte for byte (S3 SigV4 signs the Host header, which is kept as the client sent
it, so MinIO verifies the signature against the proxy's address), unless the fault schedule says otherwise.

The schedule is seeded: whether the n-th request with a given (method, target, Range) gets a fault, and
which one, is a hash of (seed, method, target, Range, n), so it does not depend on how requests from
concurrent processes interleave (unique file names, e.g. parquet parts with a UUID, differ per run).

Fault kinds (counted per kind and per request category; each one logged as a JSON line to --log):
  err500 / err503          answer 500 InternalError / 503 SlowDown without forwarding
  reset                    reset the connection (RST) without forwarding
  timeout                  hold the request (never forwarded), then drop the connection
  slow                     forward, then deliver the response late and in slow pieces
  reset_mid_body           forward a GET, send the head and part of the body, then reset
On Delta commits (PUT .../_delta_log/<version>.json) the schedule has its own rate and kinds:
  commit_fail_500 / commit_fail_503 / commit_fail_reset / commit_fail_timeout
                           fail BEFORE forwarding: the commit did not happen
  commit_lost_ack_500 / commit_lost_ack_reset / commit_lost_ack_timeout
                           forward (the commit lands in MinIO), then answer 500 / reset / hold and drop:
                           the client thinks it failed although the write landed

--delay REGEX=SECONDS holds matching requests before forwarding them (not a fault: for targeted reproductions,
e.g. bench/chaos_repro.py).

Control (answered by the proxy itself, never forwarded): GET /__chaos/stats (JSON), POST /__chaos/faults/on,
POST /__chaos/faults/off. The stats are also written to --stats every second and at exit (SIGTERM).
"""
import argparse
import asyncio
import collections
import hashlib
import json
import os
import re
import signal
import socket
import struct
import sys
import time

COMMIT_RE = re.compile(r"/_delta_log/\d{20}\.json$")
LOG_RE = re.compile(r"/_delta_log/")

ERROR_XML = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>chaos proxy: injected '
             '{status}</Message><Resource>{resource}</Resource><RequestId>chaos-{n}</RequestId></Error>')


class Schedule:
    """The seeded fault decisions and their rates."""

    # (kind, weight) for ordinary requests and for commit PUTs.
    OTHER_KINDS = [("err500", 25), ("err503", 20), ("reset", 15), ("timeout", 8), ("slow", 20), ("reset_mid_body", 12)]
    COMMIT_KINDS = [("commit_fail_500", 20), ("commit_fail_503", 10), ("commit_fail_reset", 10),
                    ("commit_fail_timeout", 5), ("commit_lost_ack_500", 25), ("commit_lost_ack_reset", 20),
                    ("commit_lost_ack_timeout", 10)]

    def __init__(self, seed, rate, commit_rate, long_hold_share, hold_s, long_hold_s, category_rates=None):
        self.seed = seed
        self.rate = rate
        self.category_rates = category_rates or {}
        self.commit_rate = commit_rate
        self.long_hold_share = long_hold_share
        self.hold_s = hold_s
        self.long_hold_s = long_hold_s
        self.seen = collections.Counter()

    @staticmethod
    def _pick(kinds, u):
        total = sum(w for _, w in kinds)
        x = u * total
        for kind, w in kinds:
            if x < w:
                return kind
            x -= w
        return kinds[-1][0]

    def decide(self, method, target, rng_header, is_commit, has_body_response, cat=None):
        """(kind or None, params dict) for this request; deterministic in (seed, request identity, n)."""
        ident = f"{method} {target} {rng_header or ''}"
        self.seen[ident] += 1
        n = self.seen[ident]
        h = hashlib.sha256(f"{self.seed}|{ident}|{n}".encode()).digest()
        u = [int.from_bytes(h[i:i + 4], "big") / 2**32 for i in range(0, 24, 4)]
        if is_commit:
            if u[0] >= self.commit_rate:
                return None, {}
            kind = self._pick(self.COMMIT_KINDS, u[1])
        else:
            if u[0] >= self.category_rates.get(cat, self.rate):
                return None, {}
            kinds = self.OTHER_KINDS if (method == "GET" and has_body_response) else \
                [k for k in self.OTHER_KINDS if k[0] != "reset_mid_body"]
            kind = self._pick(kinds, u[1])
        long_hold = u[2] < self.long_hold_share
        params = {
            # Hold-then-drop: mostly a few seconds, sometimes past the client's 30 s request timeout.
            "hold": (self.long_hold_s[0] + u[3] * (self.long_hold_s[1] - self.long_hold_s[0])) if long_hold
            else (self.hold_s[0] + u[3] * (self.hold_s[1] - self.hold_s[0])),
            "delay": 0.3 + u[4] * 2.7,     # slow: first byte after 0.3-3 s
            "cut": 0.1 + u[5] * 0.8,       # reset_mid_body: share of the body sent
        }
        return kind, params


def category(method, path, query):
    if COMMIT_RE.search(path) and method == "PUT":
        return "commit_put"
    if "list-type" in query or (method == "GET" and path.count("/") <= 1):
        return "list"
    if LOG_RE.search(path):
        return f"log_{method.lower()}"
    if path.startswith("/chaos-landing"):
        return f"landing_{method.lower()}"
    return f"data_{method.lower()}"


class Proxy:
    def __init__(self, args):
        self.upstream = args.upstream.rsplit(":", 1)
        self.upstream = (self.upstream[0], int(self.upstream[1]))
        rates = dict((kv.split("=")[0], float(kv.split("=")[1])) for kv in args.category_rates.split(",") if kv)
        self.schedule = Schedule(args.seed, args.rate, args.commit_rate, args.long_hold_share,
                                 (args.hold_min, args.hold_max), (args.long_hold_min, args.long_hold_max), rates)
        self.faults_on = not args.start_off
        # Targeted holds for reproductions: (compiled regex on "METHOD target", seconds), independent of faults.
        self.delays = [(re.compile(d.rsplit("=", 1)[0]), float(d.rsplit("=", 1)[1])) for d in args.delay or []]
        self.delayed = collections.Counter()
        self.counts = collections.Counter()          # kind -> n
        self.by_category = collections.Counter()     # "kind category" -> n
        self.requests = collections.Counter()        # category -> n forwarded or faulted
        self.log = open(args.log, "a", buffering=1) if args.log else None
        self.stats_path = args.stats
        self.started = time.time()
        self.n = 0
        self.connections = 0

    def stats(self):
        return {"faults_on": self.faults_on, "rates": {"default": self.schedule.rate, "commit_put": self.schedule.commit_rate,
                                                        **self.schedule.category_rates}, "faults": dict(self.counts), "faults_by_category": dict(self.by_category),
                "requests": dict(self.requests), "total_requests": sum(self.requests.values()),
                "total_faults": sum(self.counts.values()), "connections": self.connections,
                "delayed": dict(self.delayed),
                "uptime_s": round(time.time() - self.started, 1), "seed": self.schedule.seed}

    def write_stats(self):
        if self.stats_path:
            tmp = self.stats_path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(self.stats(), f, indent=1)
            os.replace(tmp, self.stats_path)

    def record(self, kind, cat, method, target, params):
        self.counts[kind] += 1
        self.by_category[f"{kind} {cat}"] += 1
        if self.log:
            self.log.write(json.dumps({"t": round(time.time(), 3), "kind": kind, "category": cat, "method": method,
                                       "target": target, **{k: round(v, 2) for k, v in params.items()
                                                            if (k == "hold" and "timeout" in kind)
                                                            or (k == "delay" and kind == "slow")
                                                            or (k == "cut" and kind == "reset_mid_body")}}) + "\n")

    # -- HTTP framing ---------------------------------------------------------------------------------------

    @staticmethod
    async def read_head(reader):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if e.partial:
                raise ConnectionError("truncated head") from e
            return None
        except asyncio.LimitOverrunError as e:
            raise ConnectionError("head too long") from e
        lines = head.decode("latin-1").split("\r\n")
        first = lines[0]
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        return head, first, headers

    @staticmethod
    async def read_body(reader, headers, until_eof=False):
        """The body's raw bytes (chunk framing kept, so it can be forwarded as is)."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            out = bytearray()
            while True:
                line = await reader.readuntil(b"\r\n")
                out += line
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers until an empty line
                    while True:
                        t = await reader.readuntil(b"\r\n")
                        out += t
                        if t == b"\r\n":
                            return bytes(out)
                out += await reader.readexactly(size + 2)
        if "content-length" in headers:
            return await reader.readexactly(int(headers["content-length"]))
        if until_eof:
            return await reader.read()
        return b""

    def error_response(self, status, target, keep_alive=True):
        code, reason = {500: ("InternalError", "Internal Server Error"), 503: ("SlowDown", "Service Unavailable")}[status]
        body = ERROR_XML.format(code=code, status=status, resource=target.split("?")[0], n=self.n).encode()
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\n"
                f"x-amz-request-id: chaos-{self.n}\r\nServer: chaos-proxy\r\n"
                f"{'' if keep_alive else 'Connection: close' + chr(13) + chr(10)}\r\n")
        return head.encode() + body

    @staticmethod
    def reset(writer):
        """Drop the connection with a TCP RST."""
        sock = writer.get_extra_info("socket")
        try:
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        writer.transport.abort()

    # -- one client connection ------------------------------------------------------------------------------

    async def control(self, writer, method, target):
        if target.startswith("/__chaos/faults/"):
            self.faults_on = target.endswith("/on")
            self.write_stats()
        body = json.dumps(self.stats()).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()

    async def handle(self, reader, writer):
        self.connections += 1
        up_r = up_w = None
        try:
            while True:
                got = await self.read_head(reader)
                if got is None:
                    return
                head, first, headers = got
                method, target = first.split(" ")[:2]
                body = await self.read_body(reader, headers)
                if target.startswith("/__chaos/"):
                    await self.control(writer, method, target)
                    continue
                self.n += 1
                path, _, query = target.partition("?")
                cat = category(method, path, query)
                self.requests[cat] += 1
                kind, params = (None, {})
                if self.faults_on:
                    kind, params = self.schedule.decide(method, target, headers.get("range"), cat == "commit_put",
                                                        method == "GET", cat)
                if kind:
                    self.record(kind, cat, method, target, params)
                for pattern, seconds in self.delays:
                    if pattern.search(f"{method} {target}"):
                        self.delayed[pattern.pattern] += 1
                        await asyncio.sleep(seconds)
                        break
                # Faults before forwarding.
                if kind in ("err500", "commit_fail_500"):
                    writer.write(self.error_response(500, target))
                    await writer.drain()
                    continue
                if kind in ("err503", "commit_fail_503"):
                    writer.write(self.error_response(503, target))
                    await writer.drain()
                    continue
                if kind in ("reset", "commit_fail_reset"):
                    self.reset(writer)
                    return
                if kind in ("timeout", "commit_fail_timeout"):
                    await asyncio.sleep(params["hold"])
                    writer.close()
                    return
                # Forward (a pooled upstream connection MinIO closed meanwhile is replaced, once).
                for fresh in (up_w is None, True):
                    if up_w is None:
                        up_r, up_w = await asyncio.open_connection(*self.upstream, limit=2**20)
                    try:
                        up_w.write(head + body)
                        await up_w.drain()
                        got = await self.read_head(up_r)
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
                    rbody = await self.read_body(up_r, rheaders, until_eof=True)
                    close_after = close_after or not framed
                if close_after:
                    up_w.close()
                    up_r = up_w = None
                # Faults after forwarding: the request reached MinIO.
                if kind == "commit_lost_ack_500":
                    writer.write(self.error_response(500, target))
                    await writer.drain()
                    continue
                if kind == "commit_lost_ack_reset":
                    self.reset(writer)
                    return
                if kind == "commit_lost_ack_timeout":
                    await asyncio.sleep(params["hold"])
                    writer.close()
                    return
                if kind == "reset_mid_body" and len(rbody) > 1:
                    writer.write(rhead + rbody[:max(1, int(len(rbody) * params["cut"]))])
                    await writer.drain()
                    await asyncio.sleep(0.05)
                    self.reset(writer)
                    return
                if kind == "slow":
                    await asyncio.sleep(params["delay"])
                    data = rhead + rbody
                    step = max(1, len(data) // 4)
                    for i in range(0, len(data), step):
                        writer.write(data[i:i + step])
                        await writer.drain()
                        await asyncio.sleep(params["delay"] / 4)
                else:
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
            if up_w is not None:
                up_w.close()
            try:
                writer.close()
            except Exception:
                pass


async def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1")
    p.add_argument("--upstream", required=True, help="host:port of MinIO")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rate", type=float, default=0.05, help="fault probability of an ordinary request")
    p.add_argument("--commit-rate", type=float, default=0.25, help="fault probability of a Delta commit PUT")
    p.add_argument("--category-rates", default="",
                   help="per request category, e.g. landing_get=0.2,data_put=0.1 (categories: list, log_get, "
                        "log_put, log_head, landing_get, landing_head, data_get, data_put, ...); others use --rate")
    p.add_argument("--hold-min", type=float, default=1.0)
    p.add_argument("--hold-max", type=float, default=6.0)
    p.add_argument("--long-hold-share", type=float, default=0.15,
                   help="share of holds that outlast the client's 30 s request timeout")
    p.add_argument("--long-hold-min", type=float, default=31.0)
    p.add_argument("--long-hold-max", type=float, default=36.0)
    p.add_argument("--start-off", action="store_true", help="start with faults off")
    p.add_argument("--delay", action="append", metavar="REGEX=SECONDS",
                   help="hold requests whose 'METHOD target' matches REGEX for SECONDS before forwarding "
                        "(targeted reproductions; repeatable; independent of the fault schedule)")
    p.add_argument("--stats", help="JSON file the counters are written to (every second and at exit)")
    p.add_argument("--log", help="JSON lines file: one line per injected fault")
    args = p.parse_args()
    proxy = Proxy(args)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", args.listen, limit=2**20, backlog=512)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"chaos proxy on 127.0.0.1:{args.listen} -> {args.upstream}, seed {args.seed}", flush=True)

    async def stats_loop():
        while True:
            proxy.write_stats()
            await asyncio.sleep(1)

    task = asyncio.create_task(stats_loop())
    await stop.wait()
    task.cancel()
    server.close()
    proxy.write_stats()
    print(json.dumps(proxy.stats()), flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
