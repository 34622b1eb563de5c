"""Writes the Debezium Avro fixtures of the unit tests (shared/src/read/fixtures/): a PostgreSQL
connector's change events for `dbserver1.public.customers` as the Kafka Connect S3 sink's AvroFormat
stores them (AvroConverter: the Envelope schema with `connect.name` / `connect.parameters` attributes,
Connect Decimal as Avro `bytes` + logicalType decimal, io.debezium.time.Date as int days,
MicroTimestamp as long µs, Json as string; optional fields as ["null", T] unions), written by
Apache Avro's own Python implementation (the reference writer, independent of the Rust code under
test; like Java's, it writes nested names relative to their namespace) in three object container
files with two codecs, plus the event history as JSON, from which the test computes its oracle.

    pip install avro==1.12.1 && python bench/gen_debezium_avro.py

The first third is also written by fastavro (`debezium_customers_fastavro.avro`, `pip install
fastavro==1.13.1`): it spells every name as a full name (`dbserver1.public.customers.Value`), which
arrow-avro 59 cannot resolve when referenced again, so the reader rewrites such headers first.

Deterministic (seeded); re-running rewrites the same events.
"""
import decimal
import json
import os
import random

import avro.datafile
import avro.io
import avro.schema

OUT = os.path.join(os.path.dirname(__file__), "..", "shared", "src", "read", "fixtures")
PLACEHOLDER = "__debezium_unavailable_value"

VALUE = {
    "type": "record",
    "name": "Value",
    "namespace": "dbserver1.public.customers",
    "fields": [
        {"name": "id", "type": {"type": "int", "connect.default": 0}, "default": 0},
        {"name": "balance", "type": ["null", {
            "type": "bytes", "scale": 2, "precision": 12, "connect.version": 1,
            "connect.parameters": {"scale": "2", "connect.decimal.precision": "12"},
            "connect.name": "org.apache.kafka.connect.data.Decimal", "logicalType": "decimal"}],
         "default": None},
        {"name": "opened", "type": ["null", {"type": "int", "connect.version": 1,
                                             "connect.name": "io.debezium.time.Date"}], "default": None},
        {"name": "last_login", "type": ["null", {"type": "long", "connect.version": 1,
                                                 "connect.name": "io.debezium.time.MicroTimestamp"}],
         "default": None},
        {"name": "profile", "type": ["null", {"type": "string", "connect.version": 1,
                                              "connect.name": "io.debezium.data.Json"}], "default": None},
        {"name": "bio", "type": ["null", "string"], "default": None},
    ],
    "connect.name": "dbserver1.public.customers.Value",
}

ENVELOPE = {
    "type": "record",
    "name": "Envelope",
    "namespace": "dbserver1.public.customers",
    "fields": [
        {"name": "before", "type": ["null", VALUE], "default": None},
        {"name": "after", "type": ["null", "Value"], "default": None},
        {"name": "source", "type": {
            "type": "record", "name": "Source", "namespace": "io.debezium.connector.postgresql",
            "fields": [
                {"name": "version", "type": "string"},
                {"name": "connector", "type": "string"},
                {"name": "name", "type": "string"},
                {"name": "ts_ms", "type": "long"},
                {"name": "snapshot", "type": [{"type": "string", "connect.version": 1,
                                               "connect.parameters": {"allowed": "true,last,false,incremental"},
                                               "connect.default": "false",
                                               "connect.name": "io.debezium.data.Enum"}, "null"],
                 "default": "false"},
                {"name": "db", "type": "string"},
                {"name": "schema", "type": "string"},
                {"name": "table", "type": "string"},
                {"name": "txId", "type": ["null", "long"], "default": None},
                {"name": "lsn", "type": ["null", "long"], "default": None},
            ],
            "connect.name": "io.debezium.connector.postgresql.Source"}},
        {"name": "op", "type": "string"},
        {"name": "ts_ms", "type": ["null", "long"], "default": None},
    ],
    "connect.version": 2,
    "connect.name": "dbserver1.public.customers.Envelope",
}


def main():
    rng = random.Random(7)
    live, history, lsn = {}, [], 5000

    def row(i):
        return {"id": i, "balance": rng.randrange(-10**11, 10**11), "opened": rng.randrange(-2000, 25000),
                "last_login": rng.randrange(0, 2 * 10**15), "profile": json.dumps({"id": i, "n": rng.randrange(9)}),
                "bio": f"bio {i} {rng.randrange(10**6)}"}

    for i in range(6):
        lsn += 11
        live[i] = row(i)
        history.append({"op": "r", "lsn": lsn, **live[i]})
    for _ in range(90):
        lsn += rng.randrange(1, 40)
        i = rng.randrange(10)
        if i not in live:
            live[i] = row(i)
            history.append({"op": "c", "lsn": lsn, **live[i]})
        elif rng.random() < 0.15:
            del live[i]
            history.append({"op": "d", "lsn": lsn, "id": i})
        else:
            r = row(i)
            if rng.random() < 0.5:
                r["bio"] = None  # TOAST: unchanged, sent as the placeholder
            history.append({"op": "u", "lsn": lsn, **r})

    def record(e):
        def image(e):
            return {"id": e["id"], "balance": decimal.Decimal(e["balance"]).scaleb(-2),
                    "opened": e["opened"], "last_login": e["last_login"], "profile": e["profile"],
                    "bio": e["bio"] if e["bio"] is not None else PLACEHOLDER}
        key_only = {"id": e["id"], "balance": None, "opened": None, "last_login": None, "profile": None, "bio": None}
        return {
            "before": key_only if e["op"] == "d" else None,
            "after": None if e["op"] == "d" else image(e),
            "source": {"version": "2.7.3.Final", "connector": "postgresql", "name": "dbserver1",
                       "ts_ms": 1764064800000 + e["lsn"], "snapshot": "true" if e["op"] == "r" else "false",
                       "db": "inventory", "schema": "public", "table": "customers", "txId": e["lsn"],
                       "lsn": e["lsn"]},
            "op": e["op"],
            "ts_ms": 1764064800100 + e["lsn"],
        }

    schema = avro.schema.parse(json.dumps(ENVELOPE))
    thirds = [history[: len(history) // 3], history[len(history) // 3: 2 * len(history) // 3],
              history[2 * len(history) // 3:]]
    for n, (part, codec) in enumerate(zip(thirds, ["null", "deflate", "null"])):
        with open(os.path.join(OUT, f"debezium_customers_{n}.avro"), "wb") as f:
            writer = avro.datafile.DataFileWriter(f, avro.io.DatumWriter(), schema, codec=codec)
            for e in part:
                writer.append(record(e))
            writer.close()
    import fastavro
    with open(os.path.join(OUT, "debezium_customers_fastavro.avro"), "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(ENVELOPE), [record(e) for e in thirds[0]], codec="deflate")
    with open(os.path.join(OUT, "debezium_customers_history.json"), "w") as f:
        json.dump(history, f, indent=0)
        f.write("\n")


if __name__ == "__main__":
    main()
