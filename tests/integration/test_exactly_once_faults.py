"""SIGTERM, a MongoDB server stopped and started again, and a Kafka broker stopped and started
again, each in the middle of a run: exact documents every time.

The servers that are stopped here are the tests' own (a SecantusDB and a Kafka broker started
for this module), so no other test notices."""
from __future__ import annotations

import random
import time

import orjson
import pytest

from conftest import Kafka, unique
from processes import (consumed, generator_records, kafka_source, make_events, offsets_state, pipeline,
                       seed_for, wait_for, write_yaml)
from truth import diff, stored, truth

pytestmark = pytest.mark.integration

AGGREGATIONS = [
    {"name": "per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "shortest", "type": "min", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "longest", "type": "max", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "per_type_2s", "type": "count", "group_by": ["interaction_type"], "window": 2},
    {"name": "duration_5s_every_2s", "type": "avg", "field": "duration_ms", "group_by": ["interaction_type"],
     "window": (5, 2)},
    {"name": "duration_per_type_3s", "type": "sum", "field": "duration_ms", "group_by": ["interaction_type"],
     "window": 3},
]


def _generator_pipeline(name: str, uri: str, database: str, source: dict) -> dict:
    return pipeline(name, {"type": "generator", **source}, uri, database, AGGREGATIONS,
                    {"max_records": 1000, "interval": "0.3s"})


def _exact_prefix(db, source: dict, n: int, seed: int, notes: list[str]) -> None:
    expected = truth(generator_records(source, n), AGGREGATIONS)
    problem = diff(expected, stored(db["aggregations"], AGGREGATIONS))
    assert not problem, (f"seed {seed}: documents differ from the truth of the first {n:,} records\n"
                         f"{problem}\n" + "\n".join(notes))


def test_sigterm_is_graceful_and_exact(mongo_server, runs, tmp_path):
    """SIGTERM at random moments: exit 0 within a few seconds, nothing unfinished, the documents
    exactly the first N records where N is the stored position; then the run continues to the end."""
    seed = seed_for("test_sigterm_is_graceful_and_exact")
    rng = random.Random(seed)
    n = 20_000
    source = {"seed": rng.randrange(10**6), "users": 200, "items": 30, "rate": 4000, "max_records": n}
    name = database = unique("sigterm")
    config = write_yaml(tmp_path / "p.yaml", _generator_pipeline(name, mongo_server.uri, database, source))
    client = mongo_server.client()
    db = client[database]
    notes: list[str] = []
    for i in range(3):
        run = runs.start(config, "streamkit")
        time.sleep(rng.uniform(0.8, 1.6))
        assert run.alive(), run.tail()
        run.terminate()
        t = time.monotonic()
        code = run.wait(15)
        took = time.monotonic() - t
        position, intent, _ = offsets_state(db, name)["generator/0"]
        notes.append(f"SIGTERM {i + 1}: exit {code} after {took:.2f}s at {position}, intent {intent}")
        assert code == 0, run.tail()
        assert took < 5, f"seed {seed}: stopping took {took:.1f}s\n" + "\n".join(notes)
        assert intent is None, notes
        _exact_prefix(db, source, position, seed, notes)
    run = runs.start(config, "streamkit")
    assert run.wait(60) == 0, run.tail()
    print("\n".join(notes))
    _exact_prefix(db, source, n, seed, notes)
    client.close()


def test_mongodb_stopped_and_started_mid_run(mongo_server, runs, tmp_path):
    """The server goes away twice in the middle of a run (the second time streamkit is also
    killed -9 while it waits): the run retries, finishes, and the documents are exact."""
    seed = seed_for("test_mongodb_stopped_and_started_mid_run")
    rng = random.Random(seed)
    n = 12_000
    source = {"seed": rng.randrange(10**6), "users": 200, "items": 30, "rate": 4000, "max_records": n}
    name = database = unique("mongodown")
    config = write_yaml(tmp_path / "p.yaml", _generator_pipeline(name, mongo_server.uri, database, source))
    client = mongo_server.client()
    db = client[database]
    notes: list[str] = []
    run = runs.start(config, "streamkit")
    wait_for("a first flush", lambda: (offsets_state(db, name).get("generator/0") or (None,))[0], 30)
    time.sleep(rng.uniform(0.0, 1.0))
    mongo_server.stop()
    notes.append("server stopped")
    time.sleep(rng.uniform(1.0, 3.0))
    assert run.alive(), "streamkit gave up while MongoDB was down:\n" + run.tail()
    mongo_server.start()
    notes.append("server started")
    wait_for("progress after the restart", lambda: (offsets_state(db, name)["generator/0"][0] or 0) > 3000
             or not run.alive(), 60)
    mongo_server.stop()
    assert run.alive(), "the run ended before the kill:\n" + run.tail()
    run.kill9()
    notes.append("server stopped, streamkit killed -9")
    mongo_server.start()
    run = runs.start(config, "streamkit")
    code = run.wait(60)
    notes.append(f"last start: exit {code}")
    assert code == 0, run.tail()
    print("\n".join(notes))
    _exact_prefix(db, source, n, seed, notes)
    assert offsets_state(db, name)["generator/0"][:2] == (n, None)
    client.close()


def test_kafka_broker_stopped_and_started_mid_run(private_kafka, mongo_server, runs, tmp_path, kafka_client):
    """The broker stops in the middle of a run and starts again on its data: the pipeline waits,
    resumes, and the documents are exact."""
    seed = seed_for("test_kafka_broker_stopped_and_started_mid_run")
    rng = random.Random(seed)
    kafka = Kafka(private_kafka.bootstrap)
    try:
        topic = kafka.create_topic("restart", partitions=3)
        events = make_events(8_000, rng)
        parts = [rng.randrange(3) for _ in events]
        kafka.produce(topic, [orjson.dumps(e) for e in events], partition=lambda i: parts[i])
        ends = kafka.end_offsets(topic)
    finally:
        kafka.created.clear()  # kept: the broker and its topics go with the module
        kafka.close()
    name, database = unique("kafkadown"), unique("kafkadown")
    cfg = pipeline(name, kafka_source(private_kafka.bootstrap, topic, unique("g"), client=kafka_client), mongo_server.uri,
                   database, AGGREGATIONS, {"max_records": 500, "interval": "0.3s"})
    config = write_yaml(tmp_path / "p.yaml", cfg)
    client = mongo_server.client()
    db = client[database]
    run = runs.start(config, "streamkit")
    wait_for("a first flush", lambda: any(s[0] for s in offsets_state(db, name).values()), 60)
    time.sleep(rng.uniform(0.0, 1.0))
    t0 = time.monotonic()
    private_kafka.stop()
    before = offsets_state(db, name)
    notes = [f"broker stopped after {time.monotonic() - t0:.1f}s at {before}"]
    time.sleep(rng.uniform(1.0, 3.0))
    private_kafka.start()
    notes.append(f"broker started at {time.monotonic() - t0:.1f}s")
    assert run.alive(), "streamkit gave up while Kafka was down:\n" + run.tail()
    wait_for("the topic to be consumed", lambda: consumed(db, name, topic, ends) or not run.alive(), 120)
    notes.append(f"topic consumed at {time.monotonic() - t0:.1f}s")
    print("\n".join(notes))
    run.terminate()
    code = run.wait(30)
    assert code == 0, run.tail()
    problem = diff(truth(events, AGGREGATIONS), stored(db["aggregations"], AGGREGATIONS))
    assert not problem, f"seed {seed}: documents differ from the truth\n{problem}\nat the stop: {before}"
    client.close()
