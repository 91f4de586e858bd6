"""The confluent-kafka client (librdkafka) behind the ``kafka`` types (``client: confluent-kafka``).

librdkafka fetches, decompresses and checks records on threads of its own and keeps
heartbeats going while Python works, so a rebalance callback may block: it runs on the
thread that called ``poll()``/``consume()`` (the engine's), where flushing and
committing before a revocation is the documented pattern.

Per record the engine needs only the value; the partition and the offsets of the first
and last record of each run come from ``map`` over librdkafka's messages in C, so a
poll makes no Python object per record beyond what the client itself hands out.
"""
from __future__ import annotations

import logging
import threading
from itertools import groupby
from typing import Any

from confluent_kafka import Consumer as _Consumer
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka import Producer as _Producer

from streamkit import Batch, SourceUnavailable

from .client import (CommitFailed, KafkaUnavailable, group_settings, partition_name, quiet_kafka_logging, servers,
                     unreachable)

#: librdkafka's own log lines (quiet unless ``-v``: streamkit reports unreachable brokers itself)
LOG = logging.getLogger("librdkafka")

#: the connection options in librdkafka's names
SETTINGS = {"security_protocol": "security.protocol", "sasl_mechanism": "sasl.mechanism",
            "sasl_plain_username": "sasl.username", "sasl_plain_password": "sasl.password",
            "ssl_cafile": "ssl.ca.location", "ssl_certfile": "ssl.certificate.location",
            "ssl_keyfile": "ssl.key.location"}

_error, _partition, _topic, _value, _offset = (Message.error, Message.partition, Message.topic, Message.value,
                                               Message.offset)


def client_config(options: dict) -> dict:
    """librdkafka settings for the connection options that are set."""
    cfg: dict[str, Any] = {"bootstrap.servers": ",".join(servers(options["bootstrap_servers"]))}
    for key, name in SETTINGS.items():
        if options.get(key) is not None:
            cfg[name] = options[key]
    return cfg


def _logged(cfg: dict) -> dict:
    return {**cfg, "logger": LOG, "error_cb": _client_error}


def _client_error(err: KafkaError) -> None:
    """Errors librdkafka recovers from by itself (a broker away, a reconnect) are chatter."""
    LOG.log(logging.ERROR if err.fatal() else logging.WARNING, "%s: %s", err.name(), err.str())


def reason(exc: BaseException) -> str:
    """``KafkaError _TRANSPORT: Failed to get metadata: ...`` for a KafkaException."""
    err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    if err is None:
        return f"{type(exc).__name__}: {exc}"
    return f"KafkaError {err.name()}: {err.str()}"


def _reach(client: Any, what: str, options: dict, error: type) -> Any:
    """The cluster's metadata, or ``error`` (one line) if no broker answers within connect_timeout."""
    try:
        return client.list_topics(timeout=options["connect_timeout"])
    except KafkaException as exc:
        raise error(unreachable(what, options, reason(exc))) from None


def _group_config(c: dict) -> dict:
    out = {name.replace("_", "."): value for name, value in group_settings(c).items()}
    if "reconnect.backoff.max.ms" in out:  # the first wait may not exceed the longest
        out["reconnect.backoff.ms"] = min(100, out["reconnect.backoff.max.ms"])
    return out


def consumer_config(source: Any) -> dict:
    c = source.config
    return {**client_config(c),
            "group.id": source.group_id,
            "client.id": f"streamkit-{source.group_id}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": c["start"],
            "enable.partition.eof": False,
            # a consumer that creates the topics it reads would create them with the
            # broker's default partition count; a missing topic is reported instead
            "allow.auto.create.topics": False,
            **_group_config(c)}


