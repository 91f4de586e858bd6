"""The cost of ``/metrics``: rendering one scrape with ``prometheus_client`` against the
hand-written renderer it replaced, side by side on the same status data.

    git show d026a73:plugins/streamkit_dashboard/prometheus.py > /tmp/prometheus_by_hand.py
    python benchmarks/bench_metrics.py --by-hand /tmp/prometheus_by_hand.py --processes 20 --partitions 12

The data is what a busy collection reports: PROCESSES pipeline processes, each with PARTITIONS
lagging partitions, and AGGREGATIONS aggregations with two totals each. Rounds alternate the two
renderers; the ratio is taken per round. Also printed: the import time of each renderer in a fresh
interpreter that already has what the dashboard server imports (bottle, pymongo, wsgiref), which is
what the client library adds to a dashboard's start.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time

SERVER_IMPORTS = "import bottle, pymongo, wsgiref.simple_server, socketserver, json"


def status(processes: int, partitions: int, aggregations: int) -> tuple[dict, list[dict], int]:
    procs = [{"pipeline": f"pipeline-{i % 3}", "host": "host-a", "pid": 1000 + i, "state": "running",
              "records_read": 1_234_567 + i, "records_per_second": 5321.5, "dead_letters": 17, "flushes": 3456,
              "last_flush_age": 0.4, "lag": [{"partition": f"user_interactions/{p}", "lag": 100 + p}
                                             for p in range(partitions)]} for i in range(processes)]
    aggs = [{"name": f"aggregation_{a}", "keys": 10_000 + a, "totals": {"count": 1_000_000 + a, "sum": 5.5e8}}
            for a in range(aggregations)]
    return {"processes": procs}, aggs, 42


def load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def per_call(render, data, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        out = render(*data)
    elapsed = (time.perf_counter() - started) / calls
    assert out
    return elapsed


def import_ms(code: str, runs: int = 7) -> float:
    probe = (f"{SERVER_IMPORTS}\nimport time\nt = time.perf_counter()\n{code}\n"
             f"print(time.perf_counter() - t)")
    times = [float(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                  check=True).stdout) for _ in range(runs)]
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--by-hand", required=True, metavar="FILE", help="the hand-written prometheus.py")
    ap.add_argument("--processes", type=int, default=20)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--aggregations", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()
    from streamkit_dashboard import prometheus as client
    by_hand = load(args.by_hand, "prometheus_by_hand")
    data = status(args.processes, args.partitions, args.aggregations)
    lines = len(client.render(*data).splitlines())
    a, b = [], []
    for r in range(args.rounds):
        pair = [(a, client.render), (b, by_hand.render)]
        for out, render in (pair if r % 2 == 0 else pair[::-1]):
            out.append(per_call(render, data, args.calls))
    ratios = [x / y for x, y in zip(a, b)]
    print(f"one scrape of {args.processes} processes x {args.partitions} partitions, {args.aggregations} "
          f"aggregations ({lines} lines), {args.rounds} rounds of {args.calls} renders")
    print(f"  prometheus_client: {statistics.median(a) * 1e6:,.0f} µs per scrape")
    print(f"  by hand:           {statistics.median(b) * 1e6:,.0f} µs per scrape")
    print(f"  ratio client / by hand: {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}x)")
    client_import = import_ms("import prometheus_client.exposition, prometheus_client.metrics_core, "
                              "prometheus_client.registry")
    hand_import = import_ms(f"import importlib.util as u; s = u.spec_from_file_location('h', {args.by_hand!r}); "
                            f"s.loader.exec_module(u.module_from_spec(s))")
    print(f"  import after the server's own imports: client {client_import:.1f} ms, by hand {hand_import:.1f} ms")


if __name__ == "__main__":
    main()
