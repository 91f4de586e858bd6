"""A second member joins the consumer group mid-run: the first flushes and commits before its
partitions are revoked, so even at-least-once delivery counts every record exactly once."""
from __future__ import annotations

import random
import threading
import time
from collections import Counter

import orjson
import pytest

from conftest import unique

pytestmark = pytest.mark.integration


def _config(name: str, bootstrap: str, topic: str, group: str, uri: str, database: str, client: str) -> dict:
    return {
        "name": name,
        "source": {"type": "kafka", "client": client, "bootstrap_servers": bootstrap, "topic": topic, "group_id": group,
                   "connect_timeout": "10s", "max_poll_records": 200},
        "aggregations": [{"name": "per_user", "type": "count", "group_by": ["user_id"]}],
        "sinks": [{"type": "mongodb", "uri": uri, "database": database, "collection": "aggregations"}],
        # without fences a record merged twice would show: only the revocation flush prevents it
        "delivery": "at_least_once",
        "flush": {"interval": "10s", "max_records": 100_000},  # deltas are pending when the rebalance comes
    }


def _run(pipeline, out: dict, key: str) -> None:
    try:
        out[key] = pipeline.run()
    except BaseException as exc:  # reported by the test
        out[key] = exc


def test_second_member_joins_and_nothing_is_counted_twice(kafka, mongo_db, mongo_uri, caplog, kafka_client):
    from streamkit import Pipeline

    caplog.set_level("INFO", logger="streamkit.kafka")
    topic = kafka.create_topic("rebalance", partitions=4)
    rng = random.Random(5)
    users = [f"u{rng.randrange(12)}" for _ in range(4000)]
    values = [orjson.dumps({"user_id": u, "n": i}) for i, u in enumerate(users)]
    group = unique("g")
    name = unique("p")
    a = Pipeline.from_dict(_config(name, kafka.bootstrap, topic, group, mongo_uri, mongo_db.name, kafka_client))
    b = Pipeline.from_dict(_config(name, kafka.bootstrap, topic, group, mongo_uri, mongo_db.name, kafka_client))
    out: dict = {}
    kafka.produce(topic, values[:2000], partition=lambda i: i % 4)
    ta = threading.Thread(target=_run, args=(a, out, "a"), daemon=True)
    ta.start()
    deadline = time.monotonic() + 30
    while (a.result is None or a.result.records_read < 2000) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert a.result.records_read == 2000 and a.result.flushes == 0  # all of it still in memory

    tb = threading.Thread(target=_run, args=(b, out, "b"), daemon=True)
    tb.start()
    # joining makes the first member flush and commit what it read before giving partitions up
    deadline = time.monotonic() + 60
    committed: dict = {}
    while time.monotonic() < deadline:
        committed = kafka.committed(group, topic)
        if sum(v or 0 for v in committed.values()) == 2000:
            break
        time.sleep(0.2)
    assert a.result.flushes >= 1, "no flush on revocation"
    assert sum(v or 0 for v in committed.values()) == 2000, committed

    kafka.produce(topic, values[2000:], partition=lambda i: i % 4)
    deadline = time.monotonic() + 60
    while a.result.records_read + b.result.records_read < len(values) and time.monotonic() < deadline:
        time.sleep(0.1)
    a.stop()
    b.stop()
    ta.join(30)
    tb.join(30)
    assert not isinstance(out.get("a"), BaseException), out.get("a")
    assert not isinstance(out.get("b"), BaseException), out.get("b")
    assert out["a"].records_read + out["b"].records_read == len(values)
    assert out["a"].records_read > 2000 and out["b"].records_read > 0  # both members did work

    docs = mongo_db["aggregations"].find({"aggregation": "per_user"})
    stored = {d["key"]["user_id"]: d["count"] for d in docs}
    assert stored == dict(Counter(users))
    assert kafka.committed(group, topic) == kafka.end_offsets(topic)
    revoked = [r.getMessage() for r in caplog.records if "being revoked" in r.getMessage()]
    assert revoked, "the first member never saw a revocation"
