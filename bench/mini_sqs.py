"""A minimal in-memory SQS endpoint (AWS JSON 1.0 protocol, Python stdlib only) that counts every API call
per queue, for benchmarks that must not use the shared LocalStack: the local runner (`lakehouse run`) and
boto3 talk to it like to SQS. Standard-queue semantics that matter here: long polling (WaitTimeSeconds),
visibility timeout, receipt handles, redrive to a DLQ after maxReceiveCount, batch delete/visibility.
No S3 notifications: a benchmark sends the S3 event messages itself.

As a library: `q = MiniSqs(port).start(); url = q.create("name"); ...; q.counts; q.stop()`.
As a program: `python bench/mini_sqs.py --port 9603` (prints the counts at exit).
"""
import argparse
import hashlib
import json
import signal
import sys
import threading
import time
import uuid
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ACCOUNT = "000000000000"


class Queue:
    def __init__(self, name, attrs):
        self.name = name
        self.attrs = {"VisibilityTimeout": "30", "ReceiveMessageWaitTimeSeconds": "0", **attrs}
        self.ready = deque()       # messages visible now
        self.inflight = {}         # receipt handle -> (message, visible again at)
        self.cond = threading.Condition()

    def visibility(self):
        return float(self.attrs.get("VisibilityTimeout", "30"))


