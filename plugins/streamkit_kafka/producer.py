"""A kafka-python producer that makes a set of messages durable before returning.

Both the ``kafka`` sink and the ``kafka`` dead-letter destination send a flush's
messages, then wait until the broker acknowledged every one (``acks=all``): the
engine commits source positions only after ``write`` returns, so nothing may
still sit in a client buffer by then.
"""
from __future__ import annotations

from typing import Any

from .client import KafkaUnavailable, client_config, construct, quiet_kafka_logging, unreachable

COMPRESSION_PACKAGES = {"snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"}


class DurableProducer:
    """``delivery_timeout``: seconds a message may take to be acknowledged (a request gives up
    after at most 30 s of it); ``settings``: more KafkaProducer settings."""

    def __init__(self, what: str, options: dict, *, delivery_timeout: float, **settings: Any) -> None:
        quiet_kafka_logging()
        ms = int(delivery_timeout * 1000)
        settings.update(delivery_timeout_ms=ms, request_timeout_ms=min(30_000, ms))
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self.what = what
        self.options = options
        compression = settings.get("compression_type")
        try:
            self.producer = construct(KafkaProducer, acks="all", **settings, **client_config(options))
        except KafkaError as exc:
            raise KafkaUnavailable(unreachable(what, options, exc)) from None
        except (RuntimeError, ValueError):
            if compression in COMPRESSION_PACKAGES:
                raise KafkaUnavailable(f"{what}: compression {compression!r} needs the Python package "
                                       f"{COMPRESSION_PACKAGES[compression]}") from None
            raise
        self.send = self.producer.send

    def wait(self, futures: list, timeout: float | None = None) -> None:
        """Block until every message was acknowledged; raise naming the first failure."""
        if not futures:
            return
        from kafka.errors import KafkaTimeoutError

        try:
            self.producer.flush(timeout=timeout)
        except KafkaTimeoutError as exc:
            raise KafkaUnavailable(f"{self.what}: Kafka did not acknowledge {len(futures):,} messages "
                                   f"in time ({exc})") from None
        failed = [f for f in futures if f.failed()]
        if failed:
            exc = failed[0].exception
            raise KafkaUnavailable(f"{self.what}: Kafka refused {len(failed):,} of {len(futures):,} "
                                   f"messages ({type(exc).__name__}: {exc})")

    def close(self) -> None:
        try:
            self.producer.flush(timeout=10)
        finally:
            self.producer.close(timeout=10)


class Producing:
    """For a type that produces each write's messages through ``self.producer`` (a
    :class:`DurableProducer` made in ``open``): ``close`` sends what is left and closes it."""

    producer: DurableProducer | None = None

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close()
