"""The kafka plugin's parts that need no broker: options, the sink's and dead-letter topic's
messages (through a stand-in producer), and which offsets the source commits."""
from __future__ import annotations

from collections import Counter

import orjson
import pytest

from streamkit import ConfigError, Pipeline

import streamkit_kafka.dead_letters as dead_letters_mod
import streamkit_kafka.sink as sink_mod
from streamkit_kafka.source import KafkaSource

# kafka-python 3 loads its protocol schemas with a deprecated importlib call
pytestmark = pytest.mark.filterwarnings("ignore:.*is deprecated. Use files:DeprecationWarning")


class FakeProducer:
    """Stands in for DurableProducer: records what would be sent, and checks that each write waits
    for exactly the messages it sent."""

    sent: list = []
    unwaited: list = []  # futures of messages sent and not yet waited for

    def __init__(self, what: str, options: dict, **settings) -> None:
        self.options = options
        self.settings = settings
        FakeProducer.sent = []
        FakeProducer.unwaited = []

    def send(self, topic, value=None, key=None, headers=None, partition=None):
        FakeProducer.sent.append({"topic": topic, "value": value, "key": key, "headers": headers})
        future = object()
        FakeProducer.unwaited.append(future)
        return future

    def wait(self, futures) -> None:
        assert futures == FakeProducer.unwaited, "a write must wait for every message it sent, and only those"
        FakeProducer.unwaited = []

    def close(self) -> None:
        pass


@pytest.fixture
def fake_producer(monkeypatch):
    monkeypatch.setattr(sink_mod, "DurableProducer", FakeProducer)
    monkeypatch.setattr(dead_letters_mod, "DurableProducer", FakeProducer)
    yield FakeProducer
    assert FakeProducer.unwaited == [], f"{len(FakeProducer.unwaited)} messages sent and never waited for"


def _generator(n: int, **extra) -> dict:
    return {"type": "generator", "seed": 7, "users": 20, "items": 5, "rate": 0, "max_records": n, **extra}


def test_source_options_validate():
    p = Pipeline.from_dict({"source": {"type": "kafka", "topic": "a", "bootstrap_servers": "h1:9092,h2"},
                            "aggregations": [{"name": "c", "type": "count"}], "sinks": [{"type": "discard"}]})
    opts = p.spec.source.options
    assert opts["topic"] == ["a"] and opts["start"] == "earliest" and opts["connect_timeout"] == 30.0
    with pytest.raises(ConfigError, match=r"source.start: expected one of earliest, latest"):
        Pipeline.from_dict({"source": {"type": "kafka", "topic": "a", "start": "beginning"},
                            "aggregations": [{"name": "c", "type": "count"}], "sinks": [{"type": "discard"}]})
    with pytest.raises(ConfigError, match=r"source.topic: missing required option"):
        Pipeline.from_dict({"source": {"type": "kafka"}, "aggregations": [{"name": "c", "type": "count"}],
                            "sinks": [{"type": "discard"}]})


def test_sink_takes_records_only_when_asked():
    with pytest.raises(ConfigError, match="nothing would be written"):
        Pipeline.from_dict({"source": _generator(10),
                            "sinks": [{"type": "kafka", "topic": "t", "what": "aggregates"}]})
    Pipeline.from_dict({"source": _generator(10), "sinks": [{"type": "kafka", "topic": "t"}]})


def test_sink_sends_each_record_keyed_by_user(fake_producer):
    n = 2500
    p = Pipeline.from_dict({"source": _generator(n), "sinks": [{"type": "kafka", "topic": "out"}],
                            "flush": {"max_records": 1000}})
    r = p.run()
    assert r.records_read == n
    spec = p.spec.source
    expected = spec.cls(spec.options, None).records(0, n)
    assert [orjson.loads(m["value"]) for m in fake_producer.sent] == expected
    assert [m["key"] for m in fake_producer.sent] == [e["user_id"].encode() for e in expected]
    assert {m["topic"] for m in fake_producer.sent} == {"out"}


