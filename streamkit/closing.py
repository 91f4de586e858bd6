"""After every flush: how far the windows are closed, marking them final in the sinks that keep
windows, and writing them once to the sinks that emit closed windows (``emit: final``).

Runs on the writer thread, after every sink made the flush durable, so a window is closed only
when every partition's clock that says so is stored (see :mod:`streamkit.watermarks`).
Closing is idempotent and moves only forward, so a crash at any point is repaired by the next
flush; emitting is at least once (a window emitted just before a crash is emitted again after
it, with the same id).
"""
from __future__ import annotations

import math
import time
from typing import Any

from .watermarks import NEVER, closing_frontiers, latest_seen

#: how often closed windows past their retention's wall-clock expiry are looked for, at most
EXPIRY_EVERY = 30.0

__all__ = ["Closing"]


class Closing:
    def __init__(self, aggregations: list, sinks: list, paths: list[str]) -> None:
        self.aggs = [a for a in aggregations if a.closes]
        self.fields = sorted({a.time_field for a in self.aggs})
        self.stores = [s for s in sinks if type(s).stores_windows]
        self.emitters = [(path, s) for path, s in zip(paths, sinks) if type(s).emits_final(s.config)]
        #: aggregation -> the window end up to which its windows are closed (this run's view)
        self.closed: dict[str, float] = {}
        #: sink path -> aggregation -> how far that sink wrote closed windows
        self.emitted: dict[str, dict[str, float]] | None = None
        #: the clocks the first store holds for every partition, as read after the last flush
        self.stored: dict[str, dict] = {}
        self.expired_at = 0.0  # when expired windows were last dropped (monotonic)

    @property
    def enabled(self) -> bool:
        return bool(self.aggs)

    def after(self, flush: Any) -> None:
        """``flush`` is durable in every sink: close what can be closed, emit what closed."""
        if not self.aggs:
            return
        store = self.stores[0] if self.stores else None
        stored = store.clocks() if store is not None else {}
        self.stored = stored
        fronts = closing_frontiers(flush.view, stored, self.fields)
        advance = {}
        for a in self.aggs:
            upto = last_end(a.window, fronts[a.time_field] - a.lateness)
            if upto > self.closed.get(a.name, NEVER):
                advance[a.name] = upto
        if advance:
            for s in self.stores:
                s.close_windows(advance)
            self.closed.update(advance)
        if self.emitters and store is not None:
            self._emit(store)
        self._drop(flush, stored, bool(advance))

    def _drop(self, flush: Any, stored: dict, advanced: bool) -> None:
        """Closed windows a retention behind the latest event time, once every emitting sink has them."""
        kept = [a for a in self.aggs if a.retention is not None]
        if not kept or not self.stores:
            return
        now = time.monotonic()
        if not advanced and now - self.expired_at < EXPIRY_EVERY:
            return
        self.expired_at = now
        seen = latest_seen(flush.view, stored, self.fields)
        before = {}
        for a in kept:
            upto = min(seen[a.time_field] - a.retention, self.closed.get(a.name, NEVER))
            for path, _ in self.emitters:
                upto = min(upto, (self.emitted or {}).get(path, {}).get(a.name, NEVER))
            if upto > NEVER:
                before[a.name] = upto
        for s in self.stores:
            s.drop_windows(before)

    def _emit(self, store: Any) -> None:
        if self.emitted is None:
            self.emitted = {path: dict(store.emitted(path)) for path, _ in self.emitters}
        for path, sink in self.emitters:
            done = self.emitted[path]
            todo = {a: upto for a, upto in self.closed.items() if upto > done.get(a, NEVER)}
            if not todo:
                continue
            windows = [w for a, upto in todo.items() for w in store.final_windows(a, done.get(a, NEVER), upto)]
            if windows:
                sink.write_final(windows)
            store.keep_emitted(path, todo)
            done.update(todo)


def last_end(window: Any, t: float) -> float:
    """The latest end of a window of ``window`` at or before ``t`` (NEVER if none): closing only
    moves when a window ends, so the store is asked to close windows only then."""
    if t == NEVER or t != t:
        return NEVER
    if t == math.inf:
        return t
    size, hop = window.size, window.hop
    end = math.floor((t - size) / hop) * hop + size
    while end > t:  # a quotient rounded up must not close a window ending after t
        end -= hop
    return end
