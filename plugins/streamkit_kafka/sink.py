"""The ``kafka`` sink: the records themselves, or each flush's aggregate deltas, as JSON messages.

Delivery is at least once: ``write`` returns after the broker acknowledged every
message of the flush (idempotent producer, ``acks=all``), and a flush replayed
after a crash is sent again.
"""
from __future__ import annotations

from typing import Any

import orjson

from streamkit import EMIT_OPTION, REQUIRED, Duration, OneOf, Option, Sink, to_json

from .client import connection_options
from .producer import DurableProducer, Producing


def _key(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    return orjson.dumps(value)


class KafkaSink(Producing, Sink):
    """Produces records (what: records) or aggregate deltas (what: aggregates) to a topic as JSON."""

    options = {
        **connection_options(),
        "topic": Option(str, REQUIRED, "topic to produce to"),
        "what": Option(OneOf("records", "aggregates"), "records",
                       "records: each record as read; aggregates: one message per delta of a flush"),
        "key_field": Option(str, None, "message key: this field of the record (default user_id) "
                                       "or of the aggregate's group key (default: no key)"),
        "linger_ms": Option(int, 5, "wait this long to fill a batch", min=0),
        "batch_size": Option(int, 64 * 1024, "bytes per partition batch", min=1),
        "compression": Option(OneOf("none", "gzip", "snappy", "lz4", "zstd"), "none",
                              "compression of message batches (with kafka-python, the last three need their "
                              "Python package)"),
        "delivery_timeout": Option(Duration, 120.0, "fail the flush if a message is not "
                                                    "acknowledged within this time"),
        "emit": EMIT_OPTION,
    }

    @classmethod
    def takes_records(cls, options: dict) -> bool:
        return options.get("what", "records") == "records" and not cls.emits_final(options)

    @classmethod
    def emits_final(cls, options: dict) -> bool:
        return options.get("emit") == "final"

    def open(self) -> None:
        c = self.config
        self.records = c["what"] == "records"
        default_key = "user_id" if self.records else None
        self.key_field = c["key_field"] if c["key_field"] is not None else default_key
        self.topic = c["topic"]
        self.producer = DurableProducer(
            self.context.name, c,
            linger_ms=c["linger_ms"], batch_size=c["batch_size"],
            compression=None if c["compression"] == "none" else c["compression"],
            delivery_timeout=c["delivery_timeout"], context=self.context)

    def write(self, flush: Any) -> None:
        send, topic, field, dumps = self.producer.send, self.topic, self.key_field, orjson.dumps
        if self.records:
            records = flush.records or []
            if field is None:
                futures = [send(topic, value=dumps(r)) for r in records]
            else:
                futures = [send(topic, value=dumps(r), key=_key(r.get(field))) for r in records]
        else:
            futures = []
            for d in flush.deltas():
                value = to_json({"aggregation": d.aggregation, "key": d.key, "window": d.window_json(),
                                 "values": d.values})  # a sum may exceed 64 bits: written exactly
                key = _key(d.key.get(field)) if field is not None else None
                futures.append(send(topic, value=value, key=key))
        self.producer.wait(futures)

    def write_final(self, windows: list) -> None:
        """One message per closed window, keyed by the window's id (the same after a replay, so a
        consumer, or a compacted topic, keeps one per window)."""
        send, topic = self.producer.send, self.topic
        futures = [send(topic, key=w.id.encode(), value=to_json({
            "id": w.id, "aggregation": w.aggregation, "key": w.key, "window": w.window_json(), "final": True,
            "values": w.values})) for w in windows]
        self.producer.wait(futures)
