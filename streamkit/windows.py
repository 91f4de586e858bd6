"""Window assignment by event time: all-time, tumbling and hopping."""
from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from .options import parse_duration

_UTC = _dt.timezone.utc


def event_time(value: Any) -> float:
    """Epoch seconds from a number (epoch seconds) or an ISO-8601 string (UTC if no zone)."""
    t = type(value)
    if t is int or t is float:
        if t is float and not math.isfinite(value):
            raise ValueError(f"not a finite time: {value!r}")
        return float(value)
    if t is str:
        try:
            d = _dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an ISO-8601 time or epoch seconds: {value!r}") from None
        if d.tzinfo is None:
            d = d.replace(tzinfo=_UTC)
        return d.timestamp()
    raise ValueError(f"not an ISO-8601 time or epoch seconds: {value!r}")


class Window:
    """All-time window: every record belongs to the single window (None, None)."""

    kind = "all"
    size: float | None = None
    hop: float | None = None

    def describe(self) -> dict:
        return {"kind": self.kind, "size": self.size, "hop": self.hop}

    def starts(self, times: list[float]) -> list:
        raise NotImplementedError


class Tumbling(Window):
    kind = "tumbling"

    def __init__(self, size: float) -> None:
        self.size = size
        self.hop = size

    def starts(self, times: list[float]) -> list[float]:
        size = self.size
        return [t - t % size for t in times]


class Hopping(Window):
    """Overlapping windows of ``size`` starting every ``hop``; a record is in ``ceil(size/hop)``."""

    kind = "hopping"

    def __init__(self, size: float, hop: float) -> None:
        self.size = size
        self.hop = hop
        self.count = math.ceil(size / hop)

    def all_starts(self, t: float) -> list[float]:
        last = t - t % self.hop
        starts = [last - i * self.hop for i in range(self.count)]
        return [s for s in starts if s + self.size > t][::-1]


ALL_TIME = Window()

#: a hopping window puts each record in ceil(size / hop) windows: one delta each, per flush
MAX_WINDOWS_PER_RECORD = 100


def parse_window(value: Any) -> Window:
    """``None`` -> all-time; ``"1m"`` -> tumbling; ``{size: 5m, hop: 1m}`` -> hopping.

    A hopping window whose size is more than :data:`MAX_WINDOWS_PER_RECORD` hops is refused:
    every record would be added to that many windows.
    """
    if value is None or value == "all":
        return ALL_TIME
    if isinstance(value, dict):
        unknown = set(value) - {"size", "hop"}
        if unknown:
            raise ValueError(f"unknown window key {sorted(unknown)[0]!r}; a window takes size and hop")
        if "size" not in value:
            raise ValueError("a window mapping needs size (and optionally hop)")
        size = parse_duration(value["size"])
        hop = parse_duration(value.get("hop", value["size"]))
        if size <= 0 or hop <= 0:
            raise ValueError("window size and hop must be positive")
        if hop > size:
            raise ValueError("window hop must not exceed its size")
        count = math.ceil(size / hop)
        if count > MAX_WINDOWS_PER_RECORD:
            raise ValueError(f"size/hop is {size / hop:.6g}: every record would fall into {count:,} windows; "
                             f"at most {MAX_WINDOWS_PER_RECORD} are allowed (make hop at least "
                             f"{size / MAX_WINDOWS_PER_RECORD:g}s)")
        return Tumbling(size) if hop == size else Hopping(size, hop)
    size = parse_duration(value)
    if size <= 0:
        raise ValueError("window size must be positive")
    return Tumbling(size)

