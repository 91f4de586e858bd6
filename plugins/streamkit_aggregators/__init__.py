"""Built-in aggregator types: count, sum, avg, min, max, and the sketches distinct,
percentiles and top_k (their own modules).

Each is a mergeable partial. ``add_batch`` is the hot path, one call per batch;
``merges`` and ``derived`` say how a store merges a partial into a stored document,
so several flushes and several processes can feed the same document in any order.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from streamkit import Aggregator, F, hookimpl, when_positive


class Count(Aggregator):
    """Number of records per group and window."""

    needs_field = False
    numeric = False
    fields = ("count",)
    merges = {"count": "add"}
    primary = "count"

    def create(self) -> int:
        return 0

    def add(self, partial: int, value: Any) -> int:
        return partial + 1

    def merge(self, a: int, b: int) -> int:
        return a + b

    def new_table(self) -> dict:
        return Counter()

    def add_batch(self, table: dict, keys: list, values: list | None) -> None:
        table.update(keys)  # Counter.update counts an iterable in C

    def result(self, partial: int) -> dict:
        return {"count": partial}

    stored = result



class Sum(Aggregator):
    """Sum of a numeric field per group and window."""

    fields = ("sum",)
    merges = {"sum": "add"}
    primary = "sum"

    def create(self) -> float:
        return 0

    def add(self, partial: float, value: float) -> float:
        return partial + value

    def merge(self, a: float, b: float) -> float:
        return a + b

    def add_batch(self, table: dict, keys: list, values: list | None) -> None:
        get = table.get
        for k, v in zip(keys, values):  # type: ignore[arg-type]
            table[k] = get(k, 0) + v

    def result(self, partial: float) -> dict:
        return {"sum": partial}

    stored = result



class Avg(Aggregator):
    """Mean of a numeric field; keeps sum and count so partials merge exactly."""

    fields = ("avg", "sum", "count")
    merges = {"sum": "add", "count": "add"}
    derived = {"avg": when_positive(F("count"), F("sum") / F("count"))}
    primary = "avg"

    def create(self) -> list:
        return [0, 0]

    def add(self, partial: list, value: float) -> list:
        partial[0] += value
        partial[1] += 1
        return partial

    def merge(self, a: list, b: list) -> list:
        return [a[0] + b[0], a[1] + b[1]]

    def add_batch(self, table: dict, keys: list, values: list | None) -> None:
        get = table.get
        for k, v in zip(keys, values):  # type: ignore[arg-type]
            p = get(k)
            if p is None:
                table[k] = [v, 1]
            else:
                p[0] += v
                p[1] += 1

    def result(self, partial: list) -> dict:
        s, c = partial
        return {"avg": s / c if c else None, "sum": s, "count": c}

    def stored(self, partial: list) -> dict:
        return {"sum": partial[0], "count": partial[1]}


class _Extreme(Aggregator):
    fields: tuple = ()
    pick: Any = None

    def create(self) -> Any:
        return None

    def add(self, partial: Any, value: Any) -> Any:
        return value if partial is None else self.pick(partial, value)

    def merge(self, a: Any, b: Any) -> Any:
        return self.pick(a, b)

    def add_batch(self, table: dict, keys: list, values: list | None) -> None:
        get, pick = table.get, self.pick
        for k, v in zip(keys, values):  # type: ignore[arg-type]
            p = get(k)
            table[k] = v if p is None else pick(p, v)

    def result(self, partial: Any) -> dict:
        return {self.fields[0]: partial}

    def stored(self, partial: Any) -> dict:
        return {self.fields[0]: partial}


class Min(_Extreme):
    """Smallest value of a numeric field per group and window."""

    fields = ("min",)
    merges = {"min": "min"}
    primary = "min"
    pick = staticmethod(min)


class Max(_Extreme):
    """Largest value of a numeric field per group and window."""

    fields = ("max",)
    merges = {"max": "max"}
    primary = "max"
    pick = staticmethod(max)


@hookimpl
def register_aggregators(register) -> None:
    register("count", Count)
    register("sum", Sum)
    register("avg", Avg)
    register("min", Min)
    register("max", Max)
    from .distinct import Distinct
    from .percentiles import Percentiles
    from .top_k import TopK
    register("distinct", Distinct)
    register("percentiles", Percentiles)
    register("top_k", TopK)