class Consumer:
    """A librdkafka consumer-group member for a :class:`~.source.KafkaSource`."""

    def __init__(self, source: Any) -> None:
        quiet_kafka_logging()
        self.source = source
        self.what = source.context.name
        self.max_records = source.config["max_poll_records"]
        self._names: dict[Any, str] = {}               # partition (one topic) or (topic, partition) -> name
        self._tps: dict[str, tuple[str, int]] = {}     # name -> (topic, partition)
        self._single = len(source.topics) == 1
        self._callback_error: BaseException | None = None
        self._assigned: frozenset = frozenset()          # (topic, partition) owned now, for other threads
        self._offsets: Any = None                        # see _offsets_client
        self._offsets_lock = threading.Lock()
        try:
            self.consumer = _Consumer(_logged(consumer_config(source)))
        except KafkaException as exc:
            raise SourceUnavailable(f"{self.what}: {reason(exc)}") from None
        try:
            self._metadata = _reach(self.consumer, self.what, source.config, SourceUnavailable)
        except BaseException:
            self.consumer.close()
            raise

    def subscribe(self, topics: list[str]) -> set[str]:
        """Join the group for ``topics``; returns the topics the cluster knows."""
        self.consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_lost)
        md = self._metadata.topics
        return {t for t in topics if t in md and md[t].error is None}

    def _name(self, topic: str, partition: int) -> str:
        key = partition if self._single else (topic, partition)
        name = self._names.get(key)
        if name is None:
            name = partition_name(topic, partition)
            self._names[key] = name
            self._tps[name] = (topic, partition)
        return name

    # -- rebalance callbacks (on the engine's thread, inside poll) -------------------------
    def _on_assign(self, consumer: Any, partitions: list) -> None:
        try:
            partitions = sorted(partitions, key=lambda tp: (tp.topic, tp.partition))
            names = [self._name(tp.topic, tp.partition) for tp in partitions]
            resume = self.source.assigned(names)
            for tp, name in zip(partitions, names):
                if name in resume:
                    tp.offset = resume[name]
        except BaseException as exc:
            self._callback_error = exc
            raise
        consumer.assign(partitions)
        self._assigned = frozenset((tp.topic, tp.partition) for tp in partitions)

    def _on_revoke(self, consumer: Any, partitions: list) -> None:
        if self.source.closing or not partitions:
            return
        self._call(self.source.revoked, partitions)

    def _on_lost(self, consumer: Any, partitions: list) -> None:
        self._call(self.source.lost, partitions)

    def _call(self, fn: Any, partitions: list) -> None:
        try:
            fn(sorted(self._name(tp.topic, tp.partition) for tp in partitions))
        except BaseException as exc:
            self._callback_error = exc
            raise
        finally:
            self._assigned = self._assigned - {(tp.topic, tp.partition) for tp in partitions}

    def _raise_callback_error(self) -> None:
        if self._callback_error is not None:
            err, self._callback_error = self._callback_error, None
            raise err

    # -- the source's calls -------------------------------------------------------------
    def poll(self, timeout: float) -> list[Batch]:
        c = self.consumer
        try:
            first = c.poll(timeout)  # waits for one message at most ``timeout``, then takes what is there
            msgs = c.consume(self.max_records - 1, 0) if first is not None and self.max_records > 1 else []
        except BaseException:
            if self._callback_error is not None:  # the engine's own error, raised in a callback
                err, self._callback_error = self._callback_error, None
                raise err from None
            raise
        self._raise_callback_error()
        if first is None:
            return []
        msgs.insert(0, first)
        if any(map(_error, msgs)):
            msgs = self._without_errors(msgs)
            if not msgs:
                return []
        n = len(msgs)
        if self._single:
            keys = list(map(_partition, msgs))
            topic = self.source.topics[0]
        else:
            keys = list(zip(map(_topic, msgs), map(_partition, msgs)))
        values = list(map(_value, msgs))
        k0 = keys[0]
        if keys[-1] == k0 and keys.count(k0) == n:
            runs = [(k0, 0, n)]
        else:  # a poll may interleave partitions in runs
            runs, i = [], 0
            for k, run in groupby(keys):
                j = i + len(list(run))
                runs.append((k, i, j))
                i = j
        batches = []
        names = self._names
        for k, i, j in runs:
            name = names.get(k) or (self._name(topic, k) if self._single else self._name(*k))
            lo = msgs[i].offset()
            hi = msgs[j - 1].offset()
            # compaction and transaction markers leave gaps; only then are offsets listed
            positions = None if hi - lo == j - i - 1 else list(map(_offset, msgs[i:j]))
            batches.append(Batch(name, values if j - i == n else values[i:j], lo, hi + 1, positions))
        return batches

    def _without_errors(self, msgs: list) -> list:
        """Error events come as messages: a fatal one stops the source, the others are logged
        (librdkafka retries them itself: a broker away, a topic not yet created)."""
        good = []
        for m in msgs:
            err = m.error()
            if err is None:
                good.append(m)
            elif err.fatal():
                raise SourceUnavailable(f"{self.what}: Kafka: {err.name()}: {err.str()}")
            else:
                LOG.debug("%s: %s", err.name(), err.str())
        return good

    def assignment(self) -> set[str]:
        return {self._name(tp.topic, tp.partition) for tp in self.consumer.assignment()}

    def commit(self, offsets: dict[str, int]) -> None:
        tps = [TopicPartition(*self._tps[name], pos) for name, pos in offsets.items()]
        try:
            done = self.consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            raise CommitFailed(reason(exc)) from None
        failed = [tp for tp in done or () if tp.error is not None]
        if failed:
            raise CommitFailed(f"{partition_name(failed[0].topic, failed[0].partition)}: "
                               f"{failed[0].error.name()}: {failed[0].error.str()}")

    # -- for the lag, from any thread ------------------------------------------------------
    # confluent-kafka lets one thread at a time into a consumer: a dashboard thread asking the
    # group member would wait for the engine's polls to pause, which they do not. A second
    # client that never joins the group answers instead.
    def _offsets_client(self) -> Any:
        with self._offsets_lock:
            if self._offsets is None:
                self._offsets = _Consumer({**_logged(client_config(self.source.config)), "log_level": 0,
                                           "group.id": self.source.group_id, "enable.auto.commit": False,
                                           "client.id": f"streamkit-{self.source.group_id}-lag"})
            return self._offsets

    def end_offsets(self) -> dict[str, int]:
        client = self._offsets_client()
        out = {}
        for topic, partition in sorted(self._assigned):
            _, high = client.get_watermark_offsets(TopicPartition(topic, partition), timeout=2)
            out[self._name(topic, partition)] = high
        return out

    def position(self, name: str) -> int | None:
        """Where a partition nothing was read from yet starts: its committed offset, else the end
        or the beginning (``start:``)."""
        client = self._offsets_client()
        tp = TopicPartition(*self._tps[name])
        pos = client.committed([tp], timeout=1)[0].offset
        if pos < 0:
            low, high = client.get_watermark_offsets(tp, timeout=1)
            pos = high if self.source.config["start"] == "latest" else low
        return pos if pos >= 0 else None

    def close(self) -> None:
        try:
            self.consumer.close()
        finally:
            with self._offsets_lock:
                if self._offsets is not None:
                    self._offsets.close()
                    self._offsets = None


