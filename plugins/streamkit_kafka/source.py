"""The ``kafka`` source: a consumer-group member that commits only what every sink made durable.

Offsets are committed by hand (``enable_auto_commit=False``): the engine calls
:meth:`KafkaSource.commit` with the positions of a flush once every sink and the
dead-letter destination wrote it. Values stay raw bytes; the engine decodes a
whole batch with orjson.

Rebalances: kafka-python 3 runs rebalance listeners on its IO thread, where a
listener may not block (no commit, no database call) without stalling heartbeats.
The listener here is asynchronous and hands the engine's work (flush and commit
before a revocation; resume positions from the sinks after an assignment) to a
short-lived worker thread, awaiting it. The thread that called ``poll()`` is
blocked in kafka-python meanwhile, so the engine's state is not touched twice.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from streamkit import (REQUIRED, Batch, Duration, ListOf, OneOf, Option, Source, SourceUnavailable,
                       StreamkitError)

from .client import (client_config, connection_options, construct, partition_name, quiet_kafka_logging,
                     unreachable)

log = logging.getLogger("streamkit.kafka")


class KafkaSource(Source):
    """Reads JSON records from Kafka topics as a consumer-group member; commits after sinks flushed."""

    splittable = True  # processes of one consumer group share the partitions

    options = {
        **connection_options(),
        "topic": Option(ListOf(str), REQUIRED, "topic to read (or a list of topics)"),
        "group_id": Option(str, None, "consumer group (default: streamkit-<pipeline name>)"),
        "start": Option(OneOf("earliest", "latest"), "earliest",
                        "where a group without committed offsets starts reading"),
        "max_poll_records": Option(int, 10_000, "records one poll returns at most", min=1),
        "dead_letter_topic": Option(str, None, "topic for `dead_letter: {type: kafka}` "
                                               "(default: <topic>.dlq)"),
        "session_timeout": Option(Duration, None, "how soon the group moves a dead member's partitions "
                                                  "(default 45s; the broker's minimum is 6s)"),
        "group_instance_id": Option(str, None, "static membership: a restarted process with the same id "
                                               "takes its partitions back without a rebalance"),
        "reconnect_backoff_max": Option(Duration, None, "longest wait between reconnects to a broker "
                                                        "(default 30s)"),
    }

    def __init__(self, config: dict, context: Any) -> None:
        super().__init__(config, context)
        self.topics: list[str] = list(dict.fromkeys(config["topic"]))
        pipeline = context.pipeline
        name = pipeline.name if pipeline is not None else "pipeline"
        self.group_id: str = config["group_id"] or f"streamkit-{name}"
        self.consumer: Any = None
        self.hooks: Any = None
        self._names: dict[Any, str] = {}      # TopicPartition -> "topic/3"
        self._tps: dict[str, Any] = {}        # "topic/3" -> TopicPartition
        self._read: dict[Any, int] = {}       # next offset after the last record handed out
        self._revoking: set = set()           # still committable while a revocation is handled
        self._unsent: dict[str, int] = {}     # positions whose commit failed; sent with the next one
        self._closing = False
        self._listener_error: BaseException | None = None
        self._lag: dict[str, int] | None = None
        self._lag_at = 0.0
        self._lag_lock = threading.Lock()

    # -- connecting ---------------------------------------------------------------------
    def open(self, hooks: Any) -> None:
        quiet_kafka_logging()
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        self.hooks = hooks
        c = self.config
        try:
            self.consumer = construct(
                KafkaConsumer,
                group_id=self.group_id,
                client_id=f"streamkit-{self.group_id}",
                enable_auto_commit=False,
                auto_offset_reset=c["start"],
                max_poll_records=c["max_poll_records"],
                # a consumer that creates the topics it reads would create them with the
                # broker's default partition count; a missing topic is reported instead
                allow_auto_create_topics=False,
                **_group_config(c),
                **client_config(c))
        except KafkaError as exc:
            raise SourceUnavailable(unreachable(self.context.name, c, exc)) from None
        self.consumer.subscribe(self.topics, listener=_make_listener(self))
        # Metadata fetched after subscribing, before the first join: the group leader then
        # assigns the real partitions at once instead of joining twice.
        self._warn_missing_topics()

    def _warn_missing_topics(self) -> None:
        try:
            known = self.consumer.topics()
        except Exception:  # only a warning: the group join reports real trouble
            return
        missing = [t for t in self.topics if t not in known]
        if missing:
            log.warning("%s: topic %s does not exist yet; waiting for it", self.context.name,
                        ", ".join(missing))

    def _name(self, tp: Any) -> str:
        name = self._names.get(tp)
        if name is None:
            name = partition_name(tp.topic, tp.partition)
            self._names[tp] = name
            self._tps[name] = tp
        return name

    # -- rebalance work (runs on a worker thread while poll() is blocked) -----------------
    def _assigned(self, partitions: set) -> dict:
        tps = sorted(partitions)
        names = [self._name(tp) for tp in tps]
        for tp in tps:
            self._read.pop(tp, None)
        resume = self.hooks.assigned(names) or {}
        log.info("%s: assigned %s", self.context.name, ", ".join(names) or "no partitions")
        return resume

    def _revoked(self, partitions: set) -> None:
        names = [self._name(tp) for tp in sorted(partitions)]
        log.info("%s: partitions %s are being revoked; flushing and committing first",
                 self.context.name, ", ".join(names))
        self._revoking = set(partitions)
        try:
            self.hooks.revoking(names)
        finally:
            self._revoking = set()
            for tp in partitions:
                self._read.pop(tp, None)

    def _seek(self, resume: dict) -> None:
        for name, pos in resume.items():
            tp = self._tps.get(name)
            if tp is None:
                continue
            self.consumer.seek(tp, int(pos))
            self._read[tp] = int(pos)

    # -- the engine's calls ---------------------------------------------------------------
    def poll(self, timeout: float) -> list[Batch] | None:
        from kafka.errors import KafkaError

        try:
            got = self.consumer.poll(timeout_ms=int(timeout * 1000),
                                     max_records=self.config["max_poll_records"])
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
            self._read[tp] = last + 1
        return batches

    def commit(self, positions: dict[str, int]) -> None:
        from kafka import OffsetAndMetadata
        from kafka.errors import KafkaError

        if self.consumer is None:
            return
        pending = {**self._unsent, **positions}
        owned = set(self.consumer.assignment()) | self._revoking
        offsets = {}
        for name, pos in pending.items():
            tp = self._tps.get(name)
            if tp is not None and tp in owned:
                offsets[tp] = OffsetAndMetadata(pos, "", -1)
        self._unsent = {}
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except KafkaError as exc:
            # The flush is durable in every sink; only the group offset is behind. A later
            # commit carries these positions too, and an exactly-once sink resumes from its own.
            self._unsent = {self._names[tp]: o.offset for tp, o in offsets.items()}
            log.warning("%s: committing offsets failed (%s: %s); will retry with the next commit",
                        self.context.name, type(exc).__name__, exc)

    def lag(self) -> dict[str, int] | None:
        """End offset minus the next offset to read, per assigned partition (cached for 1 s)."""
        if self.consumer is None:
            return None
        with self._lag_lock:
            now = time.monotonic()
            if self._lag is not None and now - self._lag_at < 1.0:
                return self._lag
            try:
                tps = list(self.consumer.assignment())
                ends = self.consumer.end_offsets(tps, timeout_ms=2000) if tps else {}
            except Exception:  # lag is advisory: keep the last figure
                return self._lag
            lag = {}
            for tp, end in ends.items():
                pos = self._read.get(tp)
                if pos is None:
                    try:
                        pos = self.consumer.position(tp, timeout_ms=1000)
                    except Exception:
                        pos = None
                if pos is not None:
                    lag[self._name(tp)] = max(0, end - pos)
            self._lag, self._lag_at = lag, now
            return lag

    def reset(self, *, dry_run: bool = False) -> dict[str, int]:
        """Delete the group's committed offsets of this source's topics: with the sink's positions
        gone, a new run would otherwise resume from them and skip what was read before. Refused
        while the group has members (the pipeline is still running)."""
        quiet_kafka_logging()
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        c = self.config
        admin = None
        try:
            admin = construct(KafkaAdminClient, client_id=f"streamkit-{self.group_id}-reset", **client_config(c))
            group = admin.describe_groups([self.group_id]).get(self.group_id) or {}
            members = group.get("members") or []
            if members:
                raise StreamkitError(f"{self.context.name}: consumer group {self.group_id!r} has {len(members)} "
                                     f"active member(s): stop every process of the pipeline, then reset")
            committed = admin.list_group_offsets({self.group_id: None}).get(self.group_id) or {}
            tps = [tp for tp in committed if tp.topic in self.topics]
            if tps and not dry_run:
                failed = {tp: err for tp, err in admin.delete_group_offsets(self.group_id, tps).items()
                          if err.__name__ != "NoError"}
                if failed:
                    tp, err = next(iter(failed.items()))
                    raise StreamkitError(f"{self.context.name}: could not delete the committed offset of "
                                         f"{partition_name(tp.topic, tp.partition)} in group {self.group_id!r}: "
                                         f"{err.__name__}")
        except KafkaError as exc:
            if admin is None:
                raise SourceUnavailable(unreachable(self.context.name, c, exc)) from None
            raise StreamkitError(f"{self.context.name}: could not reset consumer group {self.group_id!r}: "
                                 f"{type(exc).__name__}: {exc}") from None
        finally:
            if admin is not None:
                admin.close()
        return {f"committed offsets of group {self.group_id}": len(tps)}

    def close(self) -> None:
        self._closing = True  # the engine already flushed and committed; nothing more to do
        if self.consumer is not None:
            try:
                self.consumer.close(autocommit=False, timeout_ms=5000)
            finally:
                self.consumer = None


def _group_config(c: dict) -> dict:
    """Group settings the user set; unset ones keep kafka-python's defaults."""
    out: dict = {}
    if c["session_timeout"] is not None:
        ms = int(c["session_timeout"] * 1000)
        out["session_timeout_ms"] = ms
        out["heartbeat_interval_ms"] = max(100, min(3000, ms // 3))  # must stay below a third
    if c["group_instance_id"] is not None:
        out["group_instance_id"] = c["group_instance_id"]
    if c["reconnect_backoff_max"] is not None:
        out["reconnect_backoff_max_ms"] = int(c["reconnect_backoff_max"] * 1000)
    return out


def _make_listener(source: KafkaSource) -> Any:
    """An AsyncConsumerRebalanceListener bound to ``source`` (kafka-python checks the class)."""
    from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener

    class Listener(AsyncConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: set) -> None:
            if source._closing or not revoked:
                return
            await _in_thread(source, source._revoked, revoked)

        async def on_partitions_assigned(self, assigned: set) -> None:
            resume = await _in_thread(source, source._assigned, assigned)
            if resume:
                source._seek(resume)

        async def on_partitions_lost(self, lost: set) -> None:
            # The group already gave these partitions to another member: committing would
            # fail, and what was read from them since the last flush is the new owner's to
            # read again, so the engine forgets it. A flush already in flight still reaches
            # the sinks, where an exactly-once sink's owner epoch refuses it.
            names = sorted(source._name(tp) for tp in lost)
            log.warning("%s: lost partitions %s (this member was dropped from the group)",
                        source.context.name, ", ".join(names))
            lost_hook = getattr(source.hooks, "lost", None)
            if lost_hook is not None:
                await _in_thread(source, lost_hook, names)

    return Listener()


async def _in_thread(source: KafkaSource, fn: Any, arg: Any) -> Any:
    """Run ``fn(arg)`` on a worker thread and await it without blocking kafka-python's IO loop."""
    from kafka.future import Future

    future = Future()

    def work() -> None:
        try:
            future.success(fn(arg))
        except BaseException as exc:
            source._listener_error = exc
            future.failure(exc)
        # The IO loop may be sleeping in select() with nothing scheduled soon; wake it so
        # the rebalance continues now rather than at the next heartbeat.
        net = getattr(source.consumer, "_net", None)
        if net is not None and hasattr(net, "wakeup"):
            net.wakeup()

    threading.Thread(target=work, name="streamkit-kafka-rebalance", daemon=True).start()
    return await future
