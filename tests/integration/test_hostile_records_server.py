"""Hostile records against the real MongoDB-wire server: the generated streams of
tests/test_hostile_records.py, sums that leave int64 in the store, and a stream full of poison
pills killed with -9 and restarted until consumed."""
from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from conftest import unique
from processes import (consumed, kafka_source, kill_loop, offsets_state, pipeline, seed_for, wait_for,
                       write_yaml)
from test_hostile_records import (JUNK, _raw, aggregation_sets, capture_dead_letters, check_run,  # noqa: F401
                                  records, streams)
from truth import hostile_truth

pytestmark = pytest.mark.integration


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(partitions=streams, aggs=aggregation_sets, batch=st.integers(1, 12), max_records=st.integers(1, 40),
       key_bytes=st.sampled_from([1024, 16]))
@example(partitions={"t/0": [b'{"k": 9223372036854775807, "v": 0}', b'{"k": 1, "v": 1}', b'{"k": true, "v": 2}',
                            b'{"k": 1.0, "v": 3}', b'{"k": "1", "v": 2}', b'{"k": "a", "v": 4611686018427387904}',
                            b'{"k": "a", "v": 4611686018427387904}', b'{"k": "a", "v": 18446744073709551615}']},
         aggs=[{"name": "count_k", "type": "count", "group_by": ["k"]},
               {"name": "sum_v", "type": "sum", "field": "v"}], batch=1, max_records=2, key_bytes=1024)
def test_hostile_streams_on_the_real_server(mongo_uri, capture_dead_letters, partitions, aggs, batch,
                                           max_records, key_bytes):
    check_run(partitions, aggs, batch, max_records, key_bytes, mongo_uri, capture_dead_letters)


def test_a_sum_that_leaves_int64_in_the_store_becomes_a_double_on_the_real_server(mongo_uri, test_plugins):
    from streamkit import Pipeline
    from streamkit_mongodb import connect
    database = unique("int64")
    recs = [{"v": 2 ** 62}, {"v": 2 ** 62 - 1}, {"v": 1}, {"v": 2 ** 62}, {"v": 2 ** 62}]
    # flushes of two records: 2**63 - 1 stays an int64; + 1 leaves it in the store ($add: a double);
    # 2**62 + 2**62 leaves it within a flush (the sink sends a double)
    p = Pipeline.from_dict({"name": database, "source": {"type": "list", "partitions": {"p/0": recs},
                                                         "batch": 1, "decoded": True},
                            "aggregations": [{"name": "s", "type": "sum", "field": "v"}],
                            "sinks": [{"type": "mongodb", "uri": mongo_uri, "database": database}],
                            "flush": {"interval": "1h", "max_records": 2}})
    client = connect(mongo_uri)
    coll = client[database]["aggregations"]
    try:
        p.run()
        (doc,) = list(coll.find({}))
        assert type(doc["sum"]) is float and doc["sum"] == float(2 ** 63 + 2 ** 63)
    finally:
        client.drop_database(database)
        client.close()


def _stream(rng: random.Random, n: int) -> list[bytes]:
    """Good interaction records with every hostile class mixed in (about one in five)."""
    hostile = [_raw({"user_id": 18446744073709551615, "duration_ms": 1, "timestamp": 1767225600}),
               _raw({"user_id": "u1", "duration_ms": 2 ** 64, "timestamp": 1767225600}),
               _raw({"user_id": "u1", "duration_ms": 1, "timestamp": "9999-12-31T23:59:59-01:00"}),
               _raw({"user_id": "u1", "duration_ms": 1, "timestamp": 1e20}),
               _raw({"user_id": "x" * 5000, "duration_ms": 1, "timestamp": 1767225600}),
               _raw({"user_id": "u1", "duration_ms": True, "timestamp": 1767225600}),
               _raw({"user_id": "u1", "duration_ms": "5", "timestamp": 1767225600}),
               *JUNK]
    out = []
    for i in range(n):
        if rng.random() < 0.2:
            out.append(rng.choice(hostile))
        else:
            user = rng.choice(["u1", "u2", 1, 1.0, True, "1", "$where", "a.b"])
            out.append(_raw({"user_id": user, "duration_ms": rng.choice([1, 2 ** 62, -(2 ** 62), 7, 2.5]),
                             "timestamp": 1767225600 + rng.randrange(600)}))
    return out


