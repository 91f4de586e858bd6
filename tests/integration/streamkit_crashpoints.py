"""A test-only plugin (named under a pipeline's ``plugins:``): crash points in the write path.

``STREAMKIT_CRASH_AT=<point>`` or ``<point>@<n>`` ends the process with ``os._exit(CRASH_EXIT)``
the n-th time (default the first) it reaches ``<point>``: nothing after it runs, as after
kill -9. Unset, the types behave exactly like the ones they wrap.

Types:

- sink ``crashing_mongodb``: the ``mongodb`` sink with the points
  ``after_intents`` (a flush's intents stored, no document changed),
  ``mid_bulk`` (half of a flush's document updates applied),
  ``mid_fallback`` (half of the per-partition ``$cond`` updates applied, see ``_update_each``),
  ``before_finish`` (every document merged, the intents not finished);
- dead-letter destination ``crashing_jsonl``: ``jsonl`` with the point ``after_dead_letters``
  (a flush's dead letters written, no sink written yet);
- source ``dealt``: ``n`` events (``processes.make_events`` with ``seed``) dealt round-robin to
  ``partitions`` partitions ``dealt/<i>``, a batch of each partition per poll, so most documents
  get parts from several partitions in one flush.
"""
from __future__ import annotations

import os
from typing import Any

from streamkit import Batch, Option, Source, hookimpl
from streamkit_mongodb import MongoSink
from streamkit_outputs import JsonlDeadLetters

CRASH_EXIT = 86
_reached: dict[str, int] = {}


def crash_point(point: str, before: Any = None) -> None:
    """Leave the process here if ``STREAMKIT_CRASH_AT`` names this point (and this is the n-th
    time it is reached); ``before`` runs first (the part of the work done before the crash)."""
    wanted = os.environ.get("STREAMKIT_CRASH_AT", "")
    name, _, nth = wanted.partition("@")
    if name != point:
        return
    _reached[point] = _reached.get(point, 0) + 1
    if _reached[point] != int(nth or 1):
        return
    if before is not None:
        before()
    os._exit(CRASH_EXIT)


class CrashingMongoSink(MongoSink):
    def write(self, flush: Any) -> None:
        self._fallback = False
        super().write(flush)

    def _set_intents(self, parts: dict) -> None:
        super()._set_intents(parts)
        crash_point("after_intents")

    def _update_each(self, _id: str, parts: list, now: Any) -> Any:
        self._fallback = True  # the next bulk write is the per-partition fallback
        return super()._update_each(_id, parts, now)

    def _bulk(self, ops: list) -> list[int]:
        if ops:
            point = "mid_fallback" if getattr(self, "_fallback", False) else "mid_bulk"
            crash_point(point, lambda: super(CrashingMongoSink, self)._bulk(ops[:len(ops) // 2]))
        return super()._bulk(ops)

    def _finish(self, parts: dict, *clocks) -> None:
        crash_point("before_finish")
        super()._finish(parts, *clocks)

    def close_windows(self, closing: Any) -> None:
        super().close_windows(closing)
        crash_point("after_close")  # windows marked final, not yet emitted

    def keep_emitted(self, sink: str, upto: Any) -> None:
        crash_point("before_keep_emitted")  # windows emitted, how far not yet stored
        super().keep_emitted(sink, upto)


class CrashingJsonlDeadLetters(JsonlDeadLetters):
    def write(self, letters: list) -> None:
        super().write(letters)
        crash_point("after_dead_letters")


class Dealt(Source):
    """Events dealt round-robin to partitions (see the module docstring)."""

    options = {"seed": Option(int, 1, "events"), "n": Option(int, 3000, "events in all"),
               "partitions": Option(int, 3, "partitions"), "batch": Option(int, 100, "records per batch"),
               "lag_every": Option(int, 0, "every n-th event of a partition comes late (processes.dealt)")}

    def open(self, hooks: Any) -> None:
        from processes import dealt
        self.data = dealt(self.config["n"], self.config["seed"], self.config["partitions"], self.config["lag_every"])
        resume = hooks.assigned(sorted(self.data)) or {}
        self.pos = {p: resume.get(p, 0) for p in self.data}

    def poll(self, timeout: float) -> list[Batch] | None:
        batches = []
        for p, records in self.data.items():
            first = self.pos[p]
            chunk = records[first:first + self.config["batch"]]
            if chunk:
                self.pos[p] = first + len(chunk)
                batches.append(Batch(p, chunk, first, first + len(chunk), decoded=True))
        return batches or None


@hookimpl
def register_sinks(register) -> None:
    register("crashing_mongodb", CrashingMongoSink)


@hookimpl
def register_dead_letters(register) -> None:
    register("crashing_jsonl", CrashingJsonlDeadLetters)


@hookimpl
def register_sources(register) -> None:
    register("dealt", Dealt)
