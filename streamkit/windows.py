"""Window assignment by event time: all-time, tumbling and hopping."""
from __future__ import annotations

import datetime as _dt
import math
import re
import sys
from typing import Any

from .options import parse_duration

#: the one time zone streamkit speaks: event times, window bounds and stored dates are UTC
UTC = _dt.timezone.utc


def iso_time(value: Any) -> str | None:
    """ISO-8601 in UTC, ending in ``Z``, of a datetime (a naive one is UTC) or of epoch seconds;
    None stays None and anything else is shown as text."""
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if type(value) is float or type(value) is int:
        return _dt.datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
    return str(value)


#: the event times a record may carry: what Python's datetime and MongoDB's dates both hold
#: (0001-01-01T00:00:00Z up to, not including, 10000-01-01T00:00:00Z), as epoch seconds
MIN_TIME = _dt.datetime(1, 1, 1, tzinfo=UTC).timestamp()
END_TIME = _dt.datetime(9999, 12, 31, tzinfo=UTC).timestamp() + 86400.0


def _fromisoformat(value: str) -> _dt.datetime:
    """``datetime.fromisoformat`` with the 3.11 additions that matter here on 3.10 too:
    a ``Z`` for UTC and fractions of a second with any number of digits."""
    try:
        return _dt.datetime.fromisoformat(value)
    except ValueError:
        if not _OLD_ISO:
            raise
    s = value
    if s[-1:] in ("Z", "z"):
        s = s[:-1] + "+00:00"
    m = _FRACTION.search(s)
    if m:  # 3.10 takes exactly 3 or 6 digits
        digits = (m.group(1) + "000000")[:6]
        s = s[:m.start()] + "." + digits + s[m.end():]
    return _dt.datetime.fromisoformat(s)


_OLD_ISO = sys.version_info < (3, 11)
_FRACTION = re.compile(r"\.(\d+)(?=$|[+-])")


def event_time(value: Any) -> float:
    """Epoch seconds from a number (epoch seconds) or an ISO-8601 string (UTC if no zone).

    Raises ValueError for anything else, for non-finite numbers and for numbers too large
    to be a float; whether the time lies in the accepted range is the caller's check
    (see ``MIN_TIME`` / ``END_TIME``)."""
    t = type(value)
    if t is int or t is float:
        try:
            f = float(value)
        except OverflowError:
            raise ValueError("not a time: a number too large for a float") from None
        if not math.isfinite(f):
            raise ValueError(f"not a finite time: {value!r}")
        return f
    if t is str:
        try:
            d = _fromisoformat(value)
        except (ValueError, IndexError):
            raise ValueError(f"not an ISO-8601 time or epoch seconds: {value!r}"[:200]) from None
        if d.tzinfo is None:
            d = d.replace(tzinfo=UTC)
        try:
            return d.timestamp()
        except (OverflowError, ValueError):
            raise ValueError(f"not a representable time: {value!r}"[:200]) from None
    raise ValueError(f"not an ISO-8601 time or epoch seconds: {value!r}"[:200])


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

    def first_start(self, t: float) -> float:
        """The start of the oldest window holding ``t``."""
        return t - t % self.size


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

    def first_start(self, t: float) -> float:
        """The start of the oldest window holding ``t``."""
        return self.all_starts(t)[0]


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