AGGS = [{"name": "per_user", "type": "count", "group_by": ["user_id"]},
        {"name": "dur_user", "type": "sum", "field": "duration_ms", "group_by": ["user_id"]},
        {"name": "avg_1m", "type": "avg", "field": "duration_ms", "window": 60},
        {"name": "max_user", "type": "max", "field": "duration_ms", "group_by": ["user_id"]}]


def test_poison_pills_then_kill9_and_restart_store_every_good_record_once(kafka, mongo_server, runs,
                                                                         tmp_path):
    seed = seed_for("test_poison_pills_then_kill9_and_restart_store_every_good_record_once")
    rng = random.Random(seed)
    topic = kafka.create_topic("poison", partitions=2)
    values = _stream(rng, 6000)
    where = kafka.produce(topic, values, partition=lambda i: i % 2)
    ends = kafka.end_offsets(topic)
    name, database = unique("poison"), unique("poison")
    source = {**kafka_source(kafka.bootstrap, topic, unique("g"), instance=unique("poison")), "max_poll_records": 50}
    config = pipeline(name, source, mongo_server.uri, database, AGGS, {"max_records": 100, "interval": "0.2s"})
    dead = tmp_path / "dead.jsonl"
    config["dead_letter"] = {"type": "jsonl", "path": str(dead)}
    yaml_file = write_yaml(tmp_path / "pipeline.yaml", config)
    client = mongo_server.client()
    db = client[database]
    epochs = [0]

    def ready() -> bool:  # a new epoch on a partition: this start took the partitions
        top = max((s[2] or 0 for s in offsets_state(db, name).values()), default=0)
        if top > epochs[0]:
            epochs[0] = top
            return True
        return False

    killed_at: list[dict] = []

    def after_kill() -> str:
        killed_at.append(offsets_state(db, name))
        return f"offsets {killed_at[-1]}"

    notes = kill_loop(lambda: runs.start(yaml_file, "streamkit"), rng, kills=3, low=0.2, high=1.0,
                      open_intents=lambda: {p: s[1] for p, s in offsets_state(db, name).items() if s[1]},
                      after_kill=after_kill, until_killed=True, ready=ready)
    # the test means something only if a kill landed before the poisoned stream was consumed
    assert any((state.get(f"{topic}/{p}", (None,))[0] or 0) < end
               for state in killed_at for p, end in ends.items()), notes
    last = runs.start(yaml_file, "streamkit")
    wait_for("the last start to take the partitions", lambda: ready() or not last.alive(), 60)
    wait_for("the topic to be consumed", lambda: consumed(db, name, topic, ends) or not last.alive(), 180)
    last.terminate()
    code = last.wait(30)
    notes.append(f"last start: exit {code}")
    print("\n".join(notes))
    assert code == 0, last.tail() + "\n" + "\n".join(notes)
    parts = {f"{topic}/{p}": [] for p in range(2)}
    for value, (p, offset) in zip(values, where):
        parts[f"{topic}/{p}"].append((offset, value))
    partitions = {p: [v for _, v in sorted(vs)] for p, vs in parts.items()}
    want, bad = hostile_truth(partitions, AGGS)
    from test_hostile_records import _stored
    got = _stored(db["aggregations"])
    assert set(got) == set(want), notes
    for k, fields in want.items():
        for f, (value, tol) in fields.items():
            assert abs(got[k][f] - value) <= tol + abs(value) * 1e-12, (k, f, got[k][f], value, notes)
    # dead letters are at least once: every bad record is there, with a reason, and nothing else
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    assert {(d["partition"], d["position"]) for d in letters} == bad
    assert all(d["reason"] for d in letters)
    client.close()
