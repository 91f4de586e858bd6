"""The run loop: poll -> decode/validate -> aggregate into deltas -> flush -> acknowledge.

Flushes are written by one writer thread so the next batch is read and
aggregated while the previous flush is being written. At most one flush is in
flight; positions are committed on the source's thread only after every sink
(and the dead-letter destination) made that flush durable. Where each partition
resumes, and what a flush holds back while an interrupted flush is replayed, is
decided in :mod:`streamkit.delivery`.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from itertools import accumulate
from typing import Any

from .closing import Closing
from .components import Batch, DeadLetter, Flush, PartitionDelta
from .definition import changes, definition
from .delivery import Replays, head, tail
from .errors import ConfigError
from .records import BatchReader
from .result import RunResult
from .watermarks import Watermarks
from .windows import iso_time

log = logging.getLogger("streamkit")


_STOP = object()


class _Writer(threading.Thread):
    def __init__(self, engine: "Engine") -> None:
        super().__init__(name="streamkit-writer", daemon=True)
        self.engine = engine
        self.todo: queue.Queue = queue.Queue()
        self.done: queue.Queue = queue.Queue()

    def run(self) -> None:
        while True:
            flush = self.todo.get()
            if flush is _STOP:
                return
            try:
                self.engine.write(flush)
            except BaseException as exc:  # handed to the main thread, which raises it
                self.done.put((flush, exc))
                return
            self.done.put((flush, None))


class Engine:
    def __init__(self, pipeline: Any, *, max_events: int | None = None, duration: float | None = None,
                 progress: Any = None) -> None:
        spec = pipeline.spec
        self.pipeline = pipeline
        self.spec = spec
        self.aggs = spec.aggregations
        self.reader = BatchReader(self.aggs)
        self.source = pipeline.source
        self.sinks = pipeline.sinks
        self.dead_letter = pipeline.dead_letter
        self.hook = pipeline.hook
        self.keep_records = any(type(s).takes_records(s.config) for s in self.sinks)
        self.emits_final = [type(s).emits_final(s.config) for s in self.sinks]
        self.closing = Closing(self.aggs, self.sinks, [s.path for s in spec.sinks])
        self.watermarks = Watermarks(self.closing.fields, spec.idle_timeout)
        #: partitions whose clock changed with no record to flush (idle, or the input ended)
        self.ticked: set[str] = set()
        self.max_events = max_events
        self.duration = duration
        self.progress = progress
        self.result = RunResult()
        self.parts: dict[str, PartitionDelta] = {}
        self.records: list = []   # (partition, records) in arrival order, for sinks that take records
        self.dead: list = []
        self.pending = 0          # records since the last flush (not counting held-back replays)
        self.seq = 0
        self.inflight = 0
        self.replays = Replays()
        self.writer = _Writer(self)

    # -- writer thread ------------------------------------------------------------------
    def write(self, flush: Flush) -> None:
        if flush.dead_letters:
            self.dead_letter.write(flush.dead_letters)
        for sink, emits in zip(self.sinks, self.emits_final):
            if not emits:  # a sink that emits closed windows gets them from the closing step
                sink.write(flush)
        self.closing.after(flush)
        self.hook.flushed(pipeline=self.pipeline, flush=flush)

    # -- source hooks -------------------------------------------------------------------
    def assigned(self, partitions: list[str]) -> dict[str, int]:
        """Resume positions from the sinks that store them (the lowest wins).

        The flush in flight is awaited first, so it is not written under the owner epoch the
        sinks take now; and whatever is still buffered for these partitions is dropped, as
        they are read again from the resume position (a partition this process lost without
        a revocation and gets back would otherwise merge its stale buffer on top)."""
        self.wait_all()
        for p in partitions:
            self._drop(p)
        stored = [sink.positions(partitions) or {} for sink in self.sinks]
        resume = self.replays.assigned(partitions, stored)
        if self.watermarks.enabled:
            now = time.time()
            for p in partitions:
                # the clock stored with the position resumed from
                clock = next((s[p].clock for s in stored if p in s and s[p].position == resume.get(p)), None)
                self.watermarks.assign(p, clock, now)
        return resume

    def lost(self, partitions: list[str]) -> None:
        """Partitions taken away without a revocation: forget what was read from them since
        the last flush (their new owner reads it again); nothing can be committed for them."""
        self.replays.lost(partitions)
        for p in partitions:
            self._drop(p)
            self.watermarks.drop(p)

    def revoking(self, partitions: list[str]) -> None:
        """Flush and commit before partitions move to another process."""
        for p in self.replays.revoking(partitions):
            self._drop(p)
        self.flush()
        self.wait_all()
        for p in partitions:
            self.watermarks.drop(p)

    # -- main loop ----------------------------------------------------------------------
    def run(self) -> RunResult:
        started = time.monotonic()
        deadline = started + self.duration if self.duration is not None else None
        interval = self.spec.flush_interval
        max_records = self.spec.flush_max_records
        last_flush = started
        self.writer.start()
        stopped_by = ""
        try:
            self._check_sinks()
            self.source.open(self)
            self.hook.startup(pipeline=self.pipeline)
            while True:
                if self.pipeline.stopping:
                    stopped_by = "signal"
                    break
                if self.max_events is not None and self.result.records_read >= self.max_events:
                    stopped_by = "max_events"
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    stopped_by = "duration"
                    break
                timeout = max(0.0, min(0.2, last_flush + interval - now))
                if self.inflight and timeout == 0.0:
                    timeout = 0.05  # a flush is due but waits for the writer: don't spin
                batches = self.source.poll(timeout)
                if batches is None:
                    stopped_by = "source_finished"
                    if self.watermarks.enabled:  # the input ended for good: every window can close
                        self.ticked.update(self.watermarks.end_of_input())
                    break
                for batch in batches:
                    self.process(batch)
                    if self.max_events is not None and self.result.records_read >= self.max_events:
                        break
                self.commit_done()
                now = time.monotonic()
                if self.pending >= max_records:  # a size-triggered flush keeps its exact boundary
                    self.flush()
                    last_flush = now
                elif now - last_flush >= interval and self._due():
                    # Time is up but the writer is still busy: keep reading instead of waiting, and
                    # flush as soon as it is free. The deltas grow with distinct keys, not records.
                    if not self.inflight:
                        self.flush()
                        last_flush = now
                elif now - last_flush >= interval:
                    last_flush = now
                if self.progress is not None:
                    self.progress.update(self.result.records_read, self.result.dead_letters, self.result.flushes)
            self.flush()
            self.wait_all()
            self._report_unfinished(stopped_by)
        finally:
            self.writer.todo.put(_STOP)
            self.result.elapsed = time.monotonic() - started
            self.result.stopped_by = stopped_by
        return self.result

    def _check_sinks(self) -> None:
        """Warn when nothing can honour exactly-once; stop if the stored aggregations differ."""
        spec = self.spec
        if spec.delivery != "exactly_once":
            return
        if not any(type(s).exactly_once for s in self.sinks):
            log.warning("delivery is exactly_once but no sink here can honour it (%s): their output is at "
                        "least once, and a restart resumes from the source's own positions",
                        ", ".join(s.type for s in spec.sinks))
        current = definition(self.aggs)
        for sink, sspec in zip(self.sinks, spec.sinks):
            stored = sink.keep_definition(current)
            if stored is None or (isinstance(stored, dict) and stored.get("fingerprint") == current["fingerprint"]):
                continue
            what = changes(stored, current)
            if not what:  # the same aggregations in another order
                continue
            file = self._file_for_commands()
            raise ConfigError(f"the aggregations of pipeline {spec.name!r} changed since {sspec.path} "
                              f"stored its positions: {'; '.join(what)}; to start over run "
                              f"`streamkit reset {file}`, or give the pipeline a new `name:`", file=spec.file)

    def _report_unfinished(self, stopped_by: str) -> None:
        """Partitions held back in the middle of a replay: the stored intent makes the next
        start replay them whole; if the source itself ended short of the intent's end, no
        start can, so say so (the CLI exits 1)."""
        unfinished = self.replays.unfinished({p: part.next for p, part in self.parts.items()})
        self.result.unfinished.update(unfinished)
        for p, (reached, until) in unfinished.items():
            if stopped_by == "source_finished":
                file = self._file_for_commands()
                log.warning("%s: the source ended at position %d, before the end (%d) of the interrupted flush "
                            "it must replay, so nothing of it was written: let the source reach %d again, or "
                            "start over with `streamkit reset %s`", p, reached, until, until, file)
            else:
                log.warning("%s: stopped at position %d while replaying an interrupted flush that ends at %d: "
                            "nothing of it was written; the next start replays it whole", p, reached, until)

    def _file_for_commands(self) -> str:
        """The pipeline file as a command line names it (``FILE`` when it came from data)."""
        file = self.spec.file
        return file if file and not file.startswith("<") else "FILE"

    def _due(self) -> bool:
        """Is there anything to flush: records, or clocks that moved on while idle?"""
        if self.watermarks.enabled:
            self.watermarks.learn(self.closing.stored)
            self.ticked.update(self.watermarks.idle(time.time(), skip=self.replays.held(self.watermarks.clocks)))
        return bool(self.parts or self.ticked)

    def process(self, batch: Batch) -> None:
        n = len(batch.records)
        if not n:
            return
        if self.max_events is not None:
            room = self.max_events - self.result.records_read
            if room < n:
                batch = head(batch, room)
                n = room
        done = self.replays.completes(batch)
        if done is None:
            self._aggregate(batch)
            return
        if done:
            self._aggregate(head(batch, done))
        self.flush()  # the replayed flush ends exactly where the interrupted one did
        self.wait_all()
        if done < n:
            self._aggregate(tail(batch, done))

    def _aggregate(self, batch: Batch) -> None:
        cols = self.reader.read(batch)
        part = self.parts.get(batch.partition)
        if part is None:
            part = PartitionDelta(batch.partition, batch.first, batch.next,
                                  tables={a.name: a.aggregator.new_table() for a in self.aggs})
            self.parts[batch.partition] = part
        good = len(cols.records)
        wm = self.watermarks
        if good:
            for agg in self.aggs:
                frontier = wm.frontier(batch.partition, agg.time_field) if agg.closes else None
                late = agg.add_columns(part.tables[agg.name], cols.columns, cols.times.get(agg.time_field), good,
                                       frontier)
                if late:
                    self._late(agg, batch, cols, late, frontier)
        if wm.enabled:
            wm.observe(batch.partition, cols.times, time.time())
        n = len(batch.records)
        part.next = batch.next
        part.records += n
        if self.keep_records:
            self.records.append((batch.partition, cols.records))
        if cols.dead:
            self.dead.extend(cols.dead)
        if not self.replays.replaying(batch.partition):
            self.pending += n
        self.result.records_read += n
        self.result.records_aggregated += good
        self.result.dead_letters += len(cols.dead)

    def _late(self, agg, batch: Batch, cols, late: list[int], frontier: float) -> None:
        """Records too late for every window of ``agg``: counted, and dead letters if so configured."""
        self.result.late[agg.name] = self.result.late.get(agg.name, 0) + len(late)
        if agg.late != "dead_letter":
            return
        index = cols.index
        times = cols.times[agg.time_field]
        reached = list(accumulate(times, max, initial=frontier))  # the partition's event time before each
        for i in late:
            j = index[i] if index is not None else i
            reason = (f"late for aggregation {agg.name!r}: time {iso_time(times[i])} is in windows closed for its "
                      f"partition (its event time had reached {iso_time(reached[i])}; lateness "
                      f"{agg.lateness:g}s)")
            self.dead.append(DeadLetter(batch.partition, batch.position(j), reason, batch.records[j]))
            self.result.dead_letters += 1

    def flush(self) -> None:
        """Hand everything since the last flush to the writer (waits if one is already in flight).
        A partition in the middle of a replay is held back (see :mod:`streamkit.delivery`)."""
        kept = self.replays.held(self.parts)
        held = {p: part for p, part in self.parts.items() if p in kept}
        parts = {p: part for p, part in self.parts.items() if p not in kept}
        ticked = self.ticked - kept
        if not parts and not ticked:
            return
        while self.inflight >= 1:
            self.wait_one()
        records = [r for p, chunk in self.records if p not in held for r in chunk]
        dead = [d for d in self.dead if d.partition not in held]
        self.seq += 1
        flush = Flush(self.seq, parts, self.aggs, records if self.keep_records else None,
                      dead, created_at=time.time())
        if self.watermarks.enabled:
            flush.clocks = self.watermarks.hand_over(set(parts) | ticked)
            flush.view = self.watermarks.view()
            self.ticked -= ticked
        self.parts = held
        self.records = [c for c in self.records if c[0] in held]
        self.dead = [d for d in self.dead if d.partition in held]
        self.pending = 0
        self.inflight += 1
        self.writer.todo.put(flush)

    def _drop(self, partition: str) -> None:
        """Forget what was read from a partition since its last flush (it will be read again)."""
        self.parts.pop(partition, None)
        self.records = [c for c in self.records if c[0] != partition]
        self.dead = [d for d in self.dead if d.partition != partition]

    # -- acknowledging what the writer finished -----------------------------------------
    def commit_done(self) -> None:
        """Commit the positions of every flush the writer has finished; do not wait."""
        while self.inflight and self._commit_next(block=False):
            pass

    def wait_one(self) -> None:
        """Wait for the writer to finish one flush (if any is in flight), and commit it."""
        if self.inflight:
            self._commit_next(block=True)

    def wait_all(self) -> None:
        """Wait for every flush in flight, and commit them."""
        while self.inflight:
            self._commit_next(block=True)

    def _commit_next(self, block: bool) -> bool:
        try:
            flush, exc = self.writer.done.get(block=block)
        except queue.Empty:
            return False
        self.inflight -= 1
        if exc is not None:
            raise exc
        self.source.commit(flush.positions)
        self.result.positions.update(flush.positions)
        self.result.flushes += 1
        return True
