"""One configured aggregation: an aggregator type, group-by fields, a value field and a window."""
from __future__ import annotations

from dataclasses import dataclass, field as _field
from itertools import accumulate
from typing import Any, Iterable, Iterator

from .components import Aggregator, Delta
from .records import MAX_KEY_BYTES, untag_key
from .windows import ALL_TIME, Hopping, Window


@dataclass
class AggregationSpec:
    name: str
    type: str
    aggregator: Aggregator
    group_by: list[str] = _field(default_factory=list)
    field: str | None = None
    window: Window = ALL_TIME
    time_field: str = "timestamp"
    options: dict = _field(default_factory=dict)
    #: longest group-by value, in bytes of UTF-8; longer ones make the record a dead letter
    max_key_bytes: int = MAX_KEY_BYTES
    #: seconds a window waits for late records once its partition's event time passed its end;
    #: None: windows never close (and a record of any age merges into its window)
    lateness: float | None = None
    #: what becomes of a record too late for every one of its windows: drop_counted | dead_letter
    late: str = "drop_counted"
    #: seconds a closed window is kept by a sink that keeps windows; None: for ever
    retention: float | None = None

    @property
    def windowed(self) -> bool:
        return self.window is not ALL_TIME

    @property
    def closes(self) -> bool:
        """Do its windows close (a windowed aggregation with a ``lateness``)?"""
        return self.lateness is not None and self.window is not ALL_TIME

    def describe(self) -> dict:
        return {"name": self.name, "type": self.type, "group_by": list(self.group_by),
                "field": self.field, "window": self.window.describe(),
                "fields": list(self.aggregator.fields), "primary": self.aggregator.primary}

    # -- hot path: one call per batch -------------------------------------------------
    def add_columns(self, table: dict, columns: dict[str, list], times: list[float] | None, n: int,
                    frontier: float | None = None) -> list[int]:
        """Aggregate one validated batch given as columns (field -> list of values, and
        ``("key", field)`` -> the field's values as table keys; see ``records.Columns``).

        For an aggregation that closes windows, ``frontier`` is the partition's frontier before
        the batch (:mod:`streamkit.watermarks`): a record adds nothing to a window whose end is
        at or before its partition's watermark just before it. Returns the indexes of the
        records too late for every one of their windows (they added nothing)."""
        gb = self.group_by
        if len(gb) == 1:
            keys: list = columns[("key", gb[0])]
        elif gb:
            keys = list(zip(*(columns[("key", f)] for f in gb)))
        else:
            keys = [()] * n
        values = None if not self.field else (
            columns[("key", self.field)] if self.aggregator.keyed else columns[self.field])
        late: list[int] = []
        if self.windowed:
            assert times is not None
            size = self.window.size
            limits = None
            if frontier is not None:
                lateness = self.lateness or 0.0
                # no record can be late when every window ends after the batch's highest watermark
                # (the earliest window end in the batch is that of its oldest record's oldest window)
                first = self.window.first_start(min(times)) + size  # type: ignore[operator]
                if first <= max(frontier, max(times)) - lateness:
                    # the watermark just before each record: its partition's latest time so far
                    limits = [w - lateness for w in accumulate(times[:-1], max, initial=frontier)]
            if isinstance(self.window, Hopping):
                all_starts = self.window.all_starts
                ek: list = []
                ev: list | None = [] if values is not None else None
                for i, t in enumerate(times):
                    starts = all_starts(t)
                    if limits is not None:
                        limit = limits[i] - size
                        starts = [s for s in starts if s > limit]
                        if not starts:
                            late.append(i)
                            continue
                    for s in starts:
                        ek.append((keys[i], s))
                        if ev is not None:
                            ev.append(values[i])  # type: ignore[index]
                keys, values = ek, ev
            else:
                starts = self.window.starts(times)
                if limits is not None:
                    late = [i for i, (s, w) in enumerate(zip(starts, limits)) if s + size <= w]
                if late:
                    keep = [i for i, (s, w) in enumerate(zip(starts, limits)) if s + size > w]  # type: ignore[arg-type]
                    keys = [(keys[i], starts[i]) for i in keep]
                    if values is not None:
                        values = [values[i] for i in keep]
                else:
                    keys = list(zip(keys, starts))
        self.aggregator.add_batch(table, keys, values)
        return late

    # -- flush ------------------------------------------------------------------------
    def split(self, table_key: Any) -> tuple[dict, float | None]:
        """Table key -> (group key as a dict, window start)."""
        if self.windowed:
            table_key, start = table_key
        else:
            start = None
        gb = self.group_by
        if len(gb) == 1:
            key = {gb[0]: untag_key(table_key)}
        else:
            key = dict(zip(gb, map(untag_key, table_key)))
        return key, start

    def deltas(self, items: Iterable[tuple[Any, Any]]) -> Iterator[Delta]:
        size = self.window.size
        for table_key, partial in items:
            key, start = self.split(table_key)
            end = start + size if start is not None and size is not None else None
            yield Delta(self.name, key, start, end, partial, self.aggregator)
