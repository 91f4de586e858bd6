"""What exactly-once delivery costs: the same pipeline with ``delivery: exactly_once`` and with
``delivery: at_least_once``, side by side in one run, alternating, each run in its own process.

    eval "$(scripts/services up)"
    python benchmarks/bench_delivery.py                        # generator and kafka, both stores
    python benchmarks/bench_delivery.py --records 50000 --rounds 5
    python benchmarks/bench_delivery.py --sources generator --stores mongomock

Pipelines: the default pipeline's five aggregations (count per user, count per item, avg
duration per item, count per type per minute, max duration per type) into the mongodb sink on
  secantus   MONGO_URI (SecantusDB in tests: a real server over the wire, ~2k upserts/s)
  mongomock  mongomock:// (an in-process store: the client-side cost of the guarantee)
fed by
  generator  rate 0, 1,000 users, 200 items (one partition)
  kafka      a 4-partition topic filled once with the same generator's records, keyed by user
             (user documents get one partition's deltas, item and type documents all four)

Each run starts on an empty database and reads the same records; the figure per contender is
the median of ``--rounds`` runs (wall clock; the CPU time of the streamkit process per record is
shown too, as it is steadier on a shared machine), and the cost is also given as the median of
each round's own pair (the two modes run next to each other). Exactly-once adds, per flush, one write of
the intents and one of their completion, a fence per partition on every document, and a fence
condition in every update.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid

USERS, ITEMS = 1000, 200
AGGREGATIONS = [
    {"name": "interactions_per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "interactions_per_item", "type": "count", "group_by": ["item_id"]},
    {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "interactions_per_type", "type": "count", "group_by": ["interaction_type"], "window": "1m"},
    {"name": "longest_interaction_per_type", "type": "max", "field": "duration_ms",
     "group_by": ["interaction_type"]},
]
GENERATOR = {"type": "generator", "seed": 42, "users": USERS, "items": ITEMS, "rate": 0}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fill(bootstrap: str, n: int) -> str:
    """A new 4-partition topic holding the generator's first ``n`` records, keyed by user."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from streamkit import Pipeline

    topic = f"bench_delivery_{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 4, 1)])
    finally:
        admin.close()
    Pipeline.from_dict({
        "name": "bench-fill", "source": GENERATOR,
        "sinks": [{"type": "kafka", "bootstrap_servers": bootstrap, "topic": topic, "what": "records",
                   "key_field": "user_id", "linger_ms": 50, "batch_size": 1 << 20}],
        "flush": {"interval": "2s", "max_records": 50_000}}).run(max_events=n)
    return topic


def drop_topic(bootstrap: str, topic: str) -> None:
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic])
    except Exception:  # a leftover topic has a unique name; not worth failing the benchmark
        pass
    finally:
        admin.close()


def one(spec: dict) -> dict:
    """One run (in this process): the pipeline of ``spec`` until ``spec['records']`` were flushed."""
    from streamkit import Pipeline
    from streamkit_mongodb import connect, speed_up_mongomock

    speed_up_mongomock()  # mongomock looks documents up by _id, as a server does
    database = f"bench_delivery_{uuid.uuid4().hex[:8]}"
    if spec["source"] == "kafka":
        source = {"type": "kafka", "bootstrap_servers": spec["bootstrap"], "topic": spec["topic"],
                  "group_id": f"bench-{uuid.uuid4().hex[:8]}", "start": "earliest"}
    else:
        source = GENERATOR
    config = {"name": "bench", "source": source, "aggregations": AGGREGATIONS, "delivery": spec["delivery"],
              "sinks": [{"type": "mongodb", "uri": spec["uri"], "database": database,
                         "collection": "aggregations"}],
              "flush": {"interval": spec["interval"], "max_records": spec["flush_records"]}}
    t, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    r = Pipeline.from_dict(config).run(max_events=spec["records"])
    seconds = time.perf_counter() - t
    end = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = end.ru_utime + end.ru_stime - cpu.ru_utime - cpu.ru_stime
    client = connect(spec["uri"])
    docs = client[database]["aggregations"].count_documents({})
    if not spec["uri"].startswith("mongomock://"):
        client.drop_database(database)
        client.close()
    return {"records": r.records_read, "seconds": seconds, "cpu": cpu_seconds, "flushes": r.flushes,
            "documents": docs}


