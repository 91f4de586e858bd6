"""The cost of windows that close: the same windowed pipeline with and without a lateness,
side by side in one run.

    python benchmarks/bench_windows.py                       # 1,000,000 records, 5 rounds
    python benchmarks/bench_windows.py --records 300000 --rounds 3

Contenders, each in its own subprocess, in turn (the order rotating each round):

  open      generator (rate 0) -> count per type in 1-minute windows + sum of duration per item in
            5-minute windows every minute + count per user -> sink; no lateness: today's windows,
            which never close
  closing   the same with `lateness: 5s`: watermarks per partition, the late-record check on
            every batch, and closing (in mongodb: windows marked final after every flush)

once into the discard sink and once into mongodb on mongomock://, 20 flushes of 50,000 records.
Rates are records/s by wall clock and by the process's CPU time; the ratio closing/open is taken
within each round (median, lowest-highest), which holds up on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def pipeline(closing: bool, sink: str) -> dict:
    late = {"lateness": "5s"} if closing else {}
    sinks = [{"type": "discard"}] if sink == "discard" else \
        [{"type": "mongodb", "uri": "mongomock://", "database": "bench", "collection": "windows"}]
    return {
        "name": f"bench_{sink}_{closing}",
        "source": {"type": "generator", "seed": 42, "users": 1000, "items": 200, "rate": 0, "time_step": "1ms"},
        "aggregations": [
            {"name": "per_type_1m", "type": "count", "group_by": ["interaction_type"], "window": "1m", **late},
            {"name": "duration_5m_every_1m", "type": "sum", "field": "duration_ms", "group_by": ["item_id"],
             "window": {"size": "5m", "hop": "1m"}, **late},
            {"name": "per_user", "type": "count", "group_by": ["user_id"]},
        ],
        "sinks": sinks,
        "flush": {"max_records": 50_000, "interval": "60s"},
    }


def child(closing: bool, sink: str, n: int) -> None:
    import streamkit_mongodb
    from streamkit import Pipeline
    streamkit_mongodb.speed_up_mongomock()  # as the tests do: mongomock scans otherwise
    t, cpu = time.perf_counter(), time.process_time()
    r = Pipeline.from_dict(pipeline(closing, sink)).run(max_events=n)
    print(json.dumps({"seconds": time.perf_counter() - t, "cpu": time.process_time() - cpu,
                      "records": r.records_read, "late": sum(r.late.values())}))


def measure(closing: bool, sink: str, n: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", "closing" if closing else "open", "--sink", sink,
                           "--records", str(n)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--child")
    ap.add_argument("--sink", default="discard")
    args = ap.parse_args()
    if args.child:
        child(args.child == "closing", args.sink, args.records)
        return
    n = args.records
    print(f"{n:,} records per run, {args.rounds} rounds; ratio = closing / open within each round")
    for sink in ("discard", "mongodb"):
        runs: dict[bool, list[dict]] = {False: [], True: []}
        for r in range(args.rounds):
            for closing in ((False, True) if r % 2 == 0 else (True, False)):
                m = measure(closing, sink, n)
                assert m["records"] == n and m["late"] == 0, m
                runs[closing].append(m)
                print(f"round {r + 1}: {sink:<8} {'closing' if closing else 'open':<8} {n / m['seconds']:>10,.0f} "
                      f"records/s", file=sys.stderr, flush=True)
        wall = [o["seconds"] / c["seconds"] for o, c in zip(runs[False], runs[True])]
        cpu = [o["cpu"] / c["cpu"] for o, c in zip(runs[False], runs[True])]
        for closing in (False, True):
            rates = [n / m["seconds"] for m in runs[closing]]
            print(f"  into {sink:<8} {'closing (lateness 5s)' if closing else 'open (no lateness)':<22} "
                  f"{statistics.median(rates):>10,.0f} records/s (median)")
        print(f"  into {sink:<8} closing / open = {statistics.median(wall):.3f}x ({min(wall):.3f}-{max(wall):.3f}) "
              f"by wall clock, {statistics.median(cpu):.3f}x ({min(cpu):.3f}-{max(cpu):.3f}) by CPU time")


if __name__ == "__main__":
    main()
