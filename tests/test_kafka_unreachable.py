"""No broker at start: one plain line, exit code 1, well within the configured timeout."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from servers import free_port


REASONS = {"kafka-python": "KafkaTimeoutError: Unable to bootstrap from ['127.0.0.1:{port}']",
           "confluent-kafka": "KafkaError _TRANSPORT: Failed to get metadata: Local: Broker transport failure"}


@pytest.mark.parametrize("dead_letter", ["log", "kafka"])
def test_unreachable_broker_fails_fast_with_one_line(tmp_path, dead_letter, kafka_client):
    port = free_port()  # nothing listens there
    config = tmp_path / "p.yaml"
    config.write_text(f"""
source: {{type: kafka, bootstrap_servers: "127.0.0.1:{port}", topic: nowhere, connect_timeout: 3s,
         client: {kafka_client}}}
aggregations: [{{name: per_user, type: count, group_by: [user_id]}}]
sinks: [{{type: discard}}]
delivery: at_least_once
dead_letter: {{type: {dead_letter}}}
""")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "streamkit", "run", str(config)],
                          capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1, proc.stderr
    where = "source" if dead_letter == "log" else "dead_letter"
    assert lines[0] == (f"streamkit: error: {where}: no Kafka broker reachable at 127.0.0.1:{port} within 3s "
                        f"({REASONS[kafka_client].format(port=port)})")
    assert 2.5 < elapsed < 30, elapsed  # waited for connect_timeout (3s), then gave up
    assert proc.stdout == ""
