"""Decode and validate a batch once, into columns the aggregations share.

The fast path does per-batch work in C (``orjson.loads`` in one comprehension,
``map(itemgetter)`` for columns, ``set(map(type))``, ``min``/``max``/``sum`` for
type and range checks). Only a batch that holds a bad record takes the per-record
path, which finds the bad ones and turns them into dead letters with a reason.

A record is usable when everything a sink must store from it can be stored
(README, "What streamkit rejects, and how"):

- a group-by value is a string of at most ``max_key_bytes`` bytes of UTF-8, an
  integer within signed 64 bits, a finite float or a boolean; ``1``, ``1.0``,
  ``true`` and ``"1"`` are four different groups;
- a number (the ``field`` of sum, avg, min, max) is an integer within signed 64
  bits or a finite float, never a boolean;
- an event time (windowed aggregations only) is epoch seconds or ISO-8601, and
  every window it falls in starts on or after 0001-01-01T00:00:00Z and ends
  before 10000-01-01T00:00:00Z: ``MIN_TIME + longest window <= t < END_TIME -
  longest window``, the longest window among the aggregations using that field.
"""
from __future__ import annotations

import json
from operator import itemgetter
from typing import Any

import orjson

from .components import Batch, DeadLetter
from .windows import END_TIME, MIN_TIME, event_time

KEY_TYPES = frozenset((str, int, float, bool))
NUMBER_TYPES = frozenset((int, float))
TIME_TYPES = frozenset((int, float, str))
INT64_MIN = -(2 ** 63)
INT64_MAX = 2 ** 63 - 1
#: default of an aggregation's ``max_key_bytes``: MongoDB's historical index-key limit, so a
#: group key can be indexed on any server, and far above any real user, item or type id
MAX_KEY_BYTES = 1024
_PLAIN_KEYS = frozenset((str, int))


def tag_key(value: Any) -> Any:
    """A group-by value as a table key that keeps its JSON type.

    Python's dict makes ``1``, ``1.0`` and ``True`` one key; strings and integers
    stay as they are (the fast, common case), floats and booleans become a tagged
    tuple that equals no string, integer or other-typed value. ``-0.0`` is ``0.0``."""
    t = type(value)
    if t is float:
        return ("float", value + 0.0)
    if t is bool:
        return ("bool", value)
    return value


def untag_key(value: Any) -> Any:
    """The group-by value behind a table key made by :func:`tag_key`."""
    return value[1] if type(value) is tuple else value


def _show(v: Any) -> str:
    """A value for a dead letter's reason: short, and never the whole of a huge one."""
    t = type(v)
    if t is int and v.bit_length() > 128:
        return f"an integer of {v.bit_length()} bits"
    if t is str and len(v) > 60:
        return f"{v[:40]!r}... ({len(v):,} characters)"
    return repr(v)[:120]


def number_problem(v: Any) -> str | None:
    """Why ``v`` is not a number a sink can store, or None."""
    t = type(v)
    if t is int:
        return None if INT64_MIN <= v <= INT64_MAX else f"is an integer beyond signed 64 bits: {_show(v)}"
    if t is float:
        return None if v - v == 0 else f"is not a finite number: {v!r}"
    if t is bool:
        return f"is a boolean, not a number: {v!r}"
    return f"is not a number: {_show(v)}"


def key_problem(v: Any, limit: int) -> str | None:
    """Why ``v`` cannot be a group-by value, or None."""
    t = type(v)
    if t is str:
        try:
            size = len(v.encode())
        except UnicodeEncodeError:
            return "is not valid Unicode (a lone surrogate)"
        return None if size <= limit else f"is a group-by value of {size:,} bytes, above max_key_bytes ({limit:,})"
    if t is int:
        return None if INT64_MIN <= v <= INT64_MAX else f"is an integer beyond signed 64 bits: {_show(v)}"
    if t is float:
        return None if v - v == 0 else f"is not a finite number: {v!r}"
    if t is bool:
        return None
    return f"must be a string, number or boolean to group by, got {t.__name__}"


def _big_float(v: Any) -> bool:
    # orjson reads an integer literal outside [-2**63, 2**64) as a double: such a double may
    # have been an integer in the record, which only the record's text can tell
    return type(v) is float and not -_TWO63 < v < _TWO64


_TWO63 = float(2 ** 63)
_TWO64 = float(2 ** 64)


