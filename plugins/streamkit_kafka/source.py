"""The ``kafka`` source: a consumer-group member that commits only what every sink made durable.

Offsets are committed by hand (auto-commit off): the engine calls
:meth:`KafkaSource.commit` with the positions of a flush once every sink and the
dead-letter destination wrote it. Values stay raw bytes; the engine decodes a
whole batch with orjson.

The client library (``client:``) is a :class:`Consumer` of :mod:`.kafka_python` or
:mod:`.librdkafka`; this module holds what does not depend on it: which positions
may be committed, the rebalance work (flush and commit before a revocation, resume
positions from the sinks after an assignment, forget lost partitions), the lag.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from streamkit import (REQUIRED, Batch, Duration, ListOf, OneOf, Option, Source, SourceUnavailable,
                       StreamkitError)

from .client import CommitFailed, backend, chosen, connection_options, partition_name, unreachable

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
                                                        "(default 30s with kafka-python, 10s with "
                                                        "confluent-kafka)"),
    }

    def __init__(self, config: dict, context: Any) -> None:
        super().__init__(config, context)
        self.topics: list[str] = list(dict.fromkeys(config["topic"]))
        pipeline = context.pipeline
        name = pipeline.name if pipeline is not None else "pipeline"
        self.group_id: str = config["group_id"] or f"streamkit-{name}"
        self.consumer: Any = None             # a Consumer of the chosen client's module
        self.hooks: Any = None
        self.closing = False
        self._read: dict[str, int] = {}       # next offset after the last record handed out
        self._revoking: set[str] = set()      # still committable while a revocation is handled
        self._unsent: dict[str, int] = {}     # positions whose commit failed; sent with the next one
        self._lag: dict[str, int] | None = None
        self._lag_at = 0.0
        self._lag_lock = threading.Lock()

    @property
    def client(self) -> str:
        """The client library this source uses (``auto`` resolved)."""
        return chosen(self.config, self.context)

    # -- connecting ---------------------------------------------------------------------
    def open(self, hooks: Any) -> None:
        self.hooks = hooks
        self.consumer = backend(self.config, self.context).Consumer(self)
        known = self.consumer.subscribe(self.topics)
        missing = [t for t in self.topics if t not in known]
        if missing:
            log.warning("%s: topic %s does not exist yet; waiting for it", self.context.name,
                        ", ".join(missing))

    # -- rebalance work (called by the client while the engine waits in poll()) ----------
    def assigned(self, names: list[str]) -> dict[str, int]:
        """Partitions given to this member: the positions to resume them from (those an
        exactly-once sink stored; the others start from the group's committed offsets)."""
        for name in names:
            self._read.pop(name, None)
        resume = {name: int(pos) for name, pos in (self.hooks.assigned(names) or {}).items()}
        self._read.update(resume)
        log.info("%s: assigned %s", self.context.name, ", ".join(names) or "no partitions")
        return resume

    def revoked(self, names: list[str]) -> None:
        """Partitions about to move to another member: flush and commit them first."""
        log.info("%s: partitions %s are being revoked; flushing and committing first",
                 self.context.name, ", ".join(names))
        self._revoking = set(names)
        try:
            self.hooks.revoking(names)
        finally:
            self._revoking = set()
            for name in names:
                self._read.pop(name, None)

    def lost(self, names: list[str]) -> None:
        """The group already gave these partitions to another member: committing would fail,
        and what was read from them since the last flush is the new owner's to read again,
        so the engine forgets it. A flush already in flight still reaches the sinks, where an
        exactly-once sink's owner epoch refuses it."""
        log.warning("%s: lost partitions %s (this member was dropped from the group)",
                    self.context.name, ", ".join(names))
        for name in names:
            self._read.pop(name, None)
        lost_hook = getattr(self.hooks, "lost", None)
        if lost_hook is not None:
            lost_hook(names)

    # -- the engine's calls ---------------------------------------------------------------
    def poll(self, timeout: float) -> list[Batch] | None:
        batches = self.consumer.poll(timeout)
        read = self._read
        for b in batches:
            read[b.partition] = b.next
        return batches

    def commit(self, positions: dict[str, int]) -> None:
        if self.consumer is None:
            return
        pending = {**self._unsent, **positions}
        owned = self.consumer.assignment() | self._revoking
        offsets = {name: pos for name, pos in pending.items() if name in owned}
        self._unsent = {}
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except CommitFailed as exc:
            # The flush is durable in every sink; only the group offset is behind. A later
            # commit carries these positions too, and an exactly-once sink resumes from its own.
            self._unsent = offsets
            log.warning("%s: committing offsets failed (%s); will retry with the next commit",
                        self.context.name, exc)

    def lag(self) -> dict[str, int] | None:
        """End offset minus the next offset to read, per assigned partition (cached for 1 s)."""
        if self.consumer is None:
            return None
        with self._lag_lock:
            now = time.monotonic()
            if self._lag is not None and now - self._lag_at < 1.0:
                return self._lag
            try:
                ends = self.consumer.end_offsets()
            except Exception:  # lag is advisory: keep the last figure
                return self._lag
            lag = {}
            for name, end in ends.items():
                pos = self._read.get(name)
                if pos is None:
                    try:
                        pos = self.consumer.position(name)
                    except Exception:
                        pos = None
                if pos is not None:
                    lag[name] = max(0, end - pos)
            self._lag, self._lag_at = lag, now
            return lag

    def reset(self, *, dry_run: bool = False) -> dict[str, int]:
        """Delete the group's committed offsets of this source's topics: with the sink's positions
        gone, a new run would otherwise resume from them and skip what was read before. Refused
        while the group has members (the pipeline is still running). Done with kafka-python's
        admin client whichever client reads: only its admin API deletes some topics' offsets."""
        from kafka.errors import KafkaError

        from .kafka_python import admin as kafka_admin

        c = self.config
        admin = None
        try:
            admin = kafka_admin(c, f"streamkit-{self.group_id}-reset")
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
        self.closing = True  # the engine already flushed and committed; nothing more to do
        if self.consumer is not None:
            try:
                self.consumer.close()
            finally:
                self.consumer = None