def test_sink_sends_aggregate_deltas(fake_producer):
    n = 3000
    p = Pipeline.from_dict({"source": _generator(n),
                            "aggregations": [{"name": "per_user", "type": "count", "group_by": ["user_id"]}],
                            "sinks": [{"type": "kafka", "topic": "agg", "what": "aggregates",
                                       "key_field": "user_id"}],
                            "flush": {"max_records": 1000}})
    p.run()
    spec = p.spec.source
    truth = Counter(e["user_id"] for e in spec.cls(spec.options, None).records(0, n))
    got: Counter = Counter()
    for m in fake_producer.sent:
        d = orjson.loads(m["value"])
        assert d["aggregation"] == "per_user" and d["window"] == {"start": None, "end": None}
        assert m["key"] == d["key"]["user_id"].encode()
        got[d["key"]["user_id"]] += d["values"]["count"]
    assert got == truth


def test_dead_letters_carry_reason_and_origin(fake_producer):
    n = 4000
    p = Pipeline.from_dict({"source": _generator(n, malformed_ratio=0.05),
                            "aggregations": [{"name": "d", "type": "avg", "field": "duration_ms",
                                              "group_by": ["user_id"]}],
                            "sinks": [{"type": "discard"}], "dead_letter": {"type": "kafka"}})
    r = p.run()
    assert r.dead_letters == len(fake_producer.sent) > 0
    spec = p.spec.source
    records = spec.cls(spec.options, None).records(0, n)
    for m in fake_producer.sent:
        h = {k: v.decode() for k, v in m["headers"]}
        assert m["topic"] == "generator.dlq"  # <topic>.dlq of the record's own partition
        assert h["source_topic"] == "generator" and h["source_partition"] == "0"
        assert orjson.loads(m["value"]) == records[int(h["source_offset"])]
        assert h["reason"]


def test_dead_letter_topic_and_brokers_come_from_the_kafka_source(fake_producer):
    p = Pipeline.from_dict({"source": {"type": "kafka", "topic": "t", "bootstrap_servers": "b1:9093",
                                       "dead_letter_topic": "t-bad", "sasl_mechanism": "PLAIN"},
                            "aggregations": [{"name": "c", "type": "count"}], "sinks": [{"type": "discard"}],
                            "dead_letter": {"type": "kafka"}})
    from streamkit import Context, DeadLetter
    dl = p.spec.dead_letter.cls(p.spec.dead_letter.options, Context(p, "dead_letter"))
    dl.open()
    assert dl.producer.options["bootstrap_servers"] == ["b1:9093"]
    assert dl.producer.options["sasl_mechanism"] == "PLAIN"
    dl.write([DeadLetter("t/1", 17, "invalid JSON: x", None), DeadLetter("t/0", 3, "missing field", b"{}")])
    first, second = fake_producer.sent
    assert first["topic"] == second["topic"] == "t-bad"
    assert first["value"] is None and first["key"] == b""  # Kafka needs a key or a value
    assert dict(first["headers"]) == {"reason": b"invalid JSON: x", "source_topic": b"t",
                                      "source_partition": b"1", "source_offset": b"17"}
    assert second["value"] == b"{}" and second["key"] is None


class FakeConsumer:
    """Stands in for a client's Consumer (partitions by name), as the source sees it."""

    def __init__(self, assigned, fail: bool = False) -> None:
        self.assigned = set(assigned)
        self.fail = fail
        self.commits: list = []

    def assignment(self):
        return set(self.assigned)

    def commit(self, offsets):
        from streamkit_kafka.client import CommitFailed
        if self.fail:
            raise CommitFailed("rebalanced")
        self.commits.append(dict(offsets))


def test_commit_sends_exactly_the_positions_of_owned_partitions():
    from streamkit import Context

    src = KafkaSource({"topic": ["t"], "group_id": "g"}, Context(None, "source"))
    src.consumer = FakeConsumer(["t/0", "t/1"], fail=True)
    src.commit({"t/0": 10, "t/1": 20, "t/2": 30})  # t/2 is not ours; the commit fails
    assert src._unsent == {"t/0": 10, "t/1": 20}
    src.consumer.fail = False
    src.commit({"t/1": 25})  # the failed positions go with the next commit
    assert src.consumer.commits == [{"t/0": 10, "t/1": 25}]
    assert src._unsent == {}


