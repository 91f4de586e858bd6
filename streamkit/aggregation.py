"""One configured aggregation: an aggregator type, group-by fields, a value field and a window."""
from __future__ import annotations

from dataclasses import dataclass, field as _field
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

    @property
    def windowed(self) -> bool:
        return self.window is not ALL_TIME

    def describe(self) -> dict:
        return {"name": self.name, "type": self.type, "group_by": list(self.group_by),
                "field": self.field, "window": self.window.describe(),
                "fields": list(self.aggregator.fields), "primary": self.aggregator.primary}

    # -- hot path: one call per batch -------------------------------------------------
    def add_columns(self, table: dict, columns: dict[str, list], times: list[float] | None, n: int) -> None:
        """Aggregate one validated batch given as columns (field -> list of values, and
        ``("key", field)`` -> the field's values as table keys; see ``records.Columns``)."""
        gb = self.group_by
        if len(gb) == 1:
            keys: list = columns[("key", gb[0])]
        elif gb:
            keys = list(zip(*(columns[("key", f)] for f in gb)))
        else:
            keys = [()] * n
        values = None if not self.field else (
            columns[("key", self.field)] if self.aggregator.keyed else columns[self.field])
        if self.windowed:
            assert times is not None
            if isinstance(self.window, Hopping):
                all_starts = self.window.all_starts
                ek: list = []
                ev: list | None = [] if values is not None else None
                for i, t in enumerate(times):
                    for s in all_starts(t):
                        ek.append((keys[i], s))
                        if ev is not None:
                            ev.append(values[i])  # type: ignore[index]
                keys, values = ek, ev
            else:
                keys = list(zip(keys, self.window.starts(times)))
        self.aggregator.add_batch(table, keys, values)

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
