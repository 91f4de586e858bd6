"""The kafka-python client behind the ``kafka`` types (``client: kafka-python``).

Rebalances: kafka-python 3 runs rebalance listeners on its IO thread, where a
listener may not block (no commit, no database call) without stalling heartbeats.
The listener here is asynchronous and hands the engine's work (flush and commit
before a revocation; resume positions from the sinks after an assignment) to a
short-lived worker thread, awaiting it. The thread that called ``poll()`` is
blocked in kafka-python meanwhile, so the engine's state is not touched twice.
"""
from __future__ import annotations

import threading
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata
from kafka.errors import KafkaError, KafkaTimeoutError

from streamkit import Batch, SourceUnavailable

from .client import (SECURITY_OPTIONS, CommitFailed, KafkaUnavailable, group_settings, partition_name,
                     quiet_kafka_logging, servers, unreachable)

COMPRESSION_PACKAGES = {"snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"}


def client_config(options: dict) -> dict:
    """kafka-python keyword arguments for the connection options that are set."""
    cfg: dict[str, Any] = {"bootstrap_servers": servers(options["bootstrap_servers"]),
                           "bootstrap_timeout_ms": int(options["connect_timeout"] * 1000)}
    for key in SECURITY_OPTIONS:
        if options.get(key) is not None:
            cfg[key] = options[key]
    return cfg


def construct(cls: Any, **config: Any) -> Any:
    """``cls(**config)`` for a kafka-python client; if it fails (no broker within the timeout),
    its network client is closed too: otherwise its IO thread would outlive the failed call."""
    made: list = []
    base = cls.DEFAULT_CONFIG["kafka_client"]

    def factory(**kwargs: Any) -> Any:
        client = base(**kwargs)
        made.append(client)
        return client

    try:
        return cls(kafka_client=factory, **config)
    except BaseException:
        for client in made:
            try:
                client.close()
            except Exception:  # already failing; the first error is the one to report
                pass
        raise


class Consumer:
    """A kafka-python consumer-group member for a :class:`~.source.KafkaSource`; partitions are
    named ``topic/number`` towards the source."""

    def __init__(self, source: Any) -> None:
        quiet_kafka_logging()
        self.source = source
        self.max_records = source.config["max_poll_records"]
        self._names: dict[Any, str] = {}      # TopicPartition -> "topic/3"
        self._tps: dict[str, Any] = {}        # "topic/3" -> TopicPartition
        self._listener_error: BaseException | None = None
        c = source.config
        try:
            self.consumer = construct(
                KafkaConsumer,
                group_id=source.group_id,
                client_id=f"streamkit-{source.group_id}",
                enable_auto_commit=False,
                auto_offset_reset=c["start"],
                max_poll_records=c["max_poll_records"],
                # a consumer that creates the topics it reads would create them with the
                # broker's default partition count; a missing topic is reported instead
                allow_auto_create_topics=False,
                **group_settings(c),
                **client_config(c))
        except KafkaError as exc:
            raise SourceUnavailable(unreachable(source.context.name, c, exc)) from None

    def subscribe(self, topics: list[str]) -> set[str]:
        """Join the group for ``topics``; returns the topics the cluster knows."""
        self.consumer.subscribe(topics, listener=_make_listener(self))
        # Metadata fetched after subscribing, before the first join: the group leader then
        # assigns the real partitions at once instead of joining twice.
        try:
            return set(self.consumer.topics())
        except Exception:  # only for a warning: the group join reports real trouble
            return set(topics)

    def _name(self, tp: Any) -> str:
        name = self._names.get(tp)
        if name is None:
            name = partition_name(tp.topic, tp.partition)
            self._names[tp] = name
            self._tps[name] = tp
        return name

    def poll(self, timeout: float) -> list[Batch]:
        try:
            got = self.consumer.poll(timeout_ms=int(timeout * 1000), max_records=self.max_records)
        except KafkaError:
            if self._listener_error is not None:  # the engine's own error, not Kafka's
                err, self._listener_error = self._listener_error, None
                raise err from None
            raise
        if self._listener_error is not None:
            err, self._listener_error = self._listener_error, None
            raise err
        batches = []
        for tp, msgs in got.items():
            if not msgs:
                continue
            first = msgs[0].offset
            last = msgs[-1].offset
            # compaction and transaction markers leave gaps; only then are offsets listed
            positions = None if last - first + 1 == len(msgs) else [m.offset for m in msgs]
            batches.append(Batch(self._name(tp), [m.value for m in msgs], first, last + 1, positions))
        return batches

    def assignment(self) -> set[str]:
        return {self._name(tp) for tp in self.consumer.assignment()}

    def commit(self, offsets: dict[str, int]) -> None:
        try:
            self.consumer.commit({self._tps[name]: OffsetAndMetadata(pos, "", -1)
                                  for name, pos in offsets.items()})
        except KafkaError as exc:
            raise CommitFailed(f"{type(exc).__name__}: {exc}") from None

    def end_offsets(self) -> dict[str, int]:
        tps = list(self.consumer.assignment())
        ends = self.consumer.end_offsets(tps, timeout_ms=2000) if tps else {}
        return {self._name(tp): end for tp, end in ends.items()}

    def position(self, name: str) -> int | None:
        return self.consumer.position(self._tps[name], timeout_ms=1000)

    def close(self) -> None:
        self.consumer.close(autocommit=False, timeout_ms=5000)