# The checks below trust what orjson guarantees when ``decoded`` is false (records straight from
# JSON text): no NaN or infinity, no lone surrogate, integers within [-2**63, 2**64). Records a
# source handed over as objects (``decoded``) get every check.

def _keys_ok(col: list, kinds: set, limit: int, decoded: bool) -> bool:
    if kinds == {str}:
        if max(map(len, col)) * 4 > limit:  # may exceed the limit: measure the UTF-8
            try:
                return max(map(len, map(str.encode, col))) <= limit
            except UnicodeEncodeError:
                return False
        if decoded:
            try:
                "".join(col).encode()
            except UnicodeEncodeError:
                return False
        return True
    if kinds == {int}:
        return max(col) <= INT64_MAX and (not decoded or INT64_MIN <= min(col))
    if not kinds <= KEY_TYPES:
        return False
    return not any(key_problem(v, limit) or not decoded and _big_float(v) for v in col)


def _numbers_ok(col: list, decoded: bool) -> bool:
    kinds = set(map(type, col))
    if not kinds <= NUMBER_TYPES:
        return False
    if float not in kinds:  # integers: only their range (orjson's start at -2**63)
        if max(col) <= INT64_MAX and (not decoded or INT64_MIN <= min(col)):
            return True
    elif not decoded and INT64_MIN < min(col) and max(col) <= INT64_MAX:
        return True
    if not decoded:
        # an integer in [2**63, 2**64), or a double that may have been an integer literal
        return not any(map(number_problem, col)) and not any(map(_big_float, col))
    try:
        s = sum(col)  # finite only if every value is (or the sum of floats overflowed)
        if s - s == 0 and INT64_MIN <= min(col) and max(col) <= INT64_MAX:
            return True
    except OverflowError:  # an integer too large for a float, next to a float
        pass
    return not any(map(number_problem, col))  # big floats, or a float sum that overflowed


def _times_ok(col: list, low: float, end: float, decoded: bool) -> bool:
    if decoded:  # a NaN escapes min and max
        try:
            s = sum(col)
        except OverflowError:
            return False
        if s != s:
            return False
    return low <= min(col) and max(col) < end


def to_json(value: Any) -> bytes:
    """``value`` as compact JSON (UTF-8), ``str()`` for what JSON has no type for.

    orjson, except where it refuses an integer beyond 64 bits (a sum can leave that
    range): JSON numbers have no size limit, so such a value is written exactly."""
    try:
        return orjson.dumps(value, default=str)
    except TypeError:
        return json.dumps(value, default=str, separators=(",", ":"), ensure_ascii=False).encode()


class Columns:
    """A validated batch: the good records, their columns and parsed event times.

    ``columns`` maps a field to its values and, for a group-by field, ``("key", field)``
    to its values as table keys (:func:`tag_key`; the same list when no value needs a tag).
    """

    __slots__ = ("records", "columns", "times", "dead", "index")

    def __init__(self, records: list, columns: dict, times: dict, dead: list, index: list | None = None) -> None:
        self.records = records
        self.columns = columns
        self.times = times
        self.dead = dead
        #: the batch index of each good record (None: the same index, no record was dead)
        self.index = index


