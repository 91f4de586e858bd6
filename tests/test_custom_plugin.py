"""examples/custom_plugin is a real package: install it, and its entry point adds the `stddev` type."""
import json
import math
import os
import subprocess
import sys

import pytest


def test_installed_plugin_runs_in_a_pipeline(root, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), f"{root}/examples/custom_plugin"], check=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    plugins = json.loads(subprocess.run([sys.executable, "-m", "streamkit", "plugins", "--json"], env=env,
                                        capture_output=True, text=True, check=True).stdout)
    stddev = next(t for t in plugins["aggregator"] if t["name"] == "stddev")
    assert (stddev["package"], stddev["version"]) == ("streamkit-stddev", "1.0.0")

    out = tmp_path / "out.jsonl"
    f = tmp_path / "p.yaml"
    f.write_text(f"""
source: {{type: generator, seed: 4, users: 10, items: 5, rate: 0}}
aggregations:
  - {{name: spread, type: stddev, field: duration_ms, group_by: [interaction_type]}}
sinks: [{{type: jsonl, path: "{out}"}}, {{type: mongodb, uri: "mongomock://", database: d}}]
flush: {{max_records: 700}}
""")
    proc = subprocess.run([sys.executable, "-m", "streamkit", "run", str(f), "--max-events", "3000", "-q"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr

    # truth: plain Python over the same records
    sys.path.insert(0, f"{root}/plugins")
    from streamkit_generator import Generator
    g = Generator({**{k: o.default for k, o in Generator.options.items()},
                   "seed": 4, "users": 10, "items": 5, "rate": 0}, None)
    by_type: dict = {}
    for r in g.records(0, 3000):
        by_type.setdefault(r["interaction_type"], []).append(r["duration_ms"])
    merged: dict = {}
    for line in out.read_text().splitlines():
        d = json.loads(line)
        t = d["key"]["interaction_type"]
        c, s, q = merged.get(t, (0, 0.0, 0.0))
        merged[t] = (c + d["count"], s + d["sum"], q + d["sumsq"])
    for t, vals in by_type.items():
        mean = sum(vals) / len(vals)
        want = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
        c, s, q = merged[t]
        assert c == len(vals)
        assert math.sqrt(q / c - (s / c) ** 2) == pytest.approx(want, rel=1e-9)
