"""Dashboard API latency (p50/p95) at 10,000 and 100,000 aggregate documents, on mongomock and
on the MongoDB-wire test server, next to the seed's way of computing the same figures.

    python benchmarks/bench_dashboard.py                              # mongomock only
    MONGO_URI=mongodb://127.0.0.1:27017 python benchmarks/bench_dashboard.py --backends mongomock,server
    python benchmarks/bench_dashboard.py --sizes 10000 --requests 50

The collection holds documents as the mongodb sink writes them, with its indexes: half
``per_user`` (all-time count by user_id), a quarter ``per_item``, a quarter ``per_type``
(1-minute windows of 5 types), plus the status document and counters a pipeline keeps.
Requests go over HTTP to the dashboard's own threaded server, one at a time:

  /api/summary                        the page's update: seed figures, chart, health, alerts
  /api/aggregations/per_user?limit=10 top-10 users (sorted index scan with a limit)
  /api/aggregations/per_item?...asc   the 10 least-interacted items
  /api/aggregations/per_type?limit=10 the latest window of a windowed aggregation
  seed full scan (no HTTP)            what the seed's page did: load every document of the
                                      per-user and per-item aggregations into Python, then
                                      sum, count and sort there
  plain sorted query (no HTTP)        find({aggregation: per_user}).sort(count desc).limit(10),
                                      what the top-10 request would be without the dashboard's
                                      bounded range (a server that sorts what it matches)

``--sizes 1500 --backends mongomock`` is about the size of the default pipeline's collection
(~1,500 documents plus five per minute of windows).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import time
import urllib.request
import uuid

from pymongo import ASCENDING, DESCENDING

from streamkit_dashboard.meta import AggMeta
from streamkit_dashboard.server import DashboardServer
from streamkit_dashboard.status import STATUS_COLLECTION, baseline, counter_id
from streamkit_dashboard.store import DashboardStore
from streamkit_mongodb import connect, document_id, speed_up_mongomock

UTC = dt.timezone.utc
START = dt.datetime(2026, 1, 1, tzinfo=UTC)
ENDPOINTS = [
    ("/api/summary", "api/summary"),
    ("top-10 users", "api/aggregations/per_user?limit=10"),
    ("10 least-interacted items", "api/aggregations/per_item?limit=10&order=asc"),
    ("latest window, top 10", "api/aggregations/per_type?limit=10"),
]


def seed(db, n: int) -> float:
    rng = random.Random(n)
    coll = db["aggs"]
    coll.create_index([("aggregation", ASCENDING), ("window.start", DESCENDING)])
    coll.create_index([("aggregation", ASCENDING), ("count", DESCENDING)])
    users, items, windows = n // 2, n // 4, (n - n // 2 - n // 4) // 5
    docs = []
    for i in range(users):
        key = {"user_id": f"u{i}"}
        docs.append({"_id": document_id("per_user", key, None), "aggregation": "per_user", "key": key,
                     "window": {"start": None, "end": None}, "count": rng.randint(1, 10_000)})
    for i in range(items):
        key = {"item_id": f"i{i}"}
        docs.append({"_id": document_id("per_item", key, None), "aggregation": "per_item", "key": key,
                     "window": {"start": None, "end": None}, "count": rng.randint(1, 10_000)})
    for w in range(windows):
        start = START + dt.timedelta(minutes=w)
        for t in ("view", "click", "like", "share", "purchase"):
            key = {"interaction_type": t}
            docs.append({"_id": document_id("per_type", key, start.timestamp()), "aggregation": "per_type",
                         "key": key, "window": {"start": start, "end": start + dt.timedelta(minutes=1)},
                         "count": rng.randint(1, 500)})
    t = time.perf_counter()
    for i in range(0, len(docs), 5000):
        coll.insert_many(docs[i:i + 5000], ordered=False)
    loaded = time.perf_counter() - t
    metas = [AggMeta("per_user", ["user_id"], ["count"], "count", type="count"),
             AggMeta("per_item", ["item_id"], ["count"], "count", type="count"),
             AggMeta("per_type", ["interaction_type"], ["count"], "count", "tumbling", 60.0, 60.0, type="count")]
    now = dt.datetime.now(UTC)
    status = db[STATUS_COLLECTION]
    status.insert_one({"_id": "process|bench|h|1|1", "kind": "process", "pipeline": "bench", "collection": "aggs",
                       "host": "h", "pid": 1, "state": "running", "updated_at": now, "last_flush": now,
                       "records_read": 0, "records_per_second": 0.0, "dead_letters": 0, "flushes": 0,
                       "flush_interval": 1.0, "aggregations": [m.to_json() for m in metas]})
    for m in metas:
        status.insert_one({"_id": counter_id("aggs", m.name), "kind": "counter", "collection": "aggs",
                           "aggregation": m.name, **baseline(coll, m)})
    return loaded


def seed_full_scan(db) -> dict:
    """The seed's approach: every per-user and per-item document into Python."""
    users = list(db["aggs"].find({"aggregation": "per_user"}, {"key": 1, "count": 1}))
    items = list(db["aggs"].find({"aggregation": "per_item"}, {"key": 1, "count": 1}))
    total = sum(d["count"] for d in users)
    top_users = sorted(users, key=lambda d: -d["count"])[:10]
    by_count = sorted(items, key=lambda d: d["count"])
    return {"total": total, "distinct": len(users), "top_users": top_users, "fewest": by_count[:10],
            "most": by_count[-10:]}