class BatchReader:
    def __init__(self, aggregations: list) -> None:
        keys: dict[str, int] = {}
        numbers: dict[str, None] = {}
        values: dict[str, None] = {}
        times: dict[str, float] = {}
        for agg in aggregations:
            limit = getattr(agg, "max_key_bytes", MAX_KEY_BYTES)
            for f in agg.group_by:
                keys[f] = min(limit, keys.get(f, limit))
            if agg.field and agg.aggregator.keyed:
                keys[agg.field] = min(limit, keys.get(agg.field, limit))
            elif agg.field:
                (numbers if agg.aggregator.numeric else values)[agg.field] = None
            if agg.windowed:
                size = agg.window.size or 0.0
                times[agg.time_field] = max(size, times.get(agg.time_field, 0.0))
        self.key_fields = keys
        self.number_fields = list(numbers)
        self.value_fields = [f for f in values if f not in numbers and f not in keys]
        #: time field -> (lowest, end): accepted times t satisfy lowest <= t < end
        self.time_fields = {f: (MIN_TIME + w, END_TIME - w) for f, w in times.items()}
        self.loads = orjson.loads

    def read(self, batch: Batch) -> Columns:
        if batch.decoded:
            records = batch.records
            ok = not records or set(map(type, records)) == {dict}
        else:
            loads = self.loads
            try:
                records = [loads(r) for r in batch.records]
                ok = not records or set(map(type, records)) == {dict}
            except orjson.JSONDecodeError:
                ok = False
        if ok:
            cols = self._columns(records, batch.decoded)
            if cols is not None:
                return Columns(records, cols[0], cols[1], [])
        return self._slow(batch)

    def _columns(self, records: list, decoded: bool) -> tuple[dict, dict] | None:
        if not records:
            return {}, {}
        columns: dict = {}
        try:
            for f, limit in self.key_fields.items():
                col = list(map(itemgetter(f), records))
                kinds = set(map(type, col))
                if not _keys_ok(col, kinds, limit, decoded):
                    return None
                columns[f] = col
                columns[("key", f)] = col if kinds <= _PLAIN_KEYS else list(map(tag_key, col))
            for f in self.number_fields:
                col = columns[f] if f in columns else list(map(itemgetter(f), records))
                if not _numbers_ok(col, decoded):
                    return None
                columns[f] = col
            for f in self.value_fields:
                col = list(map(itemgetter(f), records))
                if None in col:
                    return None
                columns[f] = col
            times: dict[str, list] = {}
            for f, (low, end) in self.time_fields.items():
                col = list(map(itemgetter(f), records))
                kinds = set(map(type, col))
                if kinds <= NUMBER_TYPES:
                    if not _times_ok(col, low, end, decoded):
                        return None
                elif kinds <= TIME_TYPES:
                    col = [event_time(v) for v in col]
                    if not (low <= min(col) and max(col) < end):
                        return None
                else:
                    return None
                times[f] = col
        except (KeyError, ValueError):
            return None
        return columns, times

    def problem(self, record: Any, raw: Any = None) -> str | None:
        """Why ``record`` cannot be used, or None if it can (``raw``: the text it was decoded from)."""
        if type(record) is not dict:
            return f"not a JSON object: {type(record).__name__}"
        for f, limit in self.key_fields.items():
            if f not in record:
                return f"missing field {f!r}"
            v = record[f]
            if v is None:
                return f"field {f!r} is null"
            why = key_problem(v, limit)
            if why is not None:
                return f"field {f!r} {why}"
        for f in self.number_fields:
            if f not in record:
                return f"missing field {f!r}"
            v = record[f]
            if v is None:
                return f"field {f!r} is null"
            why = number_problem(v)
            if why is not None:
                return f"field {f!r} {why}"
        for f in self.value_fields:
            if f not in record:
                return f"missing field {f!r}"
            if record[f] is None:
                return f"field {f!r} is null"
        for f, (low, end) in self.time_fields.items():
            if f not in record:
                return f"missing time field {f!r}"
            v = record[f]
            try:
                t = event_time(v)
            except ValueError as exc:
                return f"field {f!r}: {exc}"[:200]
            if not low <= t < end:
                return (f"field {f!r}: time {_show(v)} is out of range: its windows must lie within "
                        f"0001-01-01T00:00:00Z and 10000-01-01T00:00:00Z")
        if raw is not None:
            big = [f for f in (*self.key_fields, *self.number_fields) if _big_float(record[f])]
            if big:
                exact = json.loads(raw)
                for f in big:
                    if type(exact[f]) is int:
                        return f"field {f!r} is an integer beyond signed 64 bits: {_show(exact[f])}"
        return None

    def _slow(self, batch: Batch) -> Columns:
        loads = self.loads
        good: list = []
        index: list[int] = []
        dead: list[DeadLetter] = []
        for i, raw in enumerate(batch.records):
            if batch.decoded:
                rec = raw
            else:
                try:
                    rec = loads(raw)
                except orjson.JSONDecodeError as exc:
                    dead.append(DeadLetter(batch.partition, batch.position(i), f"invalid JSON: {exc}", raw))
                    continue
            reason = self.problem(rec, None if batch.decoded else raw)
            if reason is None:
                good.append(rec)
                index.append(i)
            else:
                dead.append(DeadLetter(batch.partition, batch.position(i), reason, raw))
        cols = self._columns(good, True)  # True: the per-record checks read the text of big numbers
        assert cols is not None, "records that passed the per-record checks failed the batch checks"
        return Columns(good, cols[0], cols[1], dead, index)