class KafkaPythonConsumer:
    """kafka-python's KafkaConsumer, as far as the client layer's commit uses it."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.commits: list = []

    def commit(self, offsets):
        from kafka.errors import CommitFailedError
        if self.fail:
            raise CommitFailedError("rebalanced")
        self.commits.append({(tp.topic, tp.partition): o.offset for tp, o in offsets.items()})


def test_kafka_python_commit_names_partitions_and_reports_failure():
    from kafka import TopicPartition

    from streamkit_kafka.client import CommitFailed
    from streamkit_kafka.kafka_python import Consumer

    c = Consumer.__new__(Consumer)  # no broker: only the partition names and the commit
    c._names, c._tps = {}, {}
    for p in range(2):
        c._name(TopicPartition("t", p))
    c.consumer = KafkaPythonConsumer(fail=False)
    c.commit({"t/0": 10, "t/1": 20})
    assert c.consumer.commits == [{("t", 0): 10, ("t", 1): 20}]
    c.consumer.fail = True
    with pytest.raises(CommitFailed, match="CommitFailedError"):
        c.commit({"t/0": 11})


def test_librdkafka_poll_splits_runs_of_partitions_and_lists_gaps():
    """confluent-kafka hands out one list of messages over all partitions: the client layer
    makes one batch per run of one partition, with offsets listed only where they leave gaps."""
    from streamkit_kafka.librdkafka import Consumer

    class Msg:
        def __init__(self, topic, partition, offset, value, error=None):
            self.t, self.p, self.o, self.v, self.e = topic, partition, offset, value, error

    class Src:
        topics = ["t"]

    msgs = [(0, 5), (0, 6), (1, 0), (1, 2), (0, 7)]  # t/1 has a gap (compaction)
    c = Consumer.__new__(Consumer)
    c.source, c.max_records, c._names, c._tps, c._single = Src(), 100, {}, {}, True
    c._callback_error = None

    class Fake:
        def poll(self, timeout):
            return fake[0]

        def consume(self, n, timeout):
            assert n == 99 and timeout == 0
            return fake[1:]

    import streamkit_kafka.librdkafka as mod
    fake = [Msg("t", p, o, b"%d" % o) for p, o in msgs]
    c.consumer = Fake()
    saved = {k: getattr(mod, k) for k in ("_error", "_partition", "_topic", "_value", "_offset")}
    mod._error, mod._partition, mod._topic = (lambda m: m.e), (lambda m: m.p), (lambda m: m.t)
    mod._value, mod._offset = (lambda m: m.v), (lambda m: m.o)
    Msg.offset = lambda m: m.o
    try:
        got = c.poll(0.1)
    finally:
        for k, v in saved.items():
            setattr(mod, k, v)
    assert [(b.partition, b.records, b.first, b.next, b.positions) for b in got] == [
        ("t/0", [b"5", b"6"], 5, 7, None), ("t/1", [b"0", b"2"], 0, 3, [0, 2]), ("t/0", [b"7"], 7, 8, None)]


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_sasl_and_ssl_options_reach_the_client(client):
    options = {"bootstrap_servers": ["b1:9093,b2:9093"], "connect_timeout": 5.0, "security_protocol": "SASL_SSL",
               "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "u", "sasl_plain_password": "p",
               "ssl_cafile": "ca.pem", "ssl_certfile": "cert.pem", "ssl_keyfile": "key.pem"}
    if client == "kafka-python":
        from streamkit_kafka.kafka_python import client_config
        assert client_config(options) == {
            "bootstrap_servers": ["b1:9093", "b2:9093"], "bootstrap_timeout_ms": 5000,
            "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "u",
            "sasl_plain_password": "p", "ssl_cafile": "ca.pem", "ssl_certfile": "cert.pem", "ssl_keyfile": "key.pem"}
    else:
        from confluent_kafka import Producer

        from streamkit_kafka.librdkafka import client_config
        cfg = client_config(options)
        assert cfg == {"bootstrap.servers": "b1:9093,b2:9093", "security.protocol": "SASL_SSL",
                       "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "u", "sasl.password": "p",
                       "ssl.ca.location": "ca.pem", "ssl.certificate.location": "cert.pem",
                       "ssl.key.location": "key.pem"}
        with pytest.raises(Exception, match="ssl.ca.location failed"):  # every name known; the file is not
            Producer(cfg)


def test_client_auto_prefers_confluent_kafka_and_a_missing_one_is_one_line(monkeypatch):
    import streamkit_kafka.client as client_mod
    from streamkit import Context

    assert client_mod.chosen({"client": "auto"}) == "confluent-kafka"
    assert client_mod.chosen({}) == "confluent-kafka"
    assert client_mod.chosen({"client": "kafka-python"}) == "kafka-python"
    monkeypatch.setattr(client_mod, "installed", lambda name: name == "kafka-python")
    assert client_mod.chosen({"client": "auto"}) == "kafka-python"
    p = Pipeline.from_dict({"source": {"type": "kafka", "topic": "t", "client": "confluent-kafka"},
                            "aggregations": [{"name": "c", "type": "count"}], "sinks": [{"type": "discard"}]})
    with pytest.raises(ConfigError, match=r"^<dict>: source.client: confluent-kafka is not installed "
                                          r"\(pip install 'streamkit\[fast\]'\); or use client: auto$"):
        p.run()
    auto = KafkaSource({**p.spec.source.options, "client": "auto"}, Context(p, "source"))
    assert auto.client == "kafka-python"


def test_importing_the_plugin_imports_no_client_library():
    import subprocess
    import sys
    code = ("import sys, streamkit_kafka; from streamkit import Pipeline; "
            "Pipeline.from_dict({'source': {'type': 'kafka', 'topic': 't'}, "
            "'aggregations': [{'name': 'c', 'type': 'count'}], 'sinks': [{'type': 'kafka', 'topic': 'o'}]}); "
            "print(sorted(m for m in ('kafka', 'confluent_kafka') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka"])
def test_unreachable_broker_is_one_error_and_leaves_no_thread(client):
    import threading
    import time

    import psutil

    from streamkit import SourceUnavailable

    before = psutil.Process().num_threads()
    p = Pipeline.from_dict({"source": {"type": "kafka", "topic": "t", "bootstrap_servers": "127.0.0.1:1",
                                       "connect_timeout": "1s", "client": client},
                            "aggregations": [{"name": "c", "type": "count"}], "sinks": [{"type": "discard"}]})
    with pytest.raises(SourceUnavailable, match=r"^source: no Kafka broker reachable at 127.0.0.1:1 within 1s"):
        p.run()
    # librdkafka's threads are not Python's: count the process's threads (the engine's writer
    # thread ends just after run() returns)
    deadline = time.monotonic() + 5
    while psutil.Process().num_threads() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert psutil.Process().num_threads() == before
    assert not [t.name for t in threading.enumerate() if t.name.startswith("kafka-io")]


def test_group_options_reach_both_clients_and_commits_stay_manual():
    from streamkit import Context

    from streamkit_kafka.client import group_settings
    from streamkit_kafka.librdkafka import consumer_config

    p = Pipeline.from_dict({"source": {"type": "kafka", "topic": "t", "bootstrap_servers": "h:1", "start": "latest",
                                       "session_timeout": "6s", "group_instance_id": "w1",
                                       "reconnect_backoff_max": "50ms"},
                            "aggregations": [{"name": "c", "type": "count"}], "sinks": [{"type": "discard"}]})
    src = KafkaSource(p.spec.source.options, Context(p, "source"))
    assert group_settings(src.config) == {"session_timeout_ms": 6000, "heartbeat_interval_ms": 2000,
                                          "group_instance_id": "w1", "reconnect_backoff_max_ms": 50}
    assert consumer_config(src) == {
        "bootstrap.servers": "h:1", "group.id": src.group_id, "client.id": f"streamkit-{src.group_id}",
        "enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "latest",
        "enable.partition.eof": False, "allow.auto.create.topics": False, "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 2000, "group.instance.id": "w1", "reconnect.backoff.max.ms": 50,
        "reconnect.backoff.ms": 50}
