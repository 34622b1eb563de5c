"""Wiring test of the deployed stack: the SAM template, transformed offline (infra/aws/transform_check.py),
is deployed into LocalStack's CloudFormation and the resources it created are read back through the
service APIs (S3, SQS, Lambda, IAM, CloudWatch, EventBridge Scheduler) and checked against what the
pipeline needs:

  - the landing bucket is versioned, blocks public access, denies plain HTTP, and sends its object events
    to EventBridge;
  - per trigger window class of the pipeline file (infra/aws/pipeline.toml; the expected classes are
    computed here from the rule the README states, not by the generator): an object uploaded under each
    table's landing prefix reaches its class's bronze queue and no other, and the class's event source
    mapping has its window and batch size;
  - silver and gold read FIFO queues (one step per table at a time) with the configured batch sizes;
  - windows above 300 s have schedules invoking the silver (or gold) function with exactly their
    tables (views);
  - each queue redrives to its own DLQ after MaxReceiveCount receives;
  - each function's role may write only its own layer's prefixes and read only what it reads (the role
    policies are evaluated here, statement by statement, for every layer prefix and action);
  - every DLQ and every queue's age has an alarm; maintenance runs on a schedule.

What LocalStack cannot run without Docker is stubbed: the functions' code is a placeholder zip (Lambda
execution needs Docker; the functions themselves are tested as binaries elsewhere). Nothing else is
stubbed. Usage: python tests/stack_wiring.py TRANSFORMED.json   (LocalStack on $LOCALSTACK_ENDPOINT)
"""
import fnmatch
import io
import json
import os
import re
import sys
import time
import tomllib
import zipfile

import boto3

ENDPOINT = os.environ.get("LOCALSTACK_ENDPOINT", "http://127.0.0.1:4566")
RUN = f"wiring{int(time.time()) % 100000}"
PARAMS = {
    "LandingBucketName": f"{RUN}-landing",
    "LakeBucketName": f"{RUN}-lake",
    "LakePrefix": "warehouse",
    "ConfigUri": f"s3://{RUN}-lake/config/pipeline.toml",
    "ConfigBucketName": f"{RUN}-lake",
    "ConfigKey": "config/pipeline.toml",
    # Not the defaults, so a mapping that ignored its parameter would show.
    "SilverBatchSize": "7",
    "GoldBatchSize": "9",
    "MaxReceiveCount": "4",
    "MaximumConcurrency": "6",
}
LAYERS = ["bronze", "silver", "silver_tombstones", "gold", "quarantine"]
# Which layer prefixes each function may write (PutObject) and read (GetObject); only maintenance deletes.
EXPECTED = {
    "BronzeFunction": {"write": {"bronze", "quarantine"}, "read": {"bronze", "quarantine"}},
    "SilverFunction": {"write": {"silver", "silver_tombstones", "quarantine"},
                       "read": {"bronze", "silver", "silver_tombstones", "quarantine"}},
    "GoldFunction": {"write": {"gold"}, "read": {"silver", "gold"}},
    "MaintainFunction": {"write": set(LAYERS), "read": set(LAYERS), "delete": set(LAYERS)},
}
PIPELINE = os.path.join(os.path.dirname(__file__), "..", "infra", "aws", "pipeline.toml")


