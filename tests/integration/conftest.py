"""Fixtures for tests against the real servers that `scripts/services up` starts.

KAFKA_BOOTSTRAP and MONGO_URI come from the environment; a test that needs one
skips, saying how to start the servers, when it is unset. Names of topics and
databases are unique per test, and what a test creates is deleted after it.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, Callable, Iterable

import pytest

HOW = 'start the servers with: eval "$(scripts/services up)"'


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3 loads its protocol schemas with a deprecated importlib call, once per type
    config.addinivalue_line("filterwarnings",
                            "ignore:.*is deprecated. Use files:DeprecationWarning")


def unique(prefix: str) -> str:
    """A topic or database name no other test (or earlier run) uses."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, up: bool, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if (s.connect_ex(("127.0.0.1", port)) == 0) == up:
                return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    value = os.environ.get("KAFKA_BOOTSTRAP")
    if not value:
        pytest.skip(f"KAFKA_BOOTSTRAP is not set; {HOW}")
    return value


@pytest.fixture(scope="session")
def mongo_uri() -> str:
    value = os.environ.get("MONGO_URI")
    if not value:
        pytest.skip(f"MONGO_URI is not set; {HOW}")
    return value


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


class PrivateMongo:
    """A SecantusDB process of the test's own on a free port and a real data folder, so it
    can be stopped and started again without disturbing tests that share the main server."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = open(os.path.join(folder, "server.log"), "ab")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(self.port),
             "--storage-path", os.path.join(self.folder, "data"), "--log-level", "WARNING"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_port(self.port, True, 30):
            self.stop()
            raise RuntimeError(f"SecantusDB did not listen on port {self.port} within 30s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        wait_port(self.port, False, 5)

    def client(self) -> Any:
        from pymongo import MongoClient
        return MongoClient(self.uri, tz_aware=True, serverSelectionTimeoutMS=10000)

    def close(self) -> None:
        self.stop()
        self.log.close()


@pytest.fixture
def private_mongo():
    pytest.importorskip("secantus", reason="SecantusDB is not installed (pip install -e .[test])")
    folder = tempfile.mkdtemp(prefix="streamkit-mongo-")
    server = PrivateMongo(folder)
    server.start()
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)
