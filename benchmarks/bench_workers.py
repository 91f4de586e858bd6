"""``streamkit run --workers 1`` against ``--workers 2`` on a multi-partition topic, into the discard
sink and into the MongoDB-wire server on MONGO_URI (exactly once), side by side in one run.

    eval "$(scripts/services up)"
    python benchmarks/bench_workers.py                          # 300,000 events, 4 partitions, 3 rounds
    python benchmarks/bench_workers.py --events 1000000 --partitions 8 --rounds 5

Each contender is the real command line, ``streamkit run FILE --workers N``, reading the whole
topic from the start in a consumer group of its own (into a database of its own): kafka -> count
per user + avg duration per item -> sink. Its rate is taken from the group's committed offsets
(committed only once the sink made a flush durable), from when they pass 10 % of the topic to when
they reach its end, so process start-up and the group join do not count; in brackets the rate
from the launch. Rounds run the four contenders in turn (the order rotating), and the 2-worker /
1-worker ratio of each sink is taken within each round, so that other load on the machine moves
both sides of a ratio alike. The machine's core count and load average are printed with the
figures: a second worker can only help where a second core is free.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_kafka import AGGREGATIONS, ITEMS, USERS, drop_topic, log, topic_size  # noqa: E402 - the same work


def produce(bootstrap: str, topic: str, n: int, partitions: int) -> None:
    """``topic`` with ``partitions`` partitions, holding ``n`` generated events keyed by user."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from streamkit import Pipeline
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()
    Pipeline.from_dict({
        "name": "bench-workers-fill", "flush": {"interval": "2s", "max_records": 50_000},
        "source": {"type": "generator", "seed": 42, "users": USERS, "items": ITEMS, "rate": 0},
        "sinks": [{"type": "kafka", "bootstrap_servers": bootstrap, "topic": topic, "what": "records",
                   "key_field": "user_id", "linger_ms": 50, "batch_size": 1 << 20}]}).run(max_events=n)


def committed(admin, group: str) -> int:
    """Records the group has committed, over all partitions."""
    from kafka.errors import KafkaError
    try:
        offsets = admin.list_group_offsets({group: None}).get(group) or {}
    except KafkaError:  # the group is still forming
        return 0
    return sum(o.offset for o in offsets.values() if o.offset > 0)


def contender(bootstrap: str, topic: str, n: int, workers: int, sink: dict, flush: dict) -> dict:
    """One ``streamkit run --workers`` over the whole topic; its steady and overall rate."""
    from kafka import KafkaAdminClient
    group = f"bench-w-{uuid.uuid4().hex[:8]}"
    config = {"name": group, "aggregations": AGGREGATIONS, "sinks": [sink], "flush": flush,
              "source": {"type": "kafka", "bootstrap_servers": bootstrap, "topic": topic, "group_id": group,
                         "start": "earliest", "session_timeout": "6s"}}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        json.dump(config, fh)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamkit", "run", fh.name, "-q", "--json",
                             "--workers", str(workers)], stdout=subprocess.PIPE, text=True)
    try:
        low = None
        while True:
            done = committed(admin, group)
            now = time.perf_counter()
            if low is None and done >= n // 10:
                low = (now, done)
            if done >= n:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"streamkit run --workers {workers} exited with {proc.returncode}")
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        admin.close()
        os.unlink(fh.name)
    summary = json.loads(out.strip().splitlines()[-1])
    assert low is not None
    overall = done / (now - started)
    return {"steady": (done - low[1]) / (now - low[0]) if now > low[0] else overall, "overall": overall,
            "records": summary["records_read"], "flushes": summary["flushes"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=300_000, help="events in the topic (default 300,000)")
    ap.add_argument("--partitions", type=int, default=4, help="partitions of the topic (default 4)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the four contenders (default 3)")
    ap.add_argument("--flush-interval", default="0.5s")
    ap.add_argument("--flush-max-records", type=int, default=20_000,
                    help="per worker (default 20,000: the committed offsets move often enough to time)")
    args = ap.parse_args(argv)
    bootstrap, mongo = os.environ.get("KAFKA_BOOTSTRAP"), os.environ.get("MONGO_URI")
    if not bootstrap or not mongo:
        log('KAFKA_BOOTSTRAP and MONGO_URI must be set; start the servers with: eval "$(scripts/services up)"')
        return 2
    n = args.events
    topic = f"bench_workers_{uuid.uuid4().hex[:6]}"
    databases: list[str] = []
    flush = {"interval": args.flush_interval, "max_records": args.flush_max_records}
    try:
        log(f"filling {topic} ({args.partitions} partitions) with {n:,} generated events ...")
        produce(bootstrap, topic, n, args.partitions)
        assert topic_size(bootstrap, topic) == n

        def sink(kind: str) -> dict:
            if kind == "discard":
                return {"type": "discard"}
            databases.append(f"bench_{uuid.uuid4().hex[:8]}")
            return {"type": "mongodb", "uri": mongo, "database": databases[-1], "collection": "aggregations"}

        plan = [(1, "discard"), (2, "discard"), (1, "mongodb"), (2, "mongodb")]
        results: dict = {c: [] for c in plan}
        loads = []
        for r in range(args.rounds):
            order = plan[r % len(plan):] + plan[:r % len(plan)]
            for workers, kind in order:
                log(f"round {r + 1}/{args.rounds}: --workers {workers} -> {kind} ...")
                results[(workers, kind)].append(contender(bootstrap, topic, n, workers, sink(kind), flush))
            loads.append(os.getloadavg()[0])
    finally:
        try:
            drop_topic(bootstrap, topic)
        except Exception:
            pass
        if databases:
            from pymongo import MongoClient
            with MongoClient(mongo) as client:
                for d in databases:
                    client.drop_database(d)

    print(f"\n{n:,} events, {args.partitions} partitions; {os.cpu_count()} cores; load average after each "
          f"round: {', '.join(f'{x:.1f}' for x in loads)}; records/s from 10 % of the topic to its end "
          f"(median of {args.rounds}, min-max), in brackets from the launch")
    for (workers, kind), runs in results.items():
        steady = [x["steady"] for x in runs]
        overall = statistics.median(x["overall"] for x in runs)
        print(f"--workers {workers} -> {kind:<8} {statistics.median(steady):>10,.0f} records/s "
              f"({min(steady):,.0f}-{max(steady):,.0f}) [{overall:,.0f}]")
    for kind in ("discard", "mongodb"):
        ratios = [b["steady"] / a["steady"] for a, b in zip(results[(1, kind)], results[(2, kind)])]
        print(f"2 workers / 1 worker -> {kind:<8} {statistics.median(ratios):.2f}x "
              f"(rounds {min(ratios):.2f}-{max(ratios):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