def run_one(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True,
                         text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"run failed: {spec}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000, help="records per run (default 200,000)")
    ap.add_argument("--rounds", type=int, default=3, help="runs per contender; the median counts")
    ap.add_argument("--sources", default="generator,kafka")
    ap.add_argument("--stores", default="secantus,mongomock")
    ap.add_argument("--interval", default="1s", help="flush interval (default 1s)")
    ap.add_argument("--flush-records", type=int, default=10_000,
                    help="flush.max_records (default 10,000: many flushes, so the write path is measured)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(json.loads(args.one))))
        return 0

    uris = {"secantus": os.environ.get("MONGO_URI"), "mongomock": "mongomock://bench"}
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    stores = [s for s in args.stores.split(",") if s]
    sources = [s for s in args.sources.split(",") if s]
    for s in stores:
        if not uris.get(s):
            log(f"{s}: MONGO_URI is not set; skipped (eval \"$(scripts/services up)\")")
    if "kafka" in sources and not bootstrap:
        log("kafka: KAFKA_BOOTSTRAP is not set; skipped")
        sources.remove("kafka")
    topic = None
    if "kafka" in sources:
        log(f"filling a 4-partition topic with {args.records:,} records")
        topic = fill(bootstrap, args.records)
    rows = []
    try:
        for source in sources:
            for store in stores:
                if not uris.get(store):
                    continue
                results: dict = {"exactly_once": [], "at_least_once": []}
                for i in range(args.rounds):
                    order = ["exactly_once", "at_least_once"]
                    for delivery in order if i % 2 == 0 else order[::-1]:
                        spec = {"source": source, "uri": uris[store], "delivery": delivery,
                                "records": args.records, "interval": args.interval,
                                "flush_records": args.flush_records,
                                "bootstrap": bootstrap, "topic": topic}
                        r = run_one(spec)
                        results[delivery].append(r)
                        log(f"{source:9} {store:9} {delivery:13} round {i + 1}: "
                            f"{r['records'] / r['seconds']:>9,.0f} records/s, "
                            f"{r['cpu'] / r['records'] * 1e6:5.1f} µs CPU/record, {r['flushes']} flushes, "
                            f"{r['documents']:,} documents")
                med = {d: statistics.median(r["records"] / r["seconds"] for r in rs)
                       for d, rs in results.items()}
                cpu = {d: statistics.median(r["cpu"] / r["records"] * 1e6 for r in rs)
                       for d, rs in results.items()}
                paired = [1 - (e["records"] / e["seconds"]) / (a["records"] / a["seconds"])
                          for e, a in zip(results["exactly_once"], results["at_least_once"])]
                rows.append((source, store, med["exactly_once"], med["at_least_once"],
                             cpu["exactly_once"], cpu["at_least_once"], paired))
    finally:
        if topic:
            drop_topic(bootstrap, topic)

    print(f"\n{args.records:,} records per run, median of {args.rounds} runs, flush every {args.interval} "
          f"or {args.flush_records:,} records\n")
    print("| source | store | exactly_once records/s | at_least_once records/s | throughput cost "
          "| cost within each round: median (min-max) | streamkit CPU µs/record (exactly / at least) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for source, store, eo, alo, ceo, calo, paired in rows:
        print(f"| {source} | {store} | {eo:,.0f} | {alo:,.0f} | {(1 - eo / alo) * 100:.1f}% "
              f"| {statistics.median(paired) * 100:.1f}% ({min(paired) * 100:.0f}-{max(paired) * 100:.0f}%) "
              f"| {ceo:.1f} / {calo:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
