"""Built-in aggregator types: count, sum, avg, min, max.

Each is a mergeable partial. ``add_batch`` is the hot path, one call per batch;
the MongoDB expressions merge a partial into a stored document, so several
flushes and several processes can feed the same document in any order.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

from streamkit import Aggregator, hookimpl


_INT64 = (-(2 ** 63), 2 ** 63 - 1)


def _lit(value: Any) -> dict:
    # MongoDB holds integers up to signed 64 bits. Records carry no larger ones (they are
    # dead letters), but a sum of them can leave that range within one flush: it is stored
    # as a double, which is what MongoDB's $add makes of a stored sum that overflows.
    if type(value) is int and not _INT64[0] <= value <= _INT64[1]:
        value = float(value)
    return {"$literal": value}


def _plus(field: str, value: Any) -> dict:
    return {"$add": [{"$ifNull": ["$" + field, 0]}, _lit(value)]}


class Count(Aggregator):
    """Number of records per group and window."""

    needs_field = False
    numeric = False
    fields = ("count",)
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

    def from_document(self, doc: Mapping) -> int:
        return int(doc.get("count", 0))

    def mongo_merge(self, partial: int) -> dict:
        return {"count": _plus("count", partial)}


class Sum(Aggregator):
    """Sum of a numeric field per group and window."""

    fields = ("sum",)
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

    def from_document(self, doc: Mapping) -> float:
        return doc.get("sum", 0)

    def mongo_merge(self, partial: float) -> dict:
        return {"sum": _plus("sum", partial)}


class Avg(Aggregator):
    """Mean of a numeric field; keeps sum and count so partials merge exactly."""

    fields = ("avg", "sum", "count")
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

    def from_document(self, doc: Mapping) -> list:
        return [doc.get("sum", 0), doc.get("count", 0)]

    def mongo_merge(self, partial: list) -> dict:
        return {"sum": _plus("sum", partial[0]), "count": _plus("count", partial[1])}

    def mongo_finalize(self) -> dict:
        return {"avg": {"$cond": [{"$gt": ["$count", 0]}, {"$divide": ["$sum", "$count"]}, None]}}


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

    def from_document(self, doc: Mapping) -> Any:
        return doc.get(self.fields[0])

    def mongo_merge(self, partial: Any) -> dict:
        f = self.fields[0]
        op = "$" + f
        # $ifNull first: a missing field is not smaller than every number on every server
        return {f: {op: [{"$ifNull": ["$" + f, _lit(partial)]}, _lit(partial)]}}


class Min(_Extreme):
    """Smallest value of a numeric field per group and window."""

    fields = ("min",)
    primary = "min"
    pick = staticmethod(min)


class Max(_Extreme):
    """Largest value of a numeric field per group and window."""

    fields = ("max",)
    primary = "max"
    pick = staticmethod(max)


@hookimpl
def register_aggregators(register) -> None:
    register("count", Count)
    register("sum", Sum)
    register("avg", Avg)
    register("min", Min)
    register("max", Max)
