"""The ``file`` source against the generator on the same records, plain and gzip, side by side.

    python benchmarks/bench_files.py                       # 1,000,000 records, 3 rounds
    python benchmarks/bench_files.py --records 2000000 --rounds 5

The generator (seed 42, 1,000 users, 200 items, rate 0) makes N records; the same N records are
written once as a JSON-lines file and once gzip-compressed. Contenders, each ``streamkit run
--json`` in a process of its own with the same aggregations (count per user, avg duration per
item) into ``discard``: the generator (its records are objects: no decoding), the plain file and
the gzip file (their lines are decoded by the engine). Rates are the runs' own records/s (engine
time, from the first poll to the final flush); rounds run the three in turn, order rotating, and
each file/generator ratio is taken within its round. Needs no server.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile

import orjson

AGGREGATIONS = [
    {"name": "interactions_per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
]
GENERATOR = {"type": "generator", "seed": 42, "users": 1000, "items": 200, "rate": 0}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(folder: str, name: str, source: dict) -> float:
    path = os.path.join(folder, f"{name}.yaml")
    with open(path, "w") as fh:
        json.dump({"name": name, "delivery": "at_least_once", "source": source, "aggregations": AGGREGATIONS,
                   "sinks": [{"type": "discard"}], "flush": {"interval": "1s", "max_records": 500_000}}, fh)
    out = subprocess.run([sys.executable, "-m", "streamkit", "run", path, "-q", "--json"], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["records_per_second"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    n = args.records
    from streamkit import Pipeline
    spec = Pipeline.from_dict({"source": GENERATOR, "aggregations": AGGREGATIONS, "sinks": [{"type": "discard"}]}).spec
    records = spec.source.cls(spec.source.options, None).records(0, n)
    with tempfile.TemporaryDirectory() as folder:
        log(f"writing {n:,} generator records as JSON lines, plain and gzip ...")
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        plain, packed = os.path.join(folder, "events.jsonl"), os.path.join(folder, "events.jsonl.gz")
        with open(plain, "wb") as fh:
            fh.write(data)
        with open(packed, "wb") as fh:
            fh.write(gzip.compress(data, compresslevel=6))
        contenders = {"generator": {**GENERATOR, "max_records": n},
                      "file": {"type": "file", "path": plain},
                      "file, gzip": {"type": "file", "path": packed}}
        rates: dict[str, list[float]] = {k: [] for k in contenders}
        names = list(contenders)
        for r in range(args.rounds):
            for name in names[r % 3:] + names[:r % 3]:
                log(f"round {r + 1}/{args.rounds}: {name} ...")
                rates[name].append(run(folder, f"bench-{name.replace(', ', '-')}", contenders[name]))
        sizes = (len(data), os.path.getsize(packed))
    print(f"\n{n:,} records ({sizes[0] / 1e6:,.0f} MB of JSON lines, {sizes[1] / 1e6:,.0f} MB gzip), "
          f"count per user + avg per item -> discard; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; records/s, median of {args.rounds} (min-max)")
    for name, values in rates.items():
        print(f"{name:<12} {statistics.median(values):>10,.0f} records/s ({min(values):,.0f}-{max(values):,.0f})")
    for name in ("file", "file, gzip"):
        ratios = [f / g for f, g in zip(rates[name], rates["generator"])]
        print(f"{name} / generator: {statistics.median(ratios):.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
