"""What the exactly-once fence costs per document update, and what the alternatives cost, side by
side in one run: the same updates of the same documents with each way of writing the update.

    python benchmarks/bench_fence.py                               # MONGO_URI and mongomock
    python benchmarks/bench_fence.py --stores server --partitions 4
    python benchmarks/bench_fence.py --documents 600 --rounds 5

Each variant has its own collection of ``--documents`` documents (created in a warm-up round) and
updates every one of them once per round in one unordered ``bulk_write``, as the sink does per
flush; every update carries a count delta and advances the fence, so every one must match (the
script checks it). Rounds alternate the order of the variants; the figures are the median time per
update over the rounds and the median of each round's ratio to ``id`` in the same round (no fence:
``delivery: at_least_once``), with the lowest and highest of those ratios: on a shared machine the
paired ratio is steadier than either time.

  id          filter {_id}; $set the merged count (no fence)
  fence       filter {_id, _fence.<p>: {$not: {$gte: end}}} per partition; $set the count and the
              fences (the sink's update)
  fence-or    the same condition written {$or: [{_fence.<p>: {$lt: end}}, {_fence.<p>: {$exists: false}}]}
              (the sink's first fence filter)
  cond        filter {_id}; one pipeline stage per partition applying its delta only where its fence
              is behind ($cond; the sink's fallback after a duplicate key)
  merge       as fence, but the fences set with one $mergeObjects instead of dotted paths
  top         as fence, with the fences as top-level fields (_fence_<p>) instead of a sub-document

On mongomock the sink's speed-up is active (``streamkit_mongodb.connect``): an ``_id`` lookup, and
``fence``'s condition checked directly; ``top`` and ``fence-or`` go through mongomock's own matcher.
Stores: ``server`` is MONGO_URI (SecantusDB, the MongoDB-wire test server, in tests), ``mongomock``
the in-process store.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
import uuid

from pymongo import UpdateOne

VARIANTS = ("id", "fence", "fence-or", "cond", "merge", "top")


def _count(n: int) -> dict:
    return {"$add": [{"$ifNull": ["$count", 0]}, {"$literal": n}]}


def update(variant: str, _id: str, end: int, partitions: int, now: dt.datetime) -> UpdateOne:
    """One document's update: +1 per partition, fences advanced to ``end``."""
    parts = [f"topic/{p}" for p in range(partitions)]
    head = {"aggregation": {"$literal": "per_user"}, "key": {"$literal": {"user_id": _id}},
            "updated_at": {"$literal": now}}
    if variant == "id":
        return UpdateOne({"_id": _id}, [{"$set": {**head, "count": _count(partitions)}}], upsert=True)
    if variant == "cond":
        pipeline: list = [{"$set": head}]
        for p in parts:
            path = f"_fence.{p}"
            behind = {"$lt": [{"$ifNull": ["$" + path, -1]}, end]}
            pipeline.append({"$set": {"count": {"$cond": [behind, _count(1), "$count"]},
                                      path: {"$cond": [behind, {"$literal": end}, "$" + path]}}})
        return UpdateOne({"_id": _id}, pipeline, upsert=True)
    filt: dict = {"_id": _id}
    stage = {**head, "count": _count(partitions)}
    if variant == "fence-or":
        ors = [{"$or": [{f"_fence.{p}": {"$lt": end}}, {f"_fence.{p}": {"$exists": False}}]} for p in parts]
        filt.update(ors[0] if len(ors) == 1 else {"$and": ors})
    for p in parts:
        path = f"_fence_{p}" if variant == "top" else f"_fence.{p}"
        if variant != "fence-or":
            filt[path] = {"$not": {"$gte": end}}
        if variant != "merge":
            stage[path] = {"$literal": end}
    if variant == "merge":
        stage["_fence"] = {"$mergeObjects": [{"$ifNull": ["$_fence", {}]}, {"$literal": {p: end for p in parts}}]}
    return UpdateOne(filt, [{"$set": stage}], upsert=True)


def one_round(coll, variant: str, ids: list[str], end: int, partitions: int) -> float:
    now = dt.datetime.now(dt.timezone.utc)
    ops = [update(variant, i, end, partitions, now) for i in ids]
    t = time.perf_counter()
    r = coll.bulk_write(ops, ordered=False)
    seconds = time.perf_counter() - t
    if r.matched_count + r.upserted_count != len(ids):
        raise SystemExit(f"{variant}: {r.matched_count} matched + {r.upserted_count} upserted of {len(ids)}")
    return seconds


def bench(store: str, uri: str, documents: int, rounds: int, partitions: int, variants: list[str]) -> dict:
    from streamkit_mongodb import connect

    client = connect(uri) if uri.startswith("mongomock://") else connect(uri, serverSelectionTimeoutMS=5000)
    db = client[f"bench_fence_{uuid.uuid4().hex[:8]}"]
    ids = [f"u{i}" for i in range(documents)]
    times: dict[str, list[float]] = {v: [] for v in variants}
    try:
        for v in variants:  # warm-up: creates the documents
            one_round(db[v], v, ids, 1, partitions)
        for r in range(rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for v in order:
                s = one_round(db[v], v, ids, r + 2, partitions)
                times[v].append(s / documents)
                print(f"  {store} round {r + 1} {v:<9} {s / documents * 1e6:9.1f} µs/update", file=sys.stderr,
                      flush=True)
        for v in variants:  # every update was applied exactly once per round
            docs = list(db[v].find({}, {"count": 1}))
            assert len(docs) == documents and all(d["count"] == (rounds + 1) * partitions for d in docs), v
    finally:
        client.drop_database(db.name)
        if not uri.startswith("mongomock://"):
            client.close()
    return {v: (statistics.median(t), [a / b for a, b in zip(t, times["id"])]) for v, t in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stores", default="server,mongomock", help="server (MONGO_URI) and/or mongomock")
    ap.add_argument("--documents", type=int, default=600, help="documents per collection (default 600)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per variant; the median counts")
    ap.add_argument("--partitions", type=int, default=1, help="fences per document (default 1)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown or "id" not in variants:
        ap.error(f"--variants: choose from {', '.join(VARIANTS)}, including id")
    print(f"{args.documents:,} documents, {args.partitions} partition(s) per document, one bulk_write of every "
          f"document per round, median of {args.rounds} rounds\n")
    print("| store | variant | µs per update | updates/s | vs id (paired) | min–max | added µs |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for store in args.stores.split(","):
        if store == "server":
            uri = os.environ.get("MONGO_URI")
            if not uri:
                print("server: MONGO_URI is not set; skipped (eval \"$(scripts/services up)\")", file=sys.stderr)
                continue
        else:
            uri = f"mongomock://bench-fence-{uuid.uuid4().hex[:8]}"
        med = bench(store, uri, args.documents, args.rounds, args.partitions, variants)
        base = med["id"][0]
        for v in variants:
            t, ratios = med[v]
            print(f"| {store} | {v} | {t * 1e6:,.1f} | {1 / t:,.0f} | {statistics.median(ratios):.2f}× "
                  f"| {min(ratios):.2f}–{max(ratios):.2f} | {(t - base) * 1e6:+,.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