def plain_sorted_query(db) -> list:
    """Top 10 users by a plain query: the server picks how many documents it reads and sorts."""
    return list(db["aggs"].find({"aggregation": "per_user"}).sort("count", DESCENDING).limit(10))


def percentiles(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    p95 = s[min(len(s) - 1, max(0, round(0.95 * len(s)) - 1))]
    return statistics.median(s) * 1000, p95 * 1000


def measure(fn, requests: int) -> tuple[float, float]:
    for _ in range(min(3, requests)):
        fn()
    samples = []
    for _ in range(requests):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return percentiles(samples)


def bench(backend: str, uri: str, n: int, requests: int) -> list[tuple]:
    client = connect(uri) if uri.startswith("mongomock://") else connect(uri, serverSelectionTimeoutMS=5000)
    dbname = f"bench_dash_{uuid.uuid4().hex[:8]}"
    db = client[dbname]
    try:
        loaded = seed(db, n)
        print(f"  {backend} {n:,}: loaded in {loaded:.1f}s", file=sys.stderr)
        server = DashboardServer(DashboardStore(db, "aggs"), port=0)
        server.start()
        rows = []
        try:
            for label, path in ENDPOINTS:
                url = server.url + path

                def get(url: str = url) -> None:
                    with urllib.request.urlopen(url, timeout=600) as r:
                        r.read()
                p50, p95 = measure(get, requests)
                rows.append((backend, n, label, p50, p95))
                print(f"  {backend} {n:,} {label}: p50 {p50:.1f} ms, p95 {p95:.1f} ms", file=sys.stderr)
        finally:
            server.stop()
        p50, p95 = measure(lambda: seed_full_scan(db), max(3, requests // 3))
        rows.append((backend, n, "seed full scan (no HTTP)", p50, p95))
        print(f"  {backend} {n:,} seed full scan: p50 {p50:.1f} ms", file=sys.stderr)
        p50, p95 = measure(lambda: plain_sorted_query(db), max(3, requests // 3))
        rows.append((backend, n, "plain sorted query, top 10 (no HTTP)", p50, p95))
        print(f"  {backend} {n:,} plain sorted query: p50 {p50:.1f} ms", file=sys.stderr)
        return rows
    finally:
        client.drop_database(dbname)
        if not uri.startswith("mongomock://"):
            client.close()


def main() -> None:
    speed_up_mongomock()  # mongomock looks documents up by _id, as a server does
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000", help="documents in the collection (comma list)")
    ap.add_argument("--backends", default="mongomock", help="mongomock and/or server (MONGO_URI)")
    ap.add_argument("--requests", type=int, default=30, help="timed requests per endpoint")
    ap.add_argument("--server-requests", type=int, default=None,
                    help="timed requests per endpoint on the server (default: --requests)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for backend in args.backends.split(","):
        if backend == "server":
            uri = os.environ.get("MONGO_URI")
            if not uri:
                sys.exit("bench_dashboard: set MONGO_URI for --backends server (scripts/services up)")
            reqs = args.server_requests or args.requests
        else:
            uri, reqs = f"mongomock://bench-{uuid.uuid4().hex}", args.requests
        for n in sizes:
            rows.extend(bench(backend, uri, n, reqs))
    print("| backend | documents | request | p50 ms | p95 ms |")
    print("|---|---:|---|---:|---:|")
    for backend, n, label, p50, p95 in rows:
        print(f"| {backend} | {n:,} | {label} | {p50:.1f} | {p95:.1f} |")
    print()
    p50 = {(backend, n, label): v for backend, n, label, v, _ in rows}
    for backend, n in dict.fromkeys((r[0], r[1]) for r in rows):
        summary, top = p50[backend, n, "/api/summary"], p50[backend, n, "top-10 users"]
        print(f"{backend} {n:,}: seed full scan / /api/summary = "
              f"{p50[backend, n, 'seed full scan (no HTTP)'] / summary:.1f}x; plain sorted query / "
              f"top-10 users = {p50[backend, n, 'plain sorted query, top 10 (no HTTP)'] / top:.1f}x (p50)")


if __name__ == "__main__":
    main()
