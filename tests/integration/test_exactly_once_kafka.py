"""kill -9 a Kafka -> MongoDB pipeline at random moments; restart it until the topic is consumed;
every stored document must equal the truth computed in plain Python from what was produced.

Every group key gets records from every partition, so a document's parts from several
partitions meet in one flush and are fenced separately."""
from __future__ import annotations

import random

import orjson
import pytest

from conftest import unique
from processes import (consumed, kafka_source, kill_loop, make_events, offsets_state, pipeline, seed_for,
                       wait_for, write_yaml)
from truth import diff, stored, truth

pytestmark = pytest.mark.integration

AGGREGATIONS = [
    {"name": "per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "duration_per_type", "type": "sum", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "shortest", "type": "min", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "longest", "type": "max", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "per_type_10s", "type": "count", "group_by": ["interaction_type"], "window": 10},
    {"name": "duration_5s_every_2s", "type": "avg", "field": "duration_ms", "group_by": ["interaction_type"],
     "window": (5, 2)},
    {"name": "duration_10s_every_5s", "type": "sum", "field": "duration_ms", "group_by": ["item_id"],
     "window": (10, 5)},
    {"name": "shortest_7s_every_3s", "type": "min", "field": "duration_ms", "window": (7, 3)},
    {"name": "longest_10s", "type": "max", "field": "duration_ms", "group_by": ["interaction_type"], "window": 10},
]
PARTITIONS = 4


def check_exact(db, events: list[dict], seed: int, notes: list[str]) -> None:
    problem = diff(truth(events, AGGREGATIONS), stored(db["aggregations"], AGGREGATIONS))
    assert not problem, f"seed {seed}: stored documents differ from the truth\n{problem}\n" + "\n".join(notes)


def produce(kafka, topic: str, events: list[dict], rng: random.Random) -> dict[int, int]:
    """Send ``events`` to random partitions; returns the end offset of each partition."""
    parts = [rng.randrange(PARTITIONS) for _ in events]
    kafka.produce(topic, [orjson.dumps(e) for e in events], partition=lambda i: parts[i])
    return kafka.end_offsets(topic)


def test_kill9_kafka_exact(kafka, mongo_server, runs, tmp_path, kafka_client):
    seed = seed_for("test_kill9_kafka_exact")
    rng = random.Random(seed)
    topic = kafka.create_topic("crash", partitions=PARTITIONS)
    events = make_events(12_000, rng)
    ends = produce(kafka, topic, events, rng)
    name, database = unique("crash"), unique("crash")
    source = kafka_source(kafka.bootstrap, topic, unique("g"), instance="crash-0", client=kafka_client)  # a restart takes over at once
    config = write_yaml(tmp_path / "pipeline.yaml",
                        pipeline(name, source, mongo_server.uri, database, AGGREGATIONS,
                                 {"max_records": 1000, "interval": "0.5s"}))
    client = mongo_server.client()
    db = client[database]
    epochs = [0]

    def ready() -> bool:  # a new epoch on a partition: this start took the partitions
        top = max((s[2] or 0 for s in offsets_state(db, name).values()), default=0)
        if top > epochs[0]:
            epochs[0] = top
            return True
        return False

    notes = kill_loop(lambda: runs.start(config, "streamkit"), rng, kills=5, low=0.0, high=1.0,
                      open_intents=lambda: {p: s[1] for p, s in offsets_state(db, name).items() if s[1]},
                      progress=(lambda: sum(s[0] or 0 for s in offsets_state(db, name).values()),
                                sum(ends.values())),
                      after_kill=lambda: f"offsets {offsets_state(db, name)}", until_killed=True, ready=ready)
    last = runs.start(config, "streamkit")
    wait_for("the last start to take the partitions", lambda: ready() or not last.alive(), 60)
    wait_for("the topic to be consumed", lambda: consumed(db, name, topic, ends) or not last.alive(), 120)
    last.terminate()
    code = last.wait(30)
    notes.append(f"last start: exit {code}")
    print("\n".join(notes))
    assert code == 0, last.tail()
    check_exact(db, events, seed, notes)
    client.close()
