"""A third-party streamkit plugin: the ``stddev`` aggregator type.

Install it (``pip install examples/custom_plugin``) and use it like a built-in::

    aggregations:
      - {name: duration_spread, type: stddev, field: duration_ms, group_by: [item_id]}

The partial is (count, sum, sum of squares): three numbers that add up across
flushes and processes, so MongoDB can merge them with plain additions and
compute the standard deviation from the merged totals.
"""
from __future__ import annotations

import math

from streamkit import Aggregator, Option, hookimpl

__version__ = "1.0.0"


class StdDev(Aggregator):
    """Standard deviation of a numeric field (population, or sample with `sample: true`)."""

    options = {"sample": Option(bool, False, "divide by n-1 instead of n")}
    fields = ("stddev", "count", "sum", "sumsq")
    primary = "stddev"

    def create(self) -> list:
        return [0, 0.0, 0.0]

    def add(self, partial: list, value: float) -> list:
        partial[0] += 1
        partial[1] += value
        partial[2] += value * value
        return partial

    def merge(self, a: list, b: list) -> list:
        return [a[0] + b[0], a[1] + b[1], a[2] + b[2]]

    def result(self, partial: list) -> dict:
        n, s, sq = partial
        return {"stddev": self._stddev(n, s, sq), "count": n, "sum": s, "sumsq": sq}

    def _stddev(self, n: int, s: float, sq: float) -> float | None:
        d = n - 1 if self.config.get("sample") else n
        if d <= 0:
            return None
        return math.sqrt(max(sq - s * s / n, 0.0) / d)

    def from_document(self, doc: dict) -> list:
        return [doc.get("count", 0), doc.get("sum", 0.0), doc.get("sumsq", 0.0)]

    def mongo_merge(self, partial: list) -> dict:
        def plus(f: str, v: float) -> dict:
            return {"$add": [{"$ifNull": ["$" + f, 0]}, {"$literal": v}]}
        return {"count": plus("count", partial[0]), "sum": plus("sum", partial[1]),
                "sumsq": plus("sumsq", partial[2])}

    def mongo_finalize(self) -> dict:
        d = {"$subtract": ["$count", 1]} if self.config.get("sample") else "$count"
        var = {"$divide": [{"$max": [{"$subtract": ["$sumsq", {"$divide": [{"$multiply": ["$sum", "$sum"]},
                                                                          "$count"]}]}, 0]}, d]}
        return {"stddev": {"$cond": [{"$gt": [d, 0]}, {"$sqrt": var}, None]}}


@hookimpl
def register_aggregators(register) -> None:
    register("stddev", StdDev)
