"""streamkit's engine against a hand-written Python loop, side by side in one run.

    python benchmarks/bench_core.py                 # 2,000,000 records, 3 rounds
    python benchmarks/bench_core.py --records 500000 --rounds 5

Each contender runs in its own subprocess (so peak RSS is its own):

  streamkit      generator (rate 0) -> count per user + avg duration per item -> discard sink
  hand loop/blk  the per-record hand loop fed by streamkit's block generator: the same input
                 records, so the ratio is the engine's aggregation against the hand loop's (the
                 fair comparison)
  hand loop      the same generation (same distributions) and the same two aggregations, written
                 as the per-record loop one writes by hand: a dict per event, two dict updates;
                 streamkit's lead over it is mostly its generator making records 1,024 at a time
  memory         streamkit with 1,000,000 distinct users (count per user), peak RSS

Rounds run the three in turn (the order rotating); the rates are medians over the rounds and the
ratios medians of each round's ratio, with their lowest and highest, by wall clock and by the
process's CPU time (steadier on a shared machine: waiting for a core does not count). streamkit's
figure includes building the pipeline (loading the plugins), the hand loops' does not.
"""
from __future__ import annotations

import argparse
import itertools
import json
import random
import resource
import statistics
import subprocess
import sys
import time

PIPELINE = {
    "source": {"type": "generator", "seed": 42, "users": 1000, "items": 200, "rate": 0},
    "aggregations": [
        {"name": "interactions_per_user", "type": "count", "group_by": ["user_id"]},
        {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    ],
    "sinks": [{"type": "discard"}],
}


def run_streamkit(n: int, users: int) -> dict:
    from streamkit import Pipeline
    cfg = json.loads(json.dumps(PIPELINE))
    cfg["source"]["users"] = users
    t, cpu = time.perf_counter(), time.process_time()
    r = Pipeline.from_dict(cfg).run(max_events=n)
    return {"seconds": time.perf_counter() - t, "cpu": time.process_time() - cpu, "records": r.records_read}


def run_hand(n: int, users: int) -> dict:
    """What one writes without a framework: one event dict per record, per-record updates."""
    rng = random.Random(42)
    user_ids = [f"u{i}" for i in range(1, users + 1)]
    item_ids = [f"i{i}" for i in range(1, 201)]
    rng.shuffle(user_ids)
    rng.shuffle(item_ids)
    ucw = list(itertools.accumulate(1.0 / r ** 1.1 for r in range(1, users + 1)))
    icw = list(itertools.accumulate(1.0 / r ** 1.1 for r in range(1, 201)))
    types = ["view", "click", "like", "share", "purchase"]
    tcw = list(itertools.accumulate([0.5, 0.3, 0.1, 0.05, 0.05]))
    choices, expo = rng.choices, rng.expovariate
    start = 1767225600.0
    counts: dict = {}
    durations: dict = {}
    t, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        event = {"user_id": choices(user_ids, cum_weights=ucw)[0],
                 "item_id": choices(item_ids, cum_weights=icw)[0],
                 "interaction_type": choices(types, cum_weights=tcw)[0],
                 "timestamp": start + i * 0.001,
                 "duration_ms": int(expo(1 / 300.0)) + 1}
        u = event["user_id"]
        counts[u] = counts.get(u, 0) + 1
        item = event["item_id"]
        acc = durations.get(item)
        if acc is None:
            durations[item] = [event["duration_ms"], 1]
        else:
            acc[0] += event["duration_ms"]
            acc[1] += 1
    averages = {k: s / c for k, (s, c) in durations.items()}
    return {"seconds": time.perf_counter() - t, "cpu": time.process_time() - cpu, "records": sum(counts.values()), "items": len(averages)}


def run_hand_blocks(n: int, users: int) -> dict:
    """The hand loop fed by streamkit's block generator: aggregation cost alone."""
    from streamkit_generator import Generator
    g = Generator({**{k: o.default for k, o in Generator.options.items()}, "users": users, "rate": 0,
                   "start_time": 1767225600.0}, None)
    counts: dict = {}
    durations: dict = {}
    t, cpu = time.perf_counter(), time.process_time()
    pos = 0
    while pos < n:
        k = min(1000, n - pos)
        for event in g.records(pos, k):
            u = event["user_id"]
            counts[u] = counts.get(u, 0) + 1
            item = event["item_id"]
            acc = durations.get(item)
            if acc is None:
                durations[item] = [event["duration_ms"], 1]
            else:
                acc[0] += event["duration_ms"]
                acc[1] += 1
        pos += k
    return {"seconds": time.perf_counter() - t, "cpu": time.process_time() - cpu, "records": sum(counts.values())}


def child(kind: str, n: int, users: int) -> None:
    fn = {"streamkit": run_streamkit, "hand": run_hand, "hand_blocks": run_hand_blocks}[kind]
    out = fn(n, users)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def measure(kind: str, n: int, users: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", kind, "--records", str(n), "--users", str(users)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--memory-users", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the three contenders (default 3)")
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.records, args.users)
        return
    n = args.records
    contenders = [("streamkit", "streamkit (generator -> count + avg -> discard)"),
                  ("hand_blocks", "hand loop on streamkit's block generator"),
                  ("hand", "hand loop (per-record generation + dict updates)")]
    runs: dict[str, list[dict]] = {k: [] for k, _ in contenders}
    for r in range(args.rounds):
        shift = r % len(contenders)
        for kind, label in contenders[shift:] + contenders[:shift]:
            m = measure(kind, n, args.users)
            assert m["records"] == n, m
            m["rate"] = n / m["seconds"]
            runs[kind].append(m)
            print(f"round {r + 1}: {label:<52} {m['rate']:>12,.0f} records/s  peak RSS "
                  f"{m['peak_rss_mb']:,.0f} MB", file=sys.stderr, flush=True)
    print(f"{n:,} records, {args.users:,} users, median of {args.rounds} rounds")
    for kind, label in contenders:
        rates = [m["rate"] for m in runs[kind]]
        rss = statistics.median(m["peak_rss_mb"] for m in runs[kind])
        print(f"{label:<52} {statistics.median(rates):>12,.0f} records/s  peak RSS {rss:,.0f} MB")
    for kind, label in (("hand_blocks", "hand loop on the same (block) generator"),
                        ("hand", "hand loop generating per record")):
        ratios = [a["rate"] / b["rate"] for a, b in zip(runs["streamkit"], runs[kind])]
        cpu = [b["cpu"] / a["cpu"] for a, b in zip(runs["streamkit"], runs[kind])]
        print(f"streamkit / {label:<40} = {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f}) by wall clock, {statistics.median(cpu):.2f}x "
              f"({min(cpu):.2f}-{max(cpu):.2f}) by CPU time")
    mem = measure("streamkit", n, args.memory_users)
    print(f"\nstreamkit with {args.memory_users:,} distinct users: {n / mem['seconds']:,.0f} records/s, "
          f"peak RSS {mem['peak_rss_mb']:,.0f} MB")


if __name__ == "__main__":
    main()
