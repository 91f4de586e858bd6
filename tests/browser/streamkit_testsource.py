"""A source for the dashboard and alert tests: the records it is given, in fixed batches.

``records`` are dicts; ``batch_size`` fixes the batch (and with ``flush.max_records``
equal to it, the flush) boundaries, so a test knows every intermediate value.
With ``cycle: true`` it repeats the records forever, stamping each with an event
time from its position, paced at ``rate`` records per second (for live pages).
Named under a pipeline's ``plugins:`` key; it registers source type ``records``.
"""
from __future__ import annotations

import time
from typing import Any

from streamkit import Batch, Option, Source, hookimpl


class RecordsSource(Source):
    """Yields the given records in batches of ``batch_size``."""

    options = {
        "records": Option(list, [], "records (mappings) to yield"),
        "partition": Option(str, "records/0", "partition name"),
        "batch_size": Option(int, 50, "records per batch", min=1),
        "rate": Option(float, 0.0, "records per second (0 = as fast as possible)", min=0),
        "cycle": Option(bool, False, "start over at the end, forever"),
        "start_time": Option(float, 1767225600.0, "event time of position 0 in cycle mode (epoch s)"),
        "time_step": Option(float, 0.1, "event seconds between records in cycle mode"),
    }

    def open(self, hooks: Any) -> None:
        p = self.config["partition"]
        resume = hooks.assigned([p]) or {}
        pos = resume.get(p, 0)
        if isinstance(pos, tuple):  # an unfinished flush: the engine replays it with its boundaries
            pos = pos[0]
        self.pos = pos
        self.started = time.monotonic()
        self.start_pos = pos

    def _record(self, i: int) -> dict:
        recs = self.config["records"]
        if not self.config["cycle"]:
            return recs[i]
        rec = dict(recs[i % len(recs)])
        rec["timestamp"] = self.config["start_time"] + i * self.config["time_step"]
        return rec

    def lag(self) -> dict[str, int] | None:
        """Records not yet read (none to tell in cycle mode, which never ends)."""
        if self.config["cycle"]:
            return None
        return {self.config["partition"]: len(self.config["records"]) - self.pos}

    def poll(self, timeout: float) -> list[Batch] | None:
        c = self.config
        total = len(c["records"])
        if not c["cycle"] and self.pos >= total:
            return None
        n = c["batch_size"]
        if not c["cycle"]:
            n = min(n, total - self.pos)
        if c["rate"]:
            due = self.started + (self.pos + n - self.start_pos) / c["rate"]
            wait = due - time.monotonic()
            if wait > timeout:
                time.sleep(timeout)
                return []
            if wait > 0:
                time.sleep(wait)
        records = [self._record(i) for i in range(self.pos, self.pos + n)]
        batch = Batch(c["partition"], records, self.pos, self.pos + n, decoded=True)
        self.pos += n
        return [batch]


@hookimpl
def register_sources(register) -> None:
    register("records", RecordsSource)