def expected_windows(path=PIPELINE):
    """The oracle, from the README's "Trigger windows on AWS": a table's bronze mapping waits its window
    in whole seconds (rounded down) up to 300 s, and takes at most 10 messages without a window; above
    300 s bronze waits a fifteenth of the window (at most 300 s) and a schedule runs the silver step
    every whole number of minutes; a view above 300 s gets its own schedule only when one of its tables
    has a shorter window (else it follows their scheduled commits). Returns ({(window, batch): [(table, prefix)]}, {(step, minutes): [names]})."""
    with open(path, "rb") as f:
        cfg = tomllib.load(f)
    landing = cfg["landing"]["uri"].split("://", 1)[1].partition("/")[2].strip("/")
    classes, schedules = {}, {}
    for t in cfg.get("table", []):
        window, batch = t.get("batch_window_seconds", 1), t.get("batch_size", 100)
        prefix = t.get("prefix", t["name"] + "/")
        prefix = f"{landing}/{prefix}" if landing else prefix
        if window > 300:
            w = min(int(window) // 15, 300)
            if t.get("keys"):
                schedules.setdefault(("silver", int(window) // 60), []).append(t["name"])
        else:
            w = int(window)
        b = min(batch, 10) if w == 0 else batch
        classes.setdefault((w, b), []).append((t["name"], prefix))
    windows = {t["name"]: t.get("batch_window_seconds", 1) for t in cfg.get("table", [])}
    for v in cfg.get("gold", []):
        window = v.get("batch_window_seconds", 1)
        if window > 300 and any(windows.get(s, 0) < window for s in v["sources"]):
            schedules.setdefault(("gold", int(window) // 60), []).append(v["name"])
    return classes, schedules


CLASSES, SCHEDULES = expected_windows()
BRONZE = {f"W{w}B{b}": (w, b, tables) for (w, b), tables in CLASSES.items()}
QUEUES = {  # queue resource -> its DLQ
    **{f"Bronze{c}Queue": f"Bronze{c}DeadLetterQueue" for c in BRONZE},
    "SilverQueue": "SilverDeadLetterQueue",
    "GoldQueue": "GoldDeadLetterQueue",
}

failures = []
TEMPLATE = {}


def check(ok, what):
    print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        failures.append(what)


def client(name):
    return boto3.client(name, endpoint_url=ENDPOINT, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def stub_zip():
    """A placeholder deployment package: LocalStack stores it; nothing runs it without Docker."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        z.writestr(info, "#!/bin/sh\necho stub: the function binaries are tested outside LocalStack\nexit 1\n")
    return buf.getvalue()


def deploy(template_path):
    s3, cfn = client("s3"), client("cloudformation")
    template = json.load(open(template_path))
    TEMPLATE.update(template)
    # transform_check.py names each function's code s3://artifacts/<Function>.zip.
    artifacts = f"{RUN}-artifacts"
    s3.create_bucket(Bucket=artifacts)
    for name, res in template["Resources"].items():
        if res["Type"] == "AWS::Lambda::Function":
            code = res["Properties"]["Code"]
            code["S3Bucket"] = artifacts
            s3.put_object(Bucket=artifacts, Key=code["S3Key"], Body=stub_zip())
    s3.create_bucket(Bucket=PARAMS["LakeBucketName"])
    s3.put_object(Bucket=PARAMS["LakeBucketName"], Key=PARAMS["ConfigKey"], Body=b"# placeholder\n")
    stack = f"{RUN}-stack"
    cfn.create_stack(StackName=stack, TemplateBody=json.dumps(template),
                     Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in PARAMS.items()],
                     Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"])
    deadline = time.time() + 300
    while True:
        status = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
        if status.endswith("_COMPLETE") or status.endswith("_FAILED"):
            break
        if time.time() > deadline:
            sys.exit(f"stack {stack} still {status} after 300 s")
        time.sleep(2)
    if status != "CREATE_COMPLETE":
        events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
        reasons = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}" for e in events
                   if "FAILED" in e["ResourceStatus"]]
        sys.exit(f"stack {stack} ended {status}:\n  " + "\n  ".join(reasons))
    resources = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                 for r in cfn.describe_stack_resources(StackName=stack)["StackResources"]}
    return stack, resources


def queue_arn(sqs, url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def check_landing(r):
    s3 = client("s3")
    bucket = PARAMS["LandingBucketName"]
    print("landing bucket")
    check(s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled", "versioning enabled")
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    check(all(block.get(k) for k in ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls",
                                     "RestrictPublicBuckets"]), "public access blocked")
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    tls = [s for s in policy["Statement"] if s["Effect"] == "Deny"
           and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)]
    check(len(tls) == 1, "bucket policy denies requests without TLS")
    notif = s3.get_bucket_notification_configuration(Bucket=bucket)
    check("EventBridgeConfiguration" in notif and not notif.get("QueueConfigurations"),
          "object events go to EventBridge (its rules route them per window class), not to a queue directly")
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        where = ""
    except s3.exceptions.ClientError as e:
        if "NoSuchLifecycleConfiguration" not in str(e):
            raise
        # LocalStack's CloudFormation does not apply a bucket's LifecycleConfiguration: read the template.
        rules = TEMPLATE["Resources"]["LandingBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
        where = " (in the template: LocalStack's CloudFormation does not apply lifecycle rules)"
    check(any(ru.get("NoncurrentVersionExpiration") and ru.get("Status") == "Enabled" for ru in rules),
          "overwritten versions expire" + where)


def drain(sqs, url, seconds):
    """Every message on queue `url` within `seconds` (deleted as read)."""
    got, deadline = [], time.time() + seconds
    while time.time() < deadline:
        msgs = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, MaxNumberOfMessages=10).get("Messages", [])
        for m in msgs:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        got += msgs
    return got


def check_delivery(r):
    """Real routing: an object uploaded under each table's landing prefix reaches its class's bronze
    queue (through EventBridge), with its version id, and no other class's queue; a removal too. (Each
    mapping's poller would take such messages and fail to run the stub function: the bronze mappings
    are disabled first.)"""
    s3, sqs, lam = client("s3"), client("sqs"), client("lambda")
    print("delivery (per table, through EventBridge, to its class's queue)")
    for m in lam.list_event_source_mappings(FunctionName=r["BronzeFunction"])["EventSourceMappings"]:
        lam.update_event_source_mapping(UUID=m["UUID"], Enabled=False)
    # Disabled once a probe sent to each queue comes back to us rather than to a mapping's poller.
    for c in BRONZE:
        url, deadline, n = r[f"Bronze{c}Queue"], time.time() + 90, 0
        while True:
            if time.time() > deadline:
                sys.exit(f"the mapping's poller of Bronze{c}Queue still takes messages 90 s after it was disabled")
            n += 1
            sqs.send_message(QueueUrl=url, MessageBody=f"probe-{n}")
            if any(m["Body"] == f"probe-{n}" for m in drain(sqs, url, 3)):
                break
    bucket = PARAMS["LandingBucketName"]
    for c, (_, _, tables) in BRONZE.items():
        for table, prefix in tables:
            s3.put_object(Bucket=bucket, Key=f"{prefix}wiring.jsonl", Body=b'{"id": 1}\n')
    s3.put_object(Bucket=bucket, Key="not-a-table/x.jsonl", Body=b"{}\n")
    first = next(iter(BRONZE.values()))[2][0][1] + "wiring.jsonl"
    s3.delete_object(Bucket=bucket, Key=first)
    time.sleep(3)
    arrived = {c: [json.loads(m["Body"]) for m in drain(sqs, r[f"Bronze{c}Queue"], 6)] for c in BRONZE}
    for c, (_, _, tables) in BRONZE.items():
        keys = sorted(e["detail"]["object"]["key"] for e in arrived[c] if e.get("detail-type") == "Object Created")
        want = sorted(f"{p}wiring.jsonl" for _, p in tables)
        check(keys == want, f"class {c}: the objects of {', '.join(t for t, _ in tables)} arrive on its queue, "
                            f"and nothing else (got {keys})")
        check(all(e["detail"]["object"].get("version-id") for e in arrived[c]),
              f"class {c}: events carry the object's version id")
    deleted = [e["detail"]["object"]["key"] for es in arrived.values() for e in es
               if e.get("detail-type") == "Object Deleted"]
    check(deleted == [first], f"a removal reaches its table's class queue once ({deleted})")


def check_queues(r):
    sqs = client("sqs")
    print("queues")
    for queue, dlq in QUEUES.items():
        attrs = sqs.get_queue_attributes(QueueUrl=r[queue], AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attrs.get("RedrivePolicy", "{}"))
        check(redrive.get("deadLetterTargetArn") == queue_arn(sqs, r[dlq])
              and int(redrive.get("maxReceiveCount", 0)) == int(PARAMS["MaxReceiveCount"]),
              f"{queue} redrives to {dlq} after {PARAMS['MaxReceiveCount']} receives")
        fifo = queue in ("SilverQueue", "GoldQueue")
        if fifo:  # a failed message holds its table's group until visible again: short, above the timeout
            check(300 < int(attrs["VisibilityTimeout"]) <= 600, f"{queue} visibility just above the function timeout")
        else:
            window = next(w for c, (w, _, _) in BRONZE.items() if f"Bronze{c}Queue" == queue)
            check(int(attrs["VisibilityTimeout"]) >= 6 * 300 + window,
                  f"{queue} visibility >= 6x the function timeout + its window")
        check((attrs.get("FifoQueue") == "true") == fifo
              and attrs.get("ContentBasedDeduplication", "false") == "false",
              f"{queue} is {'a FIFO queue (grouped by table, deduplicated by version)' if fifo else 'a standard queue'}")


def check_mappings(r):
    lam, sqs = client("lambda"), client("sqs")
    print("event source mappings (one per bronze class; silver and gold without a window)")
    bronze = {m["EventSourceArn"]: m for m in
              lam.list_event_source_mappings(FunctionName=r["BronzeFunction"])["EventSourceMappings"]}
    check(len(bronze) == len(BRONZE), f"BronzeFunction has one mapping per class ({len(BRONZE)})")
    wanted = [(f"Bronze{c}Queue", "BronzeFunction", b, w) for c, (w, b, _) in BRONZE.items()]
    wanted += [("SilverQueue", "SilverFunction", int(PARAMS["SilverBatchSize"]), 0),
               ("GoldQueue", "GoldFunction", int(PARAMS["GoldBatchSize"]), 0)]
    for queue, fn, batch, window in wanted:
        maps = [m for m in lam.list_event_source_mappings(FunctionName=r[fn])["EventSourceMappings"]
                if m["EventSourceArn"] == queue_arn(sqs, r[queue])]
        check(len(maps) == 1, f"{fn} reads {queue}")
        if not maps:
            continue
        m = maps[0]
        check(m["BatchSize"] == batch, f"{queue}: batch size {batch}")
        check(m.get("MaximumBatchingWindowInSeconds", 0) == window, f"{queue}: window {window} s")
        check(m.get("FunctionResponseTypes") == ["ReportBatchItemFailures"], f"{queue}: reports batch item failures")
        check(m.get("ScalingConfig", {}).get("MaximumConcurrency") == int(PARAMS["MaximumConcurrency"]),
              f"{queue}: maximum concurrency {PARAMS['MaximumConcurrency']}")
    for fn in ["BronzeFunction", "SilverFunction", "GoldFunction", "MaintainFunction"]:
        conf = lam.get_function_configuration(FunctionName=r[fn])
        check(conf["Runtime"] == "provided.al2023" and conf["Architectures"] == ["arm64"]
              and conf["Handler"] == "bootstrap", f"{fn}: provided.al2023 on arm64")
        check(conf["Environment"]["Variables"].get("LAKEHOUSE_CONFIG") == PARAMS["ConfigUri"],
              f"{fn} reads the pipeline file")


def check_schedules(r):
    """Windows above 300 s: one schedule per period and layer, invoking the silver (gold) function with
    exactly the tables (views) of that period; maintenance has its own."""
    sched, lam = client("scheduler"), client("lambda")
    print("schedules (windows above 300 s, and maintenance)")
    arn = {fn: lam.get_function_configuration(FunctionName=r[fn])["FunctionArn"]
           for fn in ["SilverFunction", "GoldFunction", "MaintainFunction"]}
    got = {}
    for s in sched.list_schedules()["Schedules"]:
        d = sched.get_schedule(Name=s["Name"], GroupName=s.get("GroupName", "default"))
        got.setdefault(d["Target"]["Arn"], []).append((d["ScheduleExpression"], d["Target"].get("Input", "")))
    check(any(a == arn["MaintainFunction"] for a in got), "a schedule invokes the maintenance function")

    def rate(minutes):
        n, unit = ((minutes // 1440, "day") if minutes % 1440 == 0 else
                   (minutes // 60, "hour") if minutes % 60 == 0 else (minutes, "minute"))
        return f"rate({n} {unit}{'' if n == 1 else 's'})"

    for step in ["silver", "gold"]:
        fn = "SilverFunction" if step == "silver" else "GoldFunction"
        want = sorted((rate(m), sorted(names)) for (st, m), names in SCHEDULES.items() if st == step)
        have = {}  # a period's names may be split over several schedules
        for expr, inp in got.get(arn[fn], []):
            body = json.loads(inp or "{}")
            if body.get("type") == "scheduled" and body["step"] == step:
                have.setdefault(expr, []).extend(body["names"])
        have = sorted((expr, sorted(names)) for expr, names in have.items())
        check(have == want, f"{fn}: schedules {want} (got {have})")
    listed = {f"{st}:{n}" for (st, _), names in SCHEDULES.items() for n in names}
    for fn in ["BronzeFunction", "SilverFunction", "GoldFunction"]:
        env = lam.get_function_configuration(FunctionName=r[fn])["Environment"]["Variables"]
        got_list = {x for x in env.get("LAKEHOUSE_SCHEDULED", "").split(",") if x}
        check(got_list == listed, f"{fn} is told what the schedules run ({sorted(listed)})")


def as_list(v):
    return v if isinstance(v, list) else [v]


def allowed(statements, action, resource, prefix=None):
    """Whether an Allow statement grants `action` on `resource` (no Deny is used by these roles).
    Conditions: only `StringLike s3:prefix`, the one these roles use; any other condition fails closed."""
    for s in statements:
        if s.get("Effect") != "Allow":
            continue
        if not any(fnmatch.fnmatchcase(action, a) for a in as_list(s.get("Action", []))):
            continue
        if not any(fnmatch.fnmatchcase(resource, x) for x in as_list(s.get("Resource", []))):
            continue
        cond = s.get("Condition")
        if cond:
            if set(cond) != {"StringLike"} or set(cond["StringLike"]) != {"s3:prefix"}:
                continue
            if prefix is None or not any(fnmatch.fnmatchcase(prefix, p)
                                         for p in as_list(cond["StringLike"]["s3:prefix"])):
                continue
        return True
    return False


def role_statements(iam, lam, fn_name):
    role_arn = lam.get_function_configuration(FunctionName=fn_name)["Role"]
    role = role_arn.rsplit("/", 1)[-1]
    out = []
    for p in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=role, PolicyName=p)["PolicyDocument"]
        doc = json.loads(doc) if isinstance(doc, str) else doc
        out += as_list(doc["Statement"])
    for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
        if p["PolicyArn"].startswith("arn:aws:iam::aws:policy/"):
            continue  # AWS managed (basic execution: logs only)
        ver = iam.get_policy(PolicyArn=p["PolicyArn"])["Policy"]["DefaultVersionId"]
        doc = iam.get_policy_version(PolicyArn=p["PolicyArn"], VersionId=ver)["PolicyVersion"]["Document"]
        doc = json.loads(doc) if isinstance(doc, str) else doc
        out += as_list(doc["Statement"])
    return out


def check_iam(r):
    iam, lam = client("iam"), client("lambda")
    lake, prefix = PARAMS["LakeBucketName"], PARAMS["LakePrefix"]
    print("per-layer permissions (role policies evaluated per layer and action)")
    for fn, want in EXPECTED.items():
        st = role_statements(iam, lam, r[fn])
        check(not any(a in ("*", "s3:*") for s in st for a in as_list(s.get("Action", []))),
              f"{fn}: no wildcard action")
        for layer in LAYERS:
            obj = f"arn:aws:s3:::{lake}/{prefix}/{layer}/t/_delta_log/00000000000000000001.json"
            for action, kind in [("s3:PutObject", "write"), ("s3:GetObject", "read"), ("s3:DeleteObject", "delete")]:
                expect = layer in want.get(kind, set())
                got = allowed(st, action, obj)
                check(got == expect, f"{fn} {'may' if expect else 'may not'} {kind} {layer}/")
            lists = allowed(st, "s3:ListBucket", f"arn:aws:s3:::{lake}", f"{prefix}/{layer}/t/_delta_log/")
            check(lists == (layer in want["read"]), f"{fn} {'may' if lists else 'may not'} list {layer}/")
        check(not allowed(st, "s3:PutObject", f"arn:aws:s3:::{PARAMS['LandingBucketName']}/orders/x.jsonl"),
              f"{fn} may not write the landing bucket")
        check(not allowed(st, "s3:PutObject", f"arn:aws:s3:::{lake}/{PARAMS['ConfigKey']}"),
              f"{fn} may not write the pipeline file")


def check_glue(r):
    """The Glue catalog is opt-in: without GlueDatabaseName the deployed roles have no Glue permission;
    with it, the bronze, silver and gold roles get exactly the registration actions on that database.
    (LocalStack's community edition has no Glue, so the opted-in case is read from the template.)"""
    iam, lam = client("iam"), client("lambda")
    print("glue catalog (opt-in)")
    for fn in EXPECTED:
        st = role_statements(iam, lam, r[fn])
        check(not any(a.startswith("glue:") for s in st for a in as_list(s.get("Action", []))),
              f"{fn}: no Glue permission without GlueDatabaseName")
    res = TEMPLATE["Resources"]
    policy = res.get("GlueCatalogPolicy", {})
    check(policy.get("Condition") == "HasGlueCatalog" and res.get("GlueDatabase", {}).get("Condition") == "HasGlueCatalog",
          "the Glue database and policy exist only with GlueDatabaseName")
    actions = sorted(a for s in policy.get("Properties", {}).get("PolicyDocument", {}).get("Statement", [])
                     for a in as_list(s["Action"]))
    check(actions == ["glue:CreateDatabase", "glue:CreateTable", "glue:GetDatabase", "glue:GetTable",
                      "glue:UpdateTable"], "the Glue policy allows registering tables, nothing else (no delete)")
    for fn in ["BronzeFunction", "SilverFunction", "GoldFunction", "MaintainFunction"]:
        arns = res[f"{fn}Role"]["Properties"].get("ManagedPolicyArns", [])
        has = {"Fn::If": ["HasGlueCatalog", {"Ref": "GlueCatalogPolicy"}, {"Ref": "AWS::NoValue"}]} in arns
        check(has == (fn != "MaintainFunction"), f"{fn} {'gets' if has else 'does not get'} the Glue policy when opted in")


def check_alarms(r):
    cw = client("cloudwatch")
    print("alarms")
    alarms = cw.describe_alarms()["MetricAlarms"]

    def queues_in(alarm, metric):
        names = set()
        if alarm.get("MetricName") == metric:
            names |= {d["Value"] for d in alarm.get("Dimensions", []) if d["Name"] == "QueueName"}
        for q in alarm.get("Metrics", []):
            stat = q.get("MetricStat", {}).get("Metric", {})
            if stat.get("MetricName") == metric:
                names |= {d["Value"] for d in stat.get("Dimensions", []) if d["Name"] == "QueueName"}
        return names

    visible = set().union(*(queues_in(a, "ApproximateNumberOfMessagesVisible") for a in alarms))
    age = set().union(*(queues_in(a, "ApproximateAgeOfOldestMessage") for a in alarms))
    # Freshness per silver table at its bound on AWS (the README's rule) plus the 120 s margin, and the
    # quarantine share: on the functions' EMF metrics.
    with open(PIPELINE, "rb") as f:
        tables = [t for t in tomllib.load(f).get("table", []) if t.get("keys")]
    for t in tables:
        window = t.get("batch_window_seconds", 1)
        match = [a for a in alarms if a.get("Namespace") == "Lakehouse" and a.get("MetricName") == "FreshnessSeconds"
                 and {"Name": "Table", "Value": t["name"]} in a.get("Dimensions", [])]
        if window > 300:  # a scheduled step has no upstream commit to date its rows: no metric, no alarm
            check(not match, f"no freshness alarm on {t['name']} (on a schedule)")
            continue
        check(len(match) == 1 and match[0]["Threshold"] == int(window) + 120,
              f"a freshness alarm watches {t['name']} at {int(window) + 120} s")
    ratio = [a for a in alarms if any(q.get("MetricStat", {}).get("Metric", {}).get("MetricName") == "RowsQuarantined"
                                      for q in a.get("Metrics", []))]
    check(len(ratio) == 1 and ratio[0]["Threshold"] == 0.01, "an alarm watches the share of rows quarantined")
    try:
        text, where = cw.get_dashboard(DashboardName=r["Dashboard"])["DashboardBody"], ""
    except Exception as e:  # noqa: BLE001 - which error LocalStack gives is not the point
        text = json.dumps(TEMPLATE["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
        where = f" (in the template: LocalStack's CloudFormation did not create it: {type(e).__name__})"
    if where:  # the template's text: valid JSON once CloudFormation's ${...} are substituted
        try:
            body = json.loads(text)
            json.loads(re.sub(r"\$\{[^}]+\}", "X", body.get("Fn::Sub", "") if isinstance(body, dict) else body))
        except ValueError as e:
            check(False, f"the dashboard body is JSON ({e})")
    check(all(w in text for w in ["FreshnessSeconds", "RowsIn", "RowsQuarantined", "Errors",
                                  "ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage", "p99"]),
          "the dashboard shows freshness, rows, quarantined rows, errors, DLQ depth, queue age and step p50/p99"
          + where)
    for queue, dlq in QUEUES.items():
        name = lambda logical: r[logical].rsplit("/", 1)[-1]
        check(name(dlq) in visible, f"an alarm watches {dlq}")
        check(name(queue) in age, f"an alarm watches the age of {queue}")


def main(template_path):
    stack, resources = deploy(template_path)
    print(f"stack {stack}: {len(resources)} resources created in LocalStack")
    try:
        check_landing(resources)
        check_queues(resources)
        check_mappings(resources)
        check_delivery(resources)
        check_schedules(resources)
        check_iam(resources)
        check_glue(resources)
        check_alarms(resources)
    finally:
        # A versioned bucket must be emptied of every version before CloudFormation can delete it.
        s3 = client("s3")
        versions = s3.list_object_versions(Bucket=PARAMS["LandingBucketName"]).get("Versions", [])
        for v in versions:
            s3.delete_object(Bucket=PARAMS["LandingBucketName"], Key=v["Key"], VersionId=v["VersionId"])
        client("cloudformation").delete_stack(StackName=stack)
    if failures:
        sys.exit(f"{len(failures)} wiring check(s) failed:\n  " + "\n  ".join(failures))
    print("stack wiring: every check passed")


if __name__ == "__main__":
    main(sys.argv[1])
