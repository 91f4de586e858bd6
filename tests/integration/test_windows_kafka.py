"""Windows that close on a Kafka topic: kill -9 in the middle, partitions that fall silent, and
`emit: final` to a Kafka topic, against the real broker and MongoDB-wire server.

Two partitions of events (every 7th of each partition 2.5 s late); the pipeline counts per type
in 1 s windows with a 0.5 s lateness into MongoDB and emits each closed window to a topic. It is
killed with -9 once some windows were final and emitted, then started again. When the topic has
no more records the partitions go idle (1 s) and the last windows close with the wall clock.
Then: the stored values and the final windows are those of one pass (tests/truth.py
``closing_truth``), and the emitted topic, de-duplicated by message key (the window's id), holds
exactly the final windows with their final values (emitting is at least once).
"""
from __future__ import annotations

import orjson
import pytest

from conftest import unique
from processes import dealt, kafka_source, pipeline, wait_for, write_yaml
from truth import closing_truth, diff, finals, stored

pytestmark = pytest.mark.integration

AGGREGATIONS = [
    {"name": "per_type_1s", "type": "count", "group_by": ["interaction_type"], "window": 1, "lateness": 0.5},
]


def test_kafka_windows_close_exactly_across_a_kill_and_emit_each_once_by_key(kafka, mongo_uri, mongo_db, runs,
                                                                            tmp_path):
    topic = kafka.create_topic("closing", partitions=2)
    out = kafka.create_topic("closed", partitions=1)
    parts = dealt(4000, 23, 2, lag_every=7)
    for i, p in enumerate(sorted(parts)):
        kafka.produce(topic, [orjson.dumps(r) for r in parts[p]], partition=i)
    name = unique("kclose")
    cfg = pipeline(name, kafka_source(kafka.bootstrap, topic, name), mongo_uri, mongo_db.name, AGGREGATIONS,
                   {"interval": "0.2s", "max_records": 400})
    cfg["source"]["max_poll_records"] = 200
    cfg["idle_timeout"] = "1s"
    cfg["sinks"].append({"type": "kafka", "bootstrap_servers": kafka.bootstrap, "topic": out, "emit": "final"})
    config = write_yaml(tmp_path / "p.yaml", cfg)
    coll = mongo_db["aggregations"]
    # the input, as the source's partitions name it
    by_partition = {f"{topic}/{i}": parts[p] for i, p in enumerate(sorted(parts))}
    expected, closed, late = closing_truth(by_partition, AGGREGATIONS)
    assert late["per_type_1s"] > 0

    first = runs.start(config)
    wait_for("some windows final", lambda: coll.count_documents({"final": True}) >= 10, 120)
    first.kill9()
    first.wait(10)
    final_before = {d["_id"]: d for d in coll.find({"final": True}, {"updated_at": 0})}
    assert len(final_before) < len(closed), "every window was final before the kill: it came too late"

    second = runs.start(config, "second")
    wait_for("every window final", lambda: finals(coll) == closed, 120)
    second.terminate()
    assert second.wait(60) == 0, second.tail()

    problem = diff(expected, stored(coll, AGGREGATIONS))
    assert not problem, problem
    for _id, doc in final_before.items():
        assert coll.find_one({"_id": _id}, {"updated_at": 0}) == doc, f"final window {_id} changed"
    messages = kafka.read_all(out)
    by_key: dict = {}
    for m in messages:
        value = orjson.loads(m.value)
        assert m.key.decode() == value["id"]
        assert by_key.setdefault(m.key, value) == value, "one window emitted with two different values"
    docs = {d["_id"]: d for d in coll.find({"final": True})}
    assert {k.decode() for k in by_key} == set(docs)
    assert all(v["values"] == {"count": docs[v["id"]]["count"]} for v in by_key.values())
    print(f"{len(messages)} messages for {len(by_key)} windows ({len(messages) - len(by_key)} repeated)")
