"""The ``kafka`` dead-letter destination: each unusable record, as it was read, to a topic.

Headers say why and where from: ``reason``, ``source_topic``, ``source_partition``,
``source_offset``. ``write`` returns once the broker acknowledged every message,
so the engine commits past a bad record only after it is safely in the topic.

With a ``kafka`` source, the brokers, security options and ``dead_letter_topic``
of the source are used unless given here; the default topic is ``<topic>.dlq``
of the topic each record came from.
"""
from __future__ import annotations

from typing import Any

from streamkit import DeadLetterDestination, Duration, Option, to_json

from .client import SECURITY_OPTIONS, connection_options, split_partition
from .producer import DurableProducer, Producing
from .source import KafkaSource


class KafkaDeadLetters(Producing, DeadLetterDestination):
    """Produces each dead letter's raw record to <topic>.dlq, with reason and origin in headers."""

    options = {
        **connection_options(bootstrap_default=None),
        "topic": Option(str, None, "dead-letter topic (default: the source's dead_letter_topic, "
                                   "else <topic>.dlq of each record's topic)"),
        "delivery_timeout": Option(Duration, 120.0, "fail if a dead letter is not acknowledged "
                                                    "within this time"),
    }

    def open(self) -> None:
        c = dict(self.config)
        source = _kafka_source_options(self.context)
        for key in ("bootstrap_servers", "client", "connect_timeout", *SECURITY_OPTIONS):
            if c.get(key) is None:
                c[key] = source.get(key)
        if c["bootstrap_servers"] is None:
            c["bootstrap_servers"] = ["127.0.0.1:9092"]
        if c["connect_timeout"] is None:
            c["connect_timeout"] = 30.0
        self.topic = c["topic"] or source.get("dead_letter_topic")
        self.producer = DurableProducer(
            self.context.name, c, linger_ms=5,
            delivery_timeout=c["delivery_timeout"], context=self.context)

    def write(self, letters: list) -> None:
        send = self.producer.send
        futures = []
        for dl in letters:
            topic, partition = split_partition(dl.partition)
            headers = [("reason", dl.reason.encode()),
                       ("source_topic", topic.encode()),
                       ("source_partition", str(partition if partition is not None else "").encode()),
                       ("source_offset", str(dl.position).encode())]
            value = _raw(dl.record)
            # Kafka needs a key or a value; a null record keeps its null value with an empty key
            futures.append(send(self.topic or f"{topic}.dlq", value=value, headers=headers,
                                key=b"" if value is None else None))
        self.producer.wait(futures)


def _raw(record: Any) -> bytes | None:
    """The record as it was read: bytes unchanged, text encoded, a decoded record as JSON."""
    if record is None or isinstance(record, bytes):
        return record
    if isinstance(record, (bytearray, memoryview)):
        return bytes(record)
    if isinstance(record, str):
        return record.encode()
    return to_json(record)


def _kafka_source_options(context: Any) -> dict:
    pipeline = getattr(context, "pipeline", None)
    cls = getattr(pipeline, "source_class", None)
    if isinstance(cls, type) and issubclass(cls, KafkaSource):
        return pipeline.source_options
    return {}
