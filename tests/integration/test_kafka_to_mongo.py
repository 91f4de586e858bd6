"""Kafka -> streamkit -> MongoDB on the real servers: exact aggregates, dead letters in the
dead-letter topic, and a MongoDB outage in the middle of a run."""
from __future__ import annotations

import datetime as dt
import random
import threading
import time

import orjson
import pytest

from conftest import unique
from truth import as_pipeline, stored as reference_stored, truth as reference_truth

pytestmark = pytest.mark.integration

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z

AGGREGATIONS = [
    {"name": "interactions_per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "interactions_per_item", "type": "count", "group_by": ["item_id"]},
    {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "interactions_per_type", "type": "count", "group_by": ["interaction_type"], "window": 60},
]


def make_events(n: int, seed: int, users: int = 25, items: int = 8) -> list[dict]:
    """Good events; durations are whole or half numbers so every sum is exact in any order."""
    rng = random.Random(seed)
    user_ids = [f"u{i}" for i in range(users)] + ["$where", "a.b"]  # operators and paths are data
    out = []
    for _ in range(n):
        ts = T0 + rng.uniform(0, 300)
        out.append({"user_id": rng.choice(user_ids), "item_id": f"i{rng.randrange(items)}",
                    "interaction_type": rng.choice(["view", "click", "like", "share"]),
                    "timestamp": round(ts, 3) if rng.random() < 0.8 else
                    dt.datetime.fromtimestamp(int(ts), dt.timezone.utc).isoformat().replace("+00:00", "Z"),
                    "duration_ms": rng.randint(1, 3000) + (0.5 if rng.random() < 0.1 else 0)})
    return out


MALFORMED: list[tuple[bytes | None, str]] = [
    (b'{"user_id": "u1", "item_id": "i1", "interaction_type": "view", "timestamp": 1767225601',
     "invalid JSON"),
    (b'not json at all', "invalid JSON"),
    (b'{"item_id": "i2", "interaction_type": "click", "timestamp": 1767225602, "duration_ms": 5}',
     "missing field 'user_id'"),
    (b'{"user_id": "u2", "item_id": "i3", "interaction_type": "like", "timestamp": 1767225603, '
     b'"duration_ms": "n/a"}', "is not a number"),
    (b'{"user_id": "u3", "item_id": "i3", "interaction_type": "like", "timestamp": 1767225604, '
     b'"duration_ms": null}', "null"),
    (b'{"user_id": ["u4"], "item_id": "i4", "interaction_type": "view", "timestamp": 1767225605, '
     b'"duration_ms": 7}', "user_id"),
    (b'[1, 2, 3]', "not a JSON object"),
    (None, "invalid JSON"),  # a null value (tombstone)
]


def truth(events: list[dict]) -> dict:
    return reference_truth(events, AGGREGATIONS)


def stored(collection) -> dict:
    return reference_stored(collection, AGGREGATIONS)


def pipeline_config(name: str, bootstrap: str, topic: str, uri: str, database: str, client: str = "auto",
                    **sink: object) -> dict:
    return {
        "name": name,
        "source": {"type": "kafka", "client": client, "bootstrap_servers": bootstrap, "topic": topic,
                   "group_id": unique("g"), "connect_timeout": "10s"},
        "aggregations": as_pipeline(AGGREGATIONS),
        "sinks": [{"type": "mongodb", "uri": uri, "database": database, "collection": "aggregations",
                   **sink}],
        "dead_letter": {"type": "kafka"},
        "flush": {"interval": "300ms", "max_records": 400},
    }


def test_kafka_to_mongo_exact_with_dead_letters(kafka, mongo_db, mongo_uri, kafka_client):
    from streamkit import Pipeline

    topic = kafka.create_topic("interactions", partitions=2)
    rng = random.Random(3)
    good = make_events(1500, seed=3)
    values: list[bytes | None] = [orjson.dumps(e) for e in good]
    bad_at = sorted(rng.sample(range(len(values) + len(MALFORMED)), len(MALFORMED)))
    for pos, (raw, _) in zip(bad_at, MALFORMED):
        values.insert(pos, raw)
    keys = [b"tombstone" if v is None else None for v in values]  # Kafka wants a key or a value
    placed = kafka.produce(topic, values, partition=lambda i: i % 2, keys=keys)
    expect_dead = {placed[pos]: (raw, why) for pos, (raw, why) in zip(bad_at, MALFORMED)}

    config = pipeline_config(unique("p"), kafka.bootstrap, topic, mongo_uri, mongo_db.name, kafka_client)
    result = Pipeline.from_dict(config).run(max_events=len(values))

    assert result.records_read == len(values)
    assert result.dead_letters == len(MALFORMED)
    assert result.records_aggregated == len(good)
    assert stored(mongo_db["aggregations"]) == truth(good)

    letters = kafka.read_all(f"{topic}.dlq")
    got = {}
    for m in letters:
        h = {k: v.decode() for k, v in m.headers}
        assert h["source_topic"] == topic
        got[(int(h["source_partition"]), int(h["source_offset"]))] = (m.value, h["reason"])
    assert len(letters) == len(MALFORMED) and got.keys() == expect_dead.keys()
    for where, (raw, why) in expect_dead.items():
        assert got[where][0] == raw, where
        assert why in got[where][1], (where, got[where][1])

    ends = kafka.end_offsets(topic)
    assert kafka.committed(config["source"]["group_id"], topic) == ends
    assert sum(ends.values()) == len(values)


def test_mongodb_outage_mid_run_loses_nothing(kafka, private_mongo, caplog):
    """SecantusDB stopped for a few seconds while records keep arriving: the sink retries,
    the run continues when it is back, and the final aggregates miss no record."""
    from streamkit import Pipeline

    topic = kafka.create_topic("outage", partitions=2)
    events = make_events(2400, seed=11, users=15, items=5)
    values = [orjson.dumps(e) for e in events]
    third = len(values) // 3
    database = unique("outage")
    config = pipeline_config(unique("p"), kafka.bootstrap, topic, private_mongo.uri, database,
                             connect_timeout="1s", retry_backoff_max="500ms")
    pipeline = Pipeline.from_dict(config)
    done: dict = {}
    runner = threading.Thread(target=lambda: done.update(result=pipeline.run(max_events=len(values))),
                              daemon=True)

    kafka.produce(topic, values[:third], partition=lambda i: i % 2)
    runner.start()
    deadline = time.monotonic() + 60
    while (pipeline.result is None or pipeline.result.flushes == 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pipeline.result is not None and pipeline.result.flushes > 0, "no flush before the outage"

    private_mongo.stop()
    down_flushes = pipeline.result.flushes
    kafka.produce(topic, values[third:2 * third], partition=lambda i: i % 2)
    time.sleep(4)
    assert runner.is_alive(), f"the run stopped while MongoDB was down: {done}"
    stalled = pipeline.result.flushes
    private_mongo.start()
    kafka.produce(topic, values[2 * third:], partition=lambda i: i % 2)
    runner.join(90)
    assert not runner.is_alive(), "the run did not finish after MongoDB came back"

    result = done["result"]
    logged = [r.getMessage() for r in caplog.records if r.name == "streamkit.mongodb"]
    assert any("unreachable" in m for m in logged) and any("is back" in m for m in logged), logged
    assert stalled <= down_flushes + 1  # at most the flush in flight when the server went away
    assert result.records_read == len(values) and result.dead_letters == 0
    client = private_mongo.client()
    try:
        assert stored(client[database]["aggregations"]) == truth(events)
    finally:
        client.close()
    assert kafka.committed(config["source"]["group_id"], topic) == kafka.end_offsets(topic)