class MiniSqs:
    def __init__(self, port, host="127.0.0.1"):
        self.host, self.port = host, port
        self.queues = {}
        self.lock = threading.Lock()
        self.counts = Counter()            # (queue name, action) -> calls
        self.messages = Counter()          # (queue name, "sent"/"received"/"deleted") -> messages
        self.events = []                   # (epoch s, queue name, "sent"/"deleted"): when messages moved
        self.server = None

    # -- queue helpers ---------------------------------------------------------------------------------

    def url(self, name):
        return f"http://{self.host}:{self.port}/{ACCOUNT}/{name}"

    def arn(self, name):
        return f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name}"

    def create(self, name, attrs=None):
        with self.lock:
            self.queues.setdefault(name, Queue(name, attrs or {}))
        return self.url(name)

    def queue_of(self, url):
        name = url.rstrip("/").rsplit("/", 1)[-1]
        q = self.queues.get(name)
        if q is None:
            raise SqsError("QueueDoesNotExist", f"queue {name} does not exist", "AWS.SimpleQueueService.NonExistentQueue")
        return q

    def _requeue_expired(self, q, now):
        for rh, (m, until) in list(q.inflight.items()):
            if until <= now:
                del q.inflight[rh]
                q.ready.append(m)

    def _send(self, q, body, attrs=None):
        m = {"MessageId": str(uuid.uuid4()), "Body": body, "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
             "SentTimestamp": str(int(time.time() * 1000)), "ReceiveCount": 0,
             "MessageAttributes": attrs or {}}
        with q.cond:
            q.ready.append(m)
            q.cond.notify_all()
        self.messages[(q.name, "sent")] += 1
        self.events.append((time.time(), q.name, "sent"))
        return m

    # -- API actions -----------------------------------------------------------------------------------

    def CreateQueue(self, req):
        return {"QueueUrl": self.create(req["QueueName"], req.get("Attributes"))}

    def GetQueueUrl(self, req):
        if req["QueueName"] not in self.queues:
            raise SqsError("QueueDoesNotExist", "no such queue", "AWS.SimpleQueueService.NonExistentQueue")
        return {"QueueUrl": self.url(req["QueueName"])}

    def ListQueues(self, req):
        return {"QueueUrls": [self.url(n) for n in self.queues if n.startswith(req.get("QueueNamePrefix", ""))]}

    def DeleteQueue(self, req):
        q = self.queue_of(req["QueueUrl"])
        self.queues.pop(q.name, None)
        return {}

    def PurgeQueue(self, req):
        q = self.queue_of(req["QueueUrl"])
        with q.cond:
            q.ready.clear()
            q.inflight.clear()
        return {}

    def GetQueueAttributes(self, req):
        q = self.queue_of(req["QueueUrl"])
        with q.cond:
            self._requeue_expired(q, time.time())
            attrs = {**q.attrs, "QueueArn": self.arn(q.name),
                     "ApproximateNumberOfMessages": str(len(q.ready)),
                     "ApproximateNumberOfMessagesNotVisible": str(len(q.inflight))}
        names = req.get("AttributeNames") or ["All"]
        return {"Attributes": attrs if "All" in names else {k: v for k, v in attrs.items() if k in names}}

    def SetQueueAttributes(self, req):
        self.queue_of(req["QueueUrl"]).attrs.update(req.get("Attributes", {}))
        return {}

    def SendMessage(self, req):
        q = self.queue_of(req["QueueUrl"])
        m = self._send(q, req["MessageBody"], req.get("MessageAttributes"))
        return {"MessageId": m["MessageId"], "MD5OfMessageBody": m["MD5OfBody"]}

    def SendMessageBatch(self, req):
        q = self.queue_of(req["QueueUrl"])
        ok = []
        for e in req.get("Entries", []):
            m = self._send(q, e["MessageBody"], e.get("MessageAttributes"))
            ok.append({"Id": e["Id"], "MessageId": m["MessageId"], "MD5OfMessageBody": m["MD5OfBody"]})
        return {"Successful": ok, "Failed": []}

    def ReceiveMessage(self, req):
        q = self.queue_of(req["QueueUrl"])
        n = max(1, min(10, int(req.get("MaxNumberOfMessages", 1))))
        wait = float(req.get("WaitTimeSeconds", q.attrs.get("ReceiveMessageWaitTimeSeconds", 0)))
        vis = float(req.get("VisibilityTimeout", q.visibility()))
        deadline = time.time() + wait
        out = []
        with q.cond:
            while True:
                now = time.time()
                self._requeue_expired(q, now)
                while q.ready and len(out) < n:
                    m = q.ready.popleft()
                    m["ReceiveCount"] += 1
                    redrive = json.loads(q.attrs.get("RedrivePolicy", "{}") or "{}")
                    if redrive and m["ReceiveCount"] > int(redrive.get("maxReceiveCount", 10**9)):
                        dlq = self.queues.get(redrive["deadLetterTargetArn"].rsplit(":", 1)[-1])
                        if dlq is not None:
                            with dlq.cond:
                                dlq.ready.append({**m, "ReceiveCount": 0})
                            continue
                    rh = f"{m['MessageId']}#{uuid.uuid4().hex}"
                    q.inflight[rh] = (m, now + vis)
                    out.append({"MessageId": m["MessageId"], "ReceiptHandle": rh, "MD5OfBody": m["MD5OfBody"],
                                "Body": m["Body"],
                                "Attributes": {"ApproximateReceiveCount": str(m["ReceiveCount"]),
                                               "SentTimestamp": m["SentTimestamp"]}})
                if out or now >= deadline:
                    break
                # Wake for new messages, or when the earliest in-flight message becomes visible again.
                nxt = min([u for _, u in q.inflight.values()] + [deadline])
                q.cond.wait(max(0.01, min(nxt, deadline) - now))
        self.messages[(q.name, "received")] += len(out)
        return {"Messages": out} if out else {}

    def _delete(self, q, rh):
        with q.cond:
            if rh in q.inflight:
                del q.inflight[rh]
                self.messages[(q.name, "deleted")] += 1
                self.events.append((time.time(), q.name, "deleted"))

    def DeleteMessage(self, req):
        self._delete(self.queue_of(req["QueueUrl"]), req["ReceiptHandle"])
        return {}

    def DeleteMessageBatch(self, req):
        q = self.queue_of(req["QueueUrl"])
        for e in req.get("Entries", []):
            self._delete(q, e["ReceiptHandle"])
        return {"Successful": [{"Id": e["Id"]} for e in req.get("Entries", [])], "Failed": []}

    def _visibility(self, q, rh, seconds):
        with q.cond:
            if rh in q.inflight:
                m, _ = q.inflight.pop(rh)
                if seconds <= 0:
                    q.ready.appendleft(m)
                    q.cond.notify_all()
                else:
                    q.inflight[rh] = (m, time.time() + seconds)

    def ChangeMessageVisibility(self, req):
        self._visibility(self.queue_of(req["QueueUrl"]), req["ReceiptHandle"], float(req["VisibilityTimeout"]))
        return {}

    def ChangeMessageVisibilityBatch(self, req):
        q = self.queue_of(req["QueueUrl"])
        for e in req.get("Entries", []):
            self._visibility(q, e["ReceiptHandle"], float(e["VisibilityTimeout"]))
        return {"Successful": [{"Id": e["Id"]} for e in req.get("Entries", [])], "Failed": []}

    # -- HTTP ------------------------------------------------------------------------------------------

    def start(self):
        sqs = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                target = self.headers.get("X-Amz-Target", "")
                action = target.rsplit(".", 1)[-1]
                try:
                    if not target.startswith("AmazonSQS."):
                        raise SqsError("InvalidAction", "only the AWS JSON 1.0 protocol is served", status=400)
                    req = json.loads(body or b"{}")
                    fn = getattr(sqs, action, None)
                    if fn is None or not action[:1].isupper():
                        raise SqsError("InvalidAction", f"{action} is not served", status=400)
                    qname = req.get("QueueUrl", req.get("QueueName", "-")).rstrip("/").rsplit("/", 1)[-1]
                    sqs.counts[(qname, action)] += 1
                    status, out = 200, fn(req)
                except SqsError as e:
                    status, out = e.status, {"__type": f"com.amazonaws.sqs#{e.code}", "message": str(e)}
                    self.extra = e.query_code
                except (KeyError, ValueError) as e:
                    status, out = 400, {"__type": "com.amazonaws.sqs#InvalidParameterValue", "message": repr(e)}
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
                if status != 200 and getattr(self, "extra", None):
                    self.send_header("x-amzn-query-error", f"{self.extra};Sender")
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # a client that stopped waiting (a runner stopped during a long poll)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    super().handle_error(request, client_address)

        self.server = Server((self.host, self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def counts_by_queue(self):
        out = {}
        for (q, a), n in sorted(self.counts.items()):
            out.setdefault(q, {})[a] = n
        return out


class SqsError(Exception):
    def __init__(self, code, message, query_code=None, status=400):
        super().__init__(message)
        self.code, self.query_code, self.status = code, query_code, status


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    sqs = MiniSqs(args.port).start()
    print(f"mini SQS on http://127.0.0.1:{args.port}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    sqs.stop()
    print(json.dumps(sqs.counts_by_queue(), indent=1))


if __name__ == "__main__":
    main()
