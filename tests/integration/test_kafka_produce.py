"""examples/produce.yaml: the seed's generator into Kafka, exactly --max-events messages."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import orjson
import pytest

from streamkit import Pipeline

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_produce_example_sends_exactly_n_at_the_rate(kafka, kafka_client):
    topic = kafka.create_topic("produced", partitions=3)
    n, rate = 1500, 1000
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka.bootstrap, "TOPIC": topic, "RATE": str(rate)}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "streamkit", "run", f"{ROOT}/examples/produce.yaml",
                           "--max-events", str(n), "--quiet", "--json", "--set", f"sinks.0.client={kafka_client}"],
                          capture_output=True, text=True, timeout=60, env=env)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    summary = orjson.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["records_read"] == n and summary["stopped_by"] == "max_events"
    assert summary["elapsed"] >= (n - 1) / rate * 0.95, summary  # the rate is a ceiling
    assert elapsed < 30

    assert sum(kafka.end_offsets(topic).values()) == n
    messages = kafka.read_all(topic)
    # the same records the generator makes for these options, each once, keyed by user
    gen = Pipeline.from_yaml(f"{ROOT}/examples/produce.yaml",
                             overrides=[f"source.rate={rate}"]).spec.source
    expected = gen.cls(gen.options, None).records(0, n)
    got = [orjson.loads(m.value) for m in messages]
    key = lambda r: r["timestamp"]  # noqa: E731 - unique per record
    assert sorted(got, key=key) == sorted(expected, key=key)
    assert all(m.key == orjson.loads(m.value)["user_id"].encode() for m in messages)
    # one user's events stay in one partition, in order
    by_user: dict = {}
    for m in messages:
        by_user.setdefault(m.key, set()).add(m.partition)
    assert all(len(parts) == 1 for parts in by_user.values())
