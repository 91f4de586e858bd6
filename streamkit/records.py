"""Decode and validate a batch once, into columns the aggregations share.

The fast path does per-batch work in C (``orjson.loads`` in one comprehension,
``map(itemgetter)`` for columns, ``set(map(type))`` for type checks). Only a batch
that holds a bad record takes the per-record path, which finds the bad ones and
turns them into dead letters with a reason.
"""
from __future__ import annotations

from operator import itemgetter
from typing import Any

import orjson

from .components import Batch, DeadLetter
from .windows import event_time

KEY_TYPES = frozenset((str, int, float, bool))
NUMBER_TYPES = frozenset((int, float))
TIME_TYPES = frozenset((int, float, str))


class Columns:
    """A validated batch: the good records, their columns and parsed event times."""

    __slots__ = ("records", "columns", "times", "dead")

    def __init__(self, records: list, columns: dict, times: dict, dead: list) -> None:
        self.records = records
        self.columns = columns
        self.times = times
        self.dead = dead


class BatchReader:
    def __init__(self, aggregations: list) -> None:
        keys: dict[str, None] = {}
        numbers: dict[str, None] = {}
        values: dict[str, None] = {}
        times: dict[str, None] = {}
        for agg in aggregations:
            for f in agg.group_by:
                keys[f] = None
            if agg.field:
                (numbers if agg.aggregator.numeric else values)[agg.field] = None
            if agg.windowed:
                times[agg.time_field] = None
        self.key_fields = list(keys)
        self.number_fields = list(numbers)
        self.value_fields = [f for f in values if f not in numbers]
        self.time_fields = list(times)
        self.checks: list[tuple[str, frozenset | None]] = (
            [(f, KEY_TYPES) for f in self.key_fields]
            + [(f, NUMBER_TYPES) for f in self.number_fields if f not in keys]
            + [(f, None) for f in self.value_fields if f not in keys]
        )
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
            cols = self._columns(records)
            if cols is not None:
                return Columns(records, cols[0], cols[1], [])
        return self._slow(batch)

    def _columns(self, records: list) -> tuple[dict, dict] | None:
        columns: dict[str, list] = {}
        try:
            for f, kinds in self.checks:
                col = list(map(itemgetter(f), records))
                if kinds is not None and not kinds.issuperset(map(type, col)):
                    return None
                if kinds is None and None in col:
                    return None
                columns[f] = col
            times: dict[str, list[float]] = {}
            for f in self.time_fields:
                col = list(map(itemgetter(f), records))
                kinds = set(map(type, col))
                if kinds <= NUMBER_TYPES:
                    times[f] = col
                elif kinds <= TIME_TYPES:
                    times[f] = [event_time(v) for v in col]
                else:
                    return None
        except (KeyError, ValueError):
            return None
        # NaN would poison every sum it touches: such a record is a dead letter
        for f in self.number_fields:
            col = columns[f]
            s = sum(col)
            if s != s and any(v != v for v in col):
                return None
        return columns, times

    def problem(self, record: Any) -> str | None:
        """Why ``record`` cannot be used, or None if it can."""
        if type(record) is not dict:
            return f"not a JSON object: {type(record).__name__}"
        for f, kinds in self.checks:
            if f not in record:
                return f"missing field {f!r}"
            v = record[f]
            if v is None:
                return f"field {f!r} is null"
            if kinds is NUMBER_TYPES and (type(v) not in NUMBER_TYPES or v != v):
                return f"field {f!r} is not a number: {v!r}"[:200]
            if kinds is KEY_TYPES and type(v) not in KEY_TYPES:
                return f"field {f!r} must be a string, number or boolean to group by, got {type(v).__name__}"
        for f in self.time_fields:
            if f not in record:
                return f"missing time field {f!r}"
            try:
                event_time(record[f])
            except ValueError as exc:
                return f"field {f!r}: {exc}"[:200]
        return None

    def _slow(self, batch: Batch) -> Columns:
        loads = self.loads
        good: list = []
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
            reason = self.problem(rec)
            if reason is None:
                good.append(rec)
            else:
                dead.append(DeadLetter(batch.partition, batch.position(i), reason, raw))
        cols = self._columns(good)
        assert cols is not None, "records that passed the per-record checks failed the batch checks"
        return Columns(good, cols[0], cols[1], dead)
