"""``top_k``: the k most frequent values of a field, each with its count (Misra-Gries).

The stored form maps the stable hash of each value held to ``{"value", "count"}``, merged by
added counts (``count_by_key``) and bounded by :class:`streamkit.Frequent` (``capacity``
values at most): exact while no more than ``capacity`` distinct values were merged; beyond
that every count is at most ``count / (capacity + 1)`` below its true count (``count``: the
records of the group), and every value more frequent than that is held.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from streamkit import Aggregator, F, Frequent, Option, stable_hash, top_entries

_CACHE = 1 << 16


def _untag(value: Any) -> Any:
    return value[1] if type(value) is tuple else value


class TopK(Aggregator):
    """The k most frequent values of a field, with their counts."""

    description = "the k most frequent values of `field` with their counts (Misra-Gries summary)"
    numeric = False
    keyed = True
    fields = ("top", "count")
    merges = {"items": "count_by_key", "count": "add"}
    primary = "count"
    options = {
        "k": Option(int, 10, "how many values to report", min=1, max=1000),
        "capacity": Option(int, 100, "most values held per group and window (at least k): counts are "
                                     "exact up to this many distinct values", min=1, max=10000),
    }

    def __init__(self, config: dict | None = None) -> None:
        super().__init__(config)
        self.k = int(self.config.get("k", 10))
        self.capacity = int(self.config.get("capacity", 100))
        if self.capacity < self.k:
            raise ValueError(f"capacity ({self.capacity}) must be at least k ({self.k})")
        self.bounds = {"items": Frequent(self.capacity)}
        self.derived = {"top": top_entries(F("items"), self.k)}
        self._ids: dict = {}

    # partial: [Counter {value as table key: count}, records]
    def create(self) -> list:
        return [Counter(), 0]

    def add(self, partial: list, value: Any) -> list:
        partial[0][value] += 1
        partial[1] += 1
        self._bound(partial[0])
        return partial

    def _bound(self, counts: Counter) -> None:
        if len(counts) > self.capacity:
            cut = sorted(counts.values(), reverse=True)[self.capacity]
            for v in [v for v, c in counts.items() if c <= cut]:
                del counts[v]
            for v in counts:
                counts[v] -= cut

    def merge(self, a: list, b: list) -> list:
        counts = a[0] + b[0]
        self._bound(counts)
        return [counts, a[1] + b[1]]

    def add_batch(self, table: dict, keys: list, values: list | None) -> None:
        get = table.get
        touched = set()
        for (k, v), n in Counter(zip(keys, values)).items():  # type: ignore[arg-type]
            p = get(k)
            if p is None:
                p = table[k] = [Counter(), 0]
            p[0][v] += n
            p[1] += n
            touched.add(k)
        for k in touched:
            self._bound(table[k][0])

    def _id(self, value: Any) -> str:
        ids = self._ids
        i = ids.get(value)
        if i is None:
            if len(ids) > _CACHE:
                ids.clear()
            i = ids[value] = f"{stable_hash(value):016x}"
        return i

    def stored(self, partial: list) -> dict:
        return {"items": {self._id(v): {"value": _untag(v), "count": c} for v, c in partial[0].items()},
                "count": partial[1]}

    def result(self, partial: list) -> dict:
        s = self.stored(partial)
        return {"top": self.derived["top"].evaluate(s), "count": s["count"]}
