"""A third-party streamkit plugin: the ``stddev`` aggregator type.

Install it (``pip install examples/custom_plugin``) and use it like a built-in::

    aggregations:
      - {name: duration_spread, type: stddev, field: duration_ms, group_by: [item_id]}

The partial is (count, sum, sum of squares): three numbers that add up across
flushes and processes. ``merges`` says so, and ``derived`` gives the standard
deviation as a formula over the merged totals; every store (MongoDB's update
expressions, or any other sink honouring the contract) does the rest.
"""
from __future__ import annotations

from functools import cached_property

from streamkit import Aggregator, F, Option, greatest, hookimpl, sqrt, when_positive

__version__ = "1.0.0"


class StdDev(Aggregator):
    """Standard deviation of a numeric field (population, or sample with `sample: true`)."""

    options = {"sample": Option(bool, False, "divide by n-1 instead of n")}
    fields = ("stddev", "count", "sum", "sumsq")
    merges = {"count": "add", "sum": "add", "sumsq": "add"}
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

    def stored(self, partial: list) -> dict:
        n, s, sq = partial
        return {"count": n, "sum": s, "sumsq": sq}

    @cached_property
    def derived(self) -> dict:
        n = F("count")
        d = n - 1 if self.config.get("sample") else n
        variance = greatest(F("sumsq") - F("sum") * F("sum") / n, 0) / d
        return {"stddev": when_positive(d, sqrt(variance))}

    def result(self, partial: list) -> dict:
        # the same formula a store applies to the merged totals
        values = self.stored(partial)
        return {"stddev": self.derived["stddev"].evaluate(values), **values}


@hookimpl
def register_aggregators(register) -> None:
    register("stddev", StdDev)
