"""What the sketches cost: each of distinct, percentiles and top_k alone next to count, on the same
generator pipeline, side by side in one run (rounds alternate the contenders, each run in its own
process).

    python benchmarks/bench_sketches.py                       # 200,000 records, 3 rounds, both sinks
    python benchmarks/bench_sketches.py --records 100000 --rounds 5 --sinks discard

Contenders (one aggregation each; generator at rate 0, 1,000 users, 200 items, one partition):
  count        count per item_id                              (the baseline)
  distinct     distinct user_id per item_id                   ("distinct users per item")
  percentiles  percentiles of duration_ms per interaction_type ("p95 duration per type")
  top_k        top_k item_id per interaction_type              (k 10, capacity 100)
into
  discard      a sink that drops every flush: the cost of aggregating, not of storing
  mongomock    the mongodb sink on mongomock:// (the default pipeline's store; in-process,
               interpreted update expressions: a real MongoDB evaluates them natively)

The figure per contender is the median records/s (wall clock) of the rounds, and its ratio to
count is the median of each round's own ratio (the contenders of a round run one after the other);
the same for the CPU time of the run's process per record (steadier on a shared machine; ratio:
count's CPU per record over the contender's, so above 1 is faster than count).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import uuid

GENERATOR = {"type": "generator", "seed": 42, "users": 1000, "items": 200, "rate": 0}
CONTENDERS = {
    "count": {"type": "count", "group_by": ["item_id"]},
    "distinct": {"type": "distinct", "field": "user_id", "group_by": ["item_id"]},
    "percentiles": {"type": "percentiles", "field": "duration_ms", "group_by": ["interaction_type"]},
    "top_k": {"type": "top_k", "field": "item_id", "group_by": ["interaction_type"]},
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def one(spec: dict) -> dict:
    """One run in this process: the contender's pipeline until ``spec['records']`` were flushed."""
    from streamkit import Pipeline
    from streamkit_mongodb import speed_up_mongomock

    speed_up_mongomock()
    sink = ({"type": "discard"} if spec["sink"] == "discard" else
            {"type": "mongodb", "uri": f"mongomock://bench-{uuid.uuid4().hex[:8]}", "database": "bench"})
    config = {"name": "bench", "source": GENERATOR, "sinks": [sink],
              "aggregations": [{"name": spec["contender"], **CONTENDERS[spec["contender"]]}],
              "flush": {"interval": "1s", "max_records": 100_000}}
    t, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    r = Pipeline.from_dict(config).run(max_events=spec["records"])
    seconds = time.perf_counter() - t
    end = resource.getrusage(resource.RUSAGE_SELF)
    return {"records": r.records_read, "seconds": seconds, "flushes": r.flushes,
            "cpu": end.ru_utime + end.ru_stime - cpu.ru_utime - cpu.ru_stime}


def run_one(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True,
                         text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"run failed: {spec}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sinks", nargs="+", default=["discard", "mongomock"], choices=["discard", "mongomock"])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(json.loads(args.one))))
        return
    for sink in args.sinks:
        rates: dict = {c: [] for c in CONTENDERS}
        ratios: dict = {c: [] for c in CONTENDERS}
        cpus: dict = {c: [] for c in CONTENDERS}
        cpu_ratios: dict = {c: [] for c in CONTENDERS}
        for rnd in range(args.rounds):
            base = base_cpu = None
            for c in CONTENDERS:
                r = run_one({"contender": c, "sink": sink, "records": args.records})
                rate, cpu = r["records"] / r["seconds"], r["cpu"] / r["records"] * 1e6
                rates[c].append(rate)
                cpus[c].append(cpu)
                base, base_cpu = (rate, cpu) if c == "count" else (base, base_cpu)
                ratios[c].append(rate / base)
                cpu_ratios[c].append(base_cpu / cpu)
                log(f"  {sink} round {rnd + 1}/{args.rounds} {c:12} {rate:>10,.0f} records/s "
                    f"({r['cpu'] / r['records'] * 1e6:.1f} µs CPU/record, {r['flushes']} flushes)")
        print(f"\n{sink}: {args.records:,} records per run, median of {args.rounds} rounds")
        print("| aggregation | records/s | × count | CPU µs/record | × count by CPU |")
        print("|---|---:|---:|---:|---:|")
        for c in CONTENDERS:
            print(f"| {c} | {statistics.median(rates[c]):,.0f} | {statistics.median(ratios[c]):.2f} "
                  f"| {statistics.median(cpus[c]):.1f} | {statistics.median(cpu_ratios[c]):.2f} |")


if __name__ == "__main__":
    main()