def _make_listener(consumer: Consumer) -> Any:
    """An AsyncConsumerRebalanceListener bound to ``consumer`` (kafka-python checks the class)."""
    from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener

    source = consumer.source

    class Listener(AsyncConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: set) -> None:
            if source.closing or not revoked:
                return
            await _in_thread(consumer, source.revoked, [consumer._name(tp) for tp in sorted(revoked)])

        async def on_partitions_assigned(self, assigned: set) -> None:
            resume = await _in_thread(consumer, source.assigned, [consumer._name(tp) for tp in sorted(assigned)])
            for name, pos in (resume or {}).items():
                tp = consumer._tps.get(name)
                if tp is not None:
                    consumer.consumer.seek(tp, pos)

        async def on_partitions_lost(self, lost: set) -> None:
            await _in_thread(consumer, source.lost, sorted(consumer._name(tp) for tp in lost))

    return Listener()


async def _in_thread(consumer: Consumer, fn: Any, arg: Any) -> Any:
    """Run ``fn(arg)`` on a worker thread and await it without blocking kafka-python's IO loop."""
    from kafka.future import Future

    future = Future()

    def work() -> None:
        try:
            future.success(fn(arg))
        except BaseException as exc:
            consumer._listener_error = exc
            future.failure(exc)
        # The IO loop may be sleeping in select() with nothing scheduled soon; wake it so
        # the rebalance continues now rather than at the next heartbeat.
        net = getattr(consumer.consumer, "_net", None)
        if net is not None and hasattr(net, "wakeup"):
            net.wakeup()

    threading.Thread(target=work, name="streamkit-kafka-rebalance", daemon=True).start()
    return await future


def admin(options: dict, client_id: str) -> Any:
    """A kafka-python admin client (``streamkit reset`` uses it whichever client reads: only it
    can delete a group's committed offsets of some topics)."""
    from kafka import KafkaAdminClient

    quiet_kafka_logging()
    return construct(KafkaAdminClient, client_id=client_id, **client_config(options))


class _Refused:
    """The handle of a message kafka-python refused to send."""

    def __init__(self, exc: BaseException) -> None:
        self.exception = exc

    def failed(self) -> bool:
        return True


class Producer:
    """A kafka-python producer that makes a set of messages durable before returning.

    ``delivery_timeout``: seconds a message may take to be acknowledged (a request gives up
    after at most 30 s of it)."""

    def __init__(self, what: str, options: dict, *, delivery_timeout: float, linger_ms: int = 5,
                 batch_size: int | None = None, compression: str | None = None) -> None:
        quiet_kafka_logging()
        ms = int(delivery_timeout * 1000)
        # kafka-python wants the delivery timeout above linger + request timeout
        settings: dict[str, Any] = {"delivery_timeout_ms": ms, "linger_ms": linger_ms,
                                    "request_timeout_ms": max(1, min(30_000, ms - linger_ms - 1))}
        if batch_size is not None:
            settings["batch_size"] = batch_size
        if compression is not None:
            settings["compression_type"] = compression
        self.what = what
        self.options = options
        try:
            self.producer = construct(KafkaProducer, acks="all", **settings, **client_config(options))
        except KafkaError as exc:
            raise KafkaUnavailable(unreachable(what, options, exc)) from None
        except (RuntimeError, ValueError):
            if compression in COMPRESSION_PACKAGES:
                raise KafkaUnavailable(f"{what}: compression {compression!r} needs the Python package "
                                       f"{COMPRESSION_PACKAGES[compression]}") from None
            raise
        self._send = self.producer.send

    def send(self, topic: str, value: Any = None, key: Any = None, headers: Any = None) -> Any:
        """Queue one message; its handle is kafka-python's future (``wait`` checks them)."""
        try:
            return self._send(topic, value=value, key=key, headers=headers)
        except KafkaError as exc:  # refused before sending (too large): reported by wait()
            return _Refused(exc)

    def wait(self, futures: list, timeout: float | None = None) -> None:
        """Block until every message was acknowledged; raise naming the first failure."""
        if not futures:
            return
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

