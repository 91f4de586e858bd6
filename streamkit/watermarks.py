"""Event time per partition: watermarks, idle partitions, and how far windows are closed.

Every partition has a *clock* per time field: ``seen``, the latest event time of its records,
and ``frontier``, which is ``seen`` or more (raised while the partition is idle, or to the end
of time when the source ended). A partition's watermark for an aggregation is its frontier
minus the aggregation's ``lateness``:

- **late records** are decided by the record's own partition alone: a record adds nothing to a
  window whose end is at or before its partition's watermark, taken before the record. So the
  decision depends only on the partition's records in order (and its stored clock), never on
  how partitions interleave or where flushes fall: a replay decides exactly as the first pass.
- **closing**: a window is closed once the watermark of *every* partition of the pipeline has
  passed its end, i.e. its end is at or before ``min(frontiers) - lateness``, the minimum over
  the clocks stored with every partition's position (all processes) and this process's own.
  Every partition's frontier is then past it, so no record can change it any more: a closed
  window is final for ever.
- **idle partitions**: a partition that received nothing for ``idle_timeout`` (wall clock; a
  partition counts as active when assigned, so after a restart too) stops holding windows
  open: its owner raises its frontier to the lowest frontier of the partitions still active
  (own and, as stored, other processes'), or, when every partition is idle, each frontier
  moves on with the wall clock from the latest event time seen (``seen + idle time -
  idle_timeout``). A raise is stored with the partition's position like any other clock change,
  by the partition's owner only, so no process closes a window another process can still
  add to.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .windows import END_TIME

__all__ = ["Clock", "Watermarks", "NEVER"]

#: the frontier of a partition whose clock holds nothing yet: it holds every window open
NEVER = -math.inf


@dataclass
class Clock:
    """The event-time clock of one partition (see the module's description)."""

    seen: dict[str, float] = field(default_factory=dict)
    frontier: dict[str, float] = field(default_factory=dict)
    #: wall clock (epoch seconds) of its last record, or of when it was assigned
    active_at: float = 0.0

    def to_json(self) -> dict:
        return {"seen": dict(self.seen), "frontier": dict(self.frontier), "active_at": self.active_at}

    @classmethod
    def from_json(cls, data: Any, now: float) -> "Clock":
        """A stored clock; anything unreadable is an empty one. ``active_at`` is ``now``: a
        partition just assigned is active."""
        clock = cls(active_at=now)
        if isinstance(data, Mapping):
            for name in ("seen", "frontier"):
                values = data.get(name)
                if isinstance(values, Mapping):
                    getattr(clock, name).update({str(k): float(v) for k, v in values.items()
                                                 if isinstance(v, (int, float)) and not isinstance(v, bool)})
        return clock


def _frontier(state: Any, time_field: str) -> float:
    try:
        return float(state["frontier"][time_field])
    except (TypeError, KeyError, ValueError):
        return NEVER


class Watermarks:
    """The clocks of this process's partitions, for the engine (one per pipeline run).

    ``time_fields``: the time fields of the aggregations that close windows."""

    def __init__(self, time_fields: Iterable[str], idle_timeout: float) -> None:
        self.fields = sorted(set(time_fields))
        self.idle_timeout = idle_timeout
        #: partition -> its live clock (every record aggregated so far)
        self.clocks: dict[str, Clock] = {}
        #: partition -> its clock as handed to the last flush (or as resumed): what is durable
        self.flushed: dict[str, dict | None] = {}
        #: partition -> stored clock of the partitions other processes own (as last read)
        self.others: dict[str, dict] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.fields)

    # -- ownership --------------------------------------------------------------------------
    def assign(self, partition: str, stored: dict | None, now: float) -> None:
        self.clocks[partition] = Clock.from_json(stored, now)
        self.flushed[partition] = stored if isinstance(stored, Mapping) else None
        self.others.pop(partition, None)

    def drop(self, partition: str) -> None:
        """A partition this process no longer owns (lost or revoked)."""
        self.clocks.pop(partition, None)
        self.flushed.pop(partition, None)

    def clock(self, partition: str, now: float) -> Clock:
        c = self.clocks.get(partition)
        if c is None:  # a source that never announced the partition
            c = self.clocks[partition] = Clock(active_at=now)
            self.flushed[partition] = None
        return c

    # -- records ----------------------------------------------------------------------------
    def frontier(self, partition: str, time_field: str) -> float:
        c = self.clocks.get(partition)
        return c.frontier.get(time_field, NEVER) if c is not None else NEVER

    def observe(self, partition: str, times: Mapping[str, list], now: float) -> None:
        """A batch of ``partition`` arrived (``times``: its records' event times per field)."""
        c = self.clock(partition, now)
        c.active_at = now
        for f in self.fields:
            col = times.get(f)
            if col:
                top = max(col)
                if top > c.seen.get(f, NEVER):
                    c.seen[f] = top
                if top > c.frontier.get(f, NEVER):
                    c.frontier[f] = top

    # -- idleness and the end of input --------------------------------------------------------
    def idle(self, now: float, skip: Iterable[str] = ()) -> list[str]:
        """Raise the frontiers of this process's idle partitions (not those in ``skip``); the
        partitions whose clock changed."""
        timeout = self.idle_timeout
        skip = set(skip)
        idle = [p for p, c in self.clocks.items() if p not in skip and now - c.active_at >= timeout]
        if not idle:
            return []
        active = [c.to_json() for p, c in self.clocks.items() if p not in idle]
        active += [s for s in self.others.values() if now - _active_at(s) < timeout]
        everyone = [c.to_json() for c in self.clocks.values()] + list(self.others.values())
        changed = []
        for f in self.fields:
            if active:
                target = min(_frontier(s, f) for s in active)
            else:  # nothing is active: time moves on with the wall clock from the latest event
                moved = [float(s["seen"][f]) + max(0.0, now - _active_at(s) - timeout)
                         for s in everyone if f in (s.get("seen") or {})]
                target = max(moved) if moved else NEVER
            for p in idle:
                c = self.clocks[p]
                if target > c.frontier.get(f, NEVER):
                    c.frontier[f] = target
                    changed.append(p)
        return sorted(set(changed))

    def end_of_input(self) -> list[str]:
        """The source ended for good: every window of every own partition can close."""
        for c in self.clocks.values():
            for f in self.fields:
                c.frontier[f] = END_TIME
        return sorted(self.clocks)

    # -- flushes ------------------------------------------------------------------------------
    def hand_over(self, partitions: Iterable[str]) -> dict[str, dict]:
        """The clocks of ``partitions`` for a flush, which makes them durable."""
        out = {}
        for p in partitions:
            c = self.clocks.get(p)
            if c is not None:
                out[p] = self.flushed[p] = c.to_json()
        return out

    def view(self) -> dict[str, dict | None]:
        """This process's partitions as the flushes handed them over (a copy)."""
        return dict(self.flushed)

    def learn(self, stored: Mapping[str, dict]) -> None:
        """The clocks a sink stored for every partition of the pipeline (read after a flush)."""
        self.others = {p: s for p, s in stored.items() if p not in self.clocks}


def _active_at(state: Mapping) -> float:
    v = state.get("active_at")
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def latest_seen(view: Mapping[str, dict | None], stored: Mapping[str, dict],
                time_fields: Iterable[str]) -> dict[str, float]:
    """Time field -> the latest event time of any partition's records (NEVER if none)."""
    states = [s for s in {**stored, **view}.values() if isinstance(s, Mapping)]
    out = {}
    for f in time_fields:
        seen = [float(s["seen"][f]) for s in states if isinstance(s.get("seen"), Mapping) and f in s["seen"]]
        out[f] = max(seen, default=NEVER)
    return out


def closing_frontiers(view: Mapping[str, dict | None], stored: Mapping[str, dict],
                      time_fields: Iterable[str]) -> dict[str, float]:
    """Time field -> the lowest frontier over every partition: this process's (``view``, as its
    flushes made durable) and the others' as stored. A partition with no clock holds it at NEVER."""
    states = {**stored, **view}
    out = {}
    for f in time_fields:
        out[f] = min((_frontier(s, f) for s in states.values()), default=NEVER)
    return out