class Producer:
    """A librdkafka producer (idempotent, ``acks=all``) that makes a set of messages durable
    before returning. Only failed deliveries are reported back (``delivery.report.only.error``),
    so an acknowledged message costs no Python call."""

    def __init__(self, what: str, options: dict, *, delivery_timeout: float, linger_ms: int = 5,
                 batch_size: int | None = None, compression: str | None = None) -> None:
        quiet_kafka_logging()
        self.what = what
        self.options = options
        self._failed: list = []
        ms = int(delivery_timeout * 1000)
        cfg = {**client_config(options), "acks": "all", "enable.idempotence": True,
               "linger.ms": linger_ms, "delivery.timeout.ms": ms, "request.timeout.ms": max(1, min(30_000, ms)),
               "delivery.report.only.error": True, "on_delivery": self._delivered,
               "queue.buffering.max.messages": 1_000_000}
        if batch_size is not None:
            cfg["batch.size"] = batch_size
        if compression is not None:
            cfg["compression.type"] = compression
        try:
            self.producer = _Producer(_logged(cfg))
        except KafkaException as exc:
            raise KafkaUnavailable(f"{what}: {reason(exc)}") from None
        _reach(self.producer, what, options, KafkaUnavailable)
        self._produce = self.producer.produce

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._failed.append(err)

    def send(self, topic: str, value: Any = None, key: Any = None, headers: Any = None) -> None:
        """Queue one message; its handle is None (``wait`` counts the handles)."""
        while True:
            try:
                if headers is None:
                    self._produce(topic, value, key)
                else:
                    self._produce(topic, value, key, headers=headers)
                return None
            except BufferError:  # the client's queue is full: let it send some first
                self.producer.poll(0.05)
            except KafkaException as exc:  # refused before sending (too large): reported by wait()
                self._failed.append(exc.args[0])
                return None

    def wait(self, handles: list, timeout: float | None = None) -> None:
        """Block until every message was acknowledged; raise naming the first failure."""
        if not handles:
            return
        left = self.producer.flush(-1 if timeout is None else timeout)
        if left:
            raise KafkaUnavailable(f"{self.what}: Kafka did not acknowledge {left:,} of {len(handles):,} "
                                   f"messages in time")
        if self._failed:
            failed, self._failed = self._failed, []
            raise KafkaUnavailable(f"{self.what}: Kafka refused {len(failed):,} of {len(handles):,} "
                                   f"messages (KafkaError {failed[0].name()}: {failed[0].str()})")

    def close(self) -> None:
        self.producer.flush(10)
