"""What the two client libraries must do alike that no pipeline-level test shows: where a group
without committed offsets starts (``start:``), and the consumer lag the dashboard reads."""
from __future__ import annotations

import time

import orjson
import pytest

from conftest import unique

pytestmark = pytest.mark.integration


class Hooks:
    """The engine's side of a source: positions to resume from (``resume``) and rebalance calls."""

    def __init__(self, resume: dict | None = None) -> None:
        self.assigned_calls: list[list[str]] = []
        self.resume = resume or {}

    def assigned(self, names):
        self.assigned_calls.append(list(names))
        return {n: p for n, p in self.resume.items() if n in names}

    def revoking(self, names):
        pass

    def lost(self, names):
        pass


def _source(kafka, topic: str, client: str, start: str, resume: dict | None = None):
    from streamkit import Context, Pipeline
    p = Pipeline.from_dict({"source": {"type": "kafka", "client": client, "bootstrap_servers": kafka.bootstrap,
                                       "topic": topic, "group_id": unique("g"), "start": start,
                                       "connect_timeout": "10s", "max_poll_records": 40},
                            "aggregations": [{"name": "c", "type": "count"}], "sinks": [{"type": "discard"}]})
    source = p.spec.source.cls(p.spec.source.options, Context(None, "source"))
    assert source.client == client
    hooks = Hooks(resume)
    source.open(hooks)
    return source, hooks


def _read(source, until, timeout: float = 30) -> list:
    """Poll until ``until(records)``; the (partition, position, value) of every record read."""
    got: list = []
    deadline = time.monotonic() + timeout
    while not until(got):
        assert time.monotonic() < deadline, f"read {len(got)} records in {timeout}s"
        for b in source.poll(0.2):
            got += [(b.partition, b.position(i), v) for i, v in enumerate(b.records)]
    return got


def _lag(source, expected: dict, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while (lag := source.lag()) != expected and time.monotonic() < deadline:
        time.sleep(0.3)
    return lag


def test_start_latest_skips_what_was_there_and_lag_counts_what_is_unread(kafka, kafka_client):
    topic = kafka.create_topic("start", partitions=2)
    old = [orjson.dumps({"n": i}) for i in range(30)]
    kafka.produce(topic, old, partition=lambda i: i % 2)
    source, hooks = _source(kafka, topic, kafka_client, "latest")
    try:
        _read(source, lambda got: bool(hooks.assigned_calls), 30)  # joined the group
        assert hooks.assigned_calls[-1] == [f"{topic}/0", f"{topic}/1"]
        assert _lag(source, {f"{topic}/0": 0, f"{topic}/1": 0}) == {f"{topic}/0": 0, f"{topic}/1": 0}
        source.poll(1.0)  # the client looks the end offsets up after the assignment: let it
        new = [orjson.dumps({"n": i}) for i in range(30, 130)]
        kafka.produce(topic, new, partition=lambda i: i % 2)
        got = _read(source, lambda got: len(got) >= len(new))
        assert sorted(v for _, _, v in got) == sorted(new)  # nothing of what was there before the start
        assert {(p, pos) for p, pos, _ in got} == {(f"{topic}/{i % 2}", 15 + i // 2) for i in range(len(new))}
        assert _lag(source, {f"{topic}/0": 0, f"{topic}/1": 0}) == {f"{topic}/0": 0, f"{topic}/1": 0}
        more = [orjson.dumps({"n": i}) for i in range(7)]
        kafka.produce(topic, more, partition=0)
        time.sleep(1.1)  # past the source's one-second cache of the lag
        assert _lag(source, {f"{topic}/0": 7, f"{topic}/1": 0}) == {f"{topic}/0": 7, f"{topic}/1": 0}
    finally:
        source.close()


def test_start_earliest_reads_everything_once(kafka, kafka_client):
    topic = kafka.create_topic("start", partitions=2)
    values = [orjson.dumps({"n": i}) for i in range(100)]
    placed = kafka.produce(topic, values, partition=lambda i: i % 2)
    source, _ = _source(kafka, topic, kafka_client, "earliest")
    try:
        got = _read(source, lambda got: len(got) >= len(values))
        assert sorted((p, pos) for p, pos, _ in got) == sorted((f"{topic}/{p}", o) for p, o in placed)
        assert sorted(v for _, _, v in got) == sorted(values)
        assert _lag(source, {f"{topic}/0": 0, f"{topic}/1": 0}) == {f"{topic}/0": 0, f"{topic}/1": 0}
    finally:
        source.close()


def test_reading_resumes_where_the_sinks_stored_positions_say(kafka, kafka_client):
    """On assignment the source seeks to the positions an exactly-once sink stored, not the
    group's committed offsets (none here: ``start: earliest`` would begin at 0)."""
    topic = kafka.create_topic("resume", partitions=2)
    values = [orjson.dumps({"n": i}) for i in range(60)]
    kafka.produce(topic, values, partition=lambda i: i % 2)
    source, _ = _source(kafka, topic, kafka_client, "earliest", resume={f"{topic}/0": 10, f"{topic}/1": 25})
    try:
        got = _read(source, lambda got: len(got) >= 20 + 5)
        firsts = {p: min(pos for q, pos, _ in got if q == p) for p, _, _ in got}
        assert firsts == {f"{topic}/0": 10, f"{topic}/1": 25}
        assert len(got) == 25 and _lag(source, {f"{topic}/0": 0, f"{topic}/1": 0}) == {f"{topic}/0": 0,
                                                                                      f"{topic}/1": 0}
    finally:
        source.close()


def test_a_message_the_broker_refuses_fails_the_write_in_one_line(kafka, kafka_client):
    """A write returns only once every message was acknowledged; one refused (larger than the
    client's or the broker's limit) fails it with one line naming how many, the others still land."""
    from streamkit_kafka.client import KafkaUnavailable
    from streamkit_kafka.producer import DurableProducer

    topic = kafka.create_topic("refused")
    options = {"bootstrap_servers": [kafka.bootstrap], "connect_timeout": 10.0, "client": kafka_client}
    producer = DurableProducer("sinks[0]", options, delivery_timeout=60)
    try:
        handles = [producer.send(topic, value=b"x" * 2_000_000), producer.send(topic, value=b"ok")]
        with pytest.raises(KafkaUnavailable, match=r"^sinks\[0\]: Kafka refused 1 of 2 messages \(.*(?i:too ?large)"):
            producer.wait(handles)
        producer.wait([producer.send(topic, value=b"next", headers=[("h", b"1")])])  # the producer goes on
    finally:
        producer.close()
    assert [(m.value, m.headers) for m in kafka.read_all(topic)] == [(b"ok", []), (b"next", [("h", b"1")])]
