"""Fixtures for tests against the real servers that `scripts/services up` starts, and against
servers of a test's own (tests/servers.py) that it may stop and start.

Every test here needs a server and is marked ``integration``; a test that needs none
belongs in tests/. KAFKA_BOOTSTRAP and MONGO_URI come from the environment through the
``kafka_bootstrap`` and ``mongo_uri`` fixtures of tests/conftest.py. Names of topics and
databases are unique per test, and what a test creates is deleted after it.

``mongo_server`` (one per module) and ``private_mongo`` (one per test) are MongoDB-wire servers of
the tests' own, ``private_kafka`` a Kafka broker of the module's own; ``runs`` starts ``streamkit
run`` processes (tests/processes.py) and kills whatever is left of them after the test.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from typing import Any, Callable, Iterable, Iterator

import pytest

from processes import Runs
from servers import PrivateKafka, PrivateMongo, PrivateServer

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.hookimpl(tryfirst=True)  # before tests/conftest.py checks the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if str(item.path).startswith(HERE + os.sep):
            item.add_marker(pytest.mark.integration)


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3 loads its protocol schemas with a deprecated importlib call, once per type
    config.addinivalue_line("filterwarnings",
                            "ignore:.*is deprecated. Use files:DeprecationWarning")


def unique(prefix: str) -> str:
    """A topic or database name no other test (or earlier run) uses."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


class Kafka:
    """Topics with N partitions, a producer and a reader, on the test broker."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.created: list[str] = []
        self._admin: Any = None
        self._producer: Any = None

    @property
    def admin(self) -> Any:
        if self._admin is None:
            from kafka.admin import KafkaAdminClient
            self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=20000)
        return self._admin

    def create_topic(self, prefix: str = "t", partitions: int = 1) -> str:
        """A new topic (unique name) with ``partitions`` partitions, ready to produce to."""
        from kafka.admin import NewTopic
        name = unique(prefix)
        self.admin.create_topics([NewTopic(name, partitions, 1)], timeout_ms=20000)
        self.created += [name, f"{name}.dlq"]
        deadline = time.monotonic() + 20
        while len(self.partitions(name)) < partitions:  # metadata reaches the broker's cache a bit later
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {name} has no {partitions} partitions after 20s")
            time.sleep(0.1)
        return name

    def partitions(self, topic: str) -> list[int]:
        from kafka import KafkaConsumer
        c = KafkaConsumer(bootstrap_servers=self.bootstrap)
        try:
            return sorted(c.partitions_for_topic(topic) or ())
        finally:
            c.close()

    def produce(self, topic: str, values: Iterable[bytes | None], *,
                partition: int | Callable[[int], int] | None = None,
                keys: Iterable[bytes | None] | None = None) -> list[tuple[int, int]]:
        """Send ``values`` (raw bytes; None = a null value) and wait for every acknowledgement.

        ``partition`` is a number, a function of the value's index, or None (by key).
        Returns (partition, offset) of each value, in order.
        """
        from kafka import KafkaProducer
        if self._producer is None:
            self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        values = list(values)
        keys = list(keys) if keys is not None else [None] * len(values)
        futures = []
        for i, (v, k) in enumerate(zip(values, keys)):
            p = partition(i) if callable(partition) else partition
            futures.append(self._producer.send(topic, value=v, key=k, partition=p))
        self._producer.flush(timeout=60)
        return [(m.partition, m.offset) for m in (f.get(timeout=10) for f in futures)]

    def end_offsets(self, topic: str) -> dict[int, int]:
        from kafka import KafkaConsumer, TopicPartition
        c = KafkaConsumer(bootstrap_servers=self.bootstrap)
        try:
            tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
            return {tp.partition: off for tp, off in c.end_offsets(tps).items()}
        finally:
            c.close()

    def read_all(self, topic: str, timeout: float = 30) -> list:
        """Every record of ``topic`` (ConsumerRecord: partition, offset, key, value, headers)."""
        from kafka import KafkaConsumer, TopicPartition
        ends = self.end_offsets(topic)
        c = KafkaConsumer(bootstrap_servers=self.bootstrap, auto_offset_reset="earliest",
                          enable_auto_commit=False)
        try:
            tps = [TopicPartition(topic, p) for p in ends]
            c.assign(tps)
            c.seek_to_beginning(*tps)
            out: list = []
            deadline = time.monotonic() + timeout
            while any(c.position(tp) < ends[tp.partition] for tp in tps):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"read {len(out)} records of {topic} in {timeout}s, not all")
                for msgs in c.poll(timeout_ms=500).values():
                    out.extend(msgs)
            return sorted(out, key=lambda m: (m.partition, m.offset))
        finally:
            c.close()

    def committed(self, group: str, topic: str) -> dict[int, int | None]:
        """The group's committed offset per partition of ``topic``."""
        from kafka import KafkaConsumer, TopicPartition
        c = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=group, enable_auto_commit=False)
        try:
            return {p: c.committed(TopicPartition(topic, p)) for p in sorted(c.partitions_for_topic(topic))}
        finally:
            c.close()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=10)
        if self._admin is not None:
            existing = set(self._admin.list_topics())
            doomed = [t for t in self.created if t in existing]
            if doomed:
                try:
                    self._admin.delete_topics(doomed, timeout_ms=20000)
                except Exception:  # leftover topics have unique names; not worth failing a test
                    pass
            self._admin.close()


@pytest.fixture
def kafka(kafka_bootstrap: str):
    helper = Kafka(kafka_bootstrap)
    try:
        yield helper
    finally:
        helper.close()


@pytest.fixture
def mongo_db(mongo_uri: str):
    """A fresh database on the test MongoDB server, dropped afterwards."""
    from pymongo import MongoClient
    client = MongoClient(mongo_uri, tz_aware=True, serverSelectionTimeoutMS=10000)
    db = client[unique("sk")]
    try:
        yield db
    finally:
        client.drop_database(db.name)
        client.close()


@contextlib.contextmanager
def _private(server_class: type[PrivateServer]) -> Iterator[Any]:
    folder = tempfile.mkdtemp(prefix=f"streamkit-{server_class.service}-")
    server = server_class(folder)
    try:
        server.start()
        yield server
    finally:
        try:
            server.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def mongo_server(secantus) -> Iterator[PrivateMongo]:
    """A MongoDB-wire server of the module's own (skipped when SecantusDB is not installed)."""
    with _private(PrivateMongo) as server:
        yield server


@pytest.fixture
def private_mongo(secantus) -> Iterator[PrivateMongo]:
    """A MongoDB-wire server of the test's own."""
    with _private(PrivateMongo) as server:
        yield server


@pytest.fixture(scope="module")
def private_kafka(kafka_bootstrap) -> Iterator[PrivateKafka]:
    """A Kafka broker of the module's own (skipped when the shared one is not running either:
    the jars come from the same cache)."""
    with _private(PrivateKafka) as broker:
        yield broker


@pytest.fixture
def runs(tmp_path) -> Iterator[Runs]:
    """Starts ``streamkit run`` processes; every one still running after the test is killed."""
    r = Runs(tmp_path)
    try:
        yield r
    finally:
        r.close()
