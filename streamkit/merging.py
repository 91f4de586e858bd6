"""How an aggregator's stored fields merge, and how its result fields derive from them.

The declaration is store-neutral: a store (the ``mongodb`` sink, or any other) translates
it into its own update language, so an aggregator never names a store::

    class Avg(Aggregator):
        merges = {"sum": "add", "count": "add"}
        derived = {"avg": when_positive(F("count"), F("sum") / F("count"))}

``merges`` maps each stored field to a *merge kind*, saying how the value one flush
brings for that field combines with the value already stored:

- ``add``: the sum of both (a missing stored value counts as 0);
- ``min`` / ``max``: the smaller / larger of both (a missing stored value is replaced);
- ``max_by_key``: a map of keys (strings) to small integers (0 to 63), merged key by key
  with the larger value (a missing key counts as 0): HyperLogLog registers;
- ``add_aligned``: a histogram ``{"offset": o, "counts": [c0, c1, ...]}`` whose counts are
  those of the integer positions o, o+1, ...; two merge position by position into one
  spanning both (added counts): log-bucketed quantile sketches;
- ``count_by_key``: a map of keys to ``{"value": v, "count": c}`` (one key, one value),
  merged key by key with added counts: frequent-item summaries.

Each kind is commutative and associative, which is what lets several flushes and several
processes merge into one stored document in any order. :data:`MERGE_KINDS` holds each
kind's meaning as a Python function, for stores that merge in Python. A store that cannot
do a kind refuses the pipeline at start-up naming the kind.

``bounds`` (optional) maps a stored field to a :class:`Span` or a :class:`Frequent`: a rule
that keeps the merged value within a size set by the options, applied after every merge
(the store applies it to what it holds; the aggregator to its partials). A ``Span`` keeps
the result independent of the order of the merges; ``Frequent`` (Misra-Gries) keeps it
within a documented bound of that.

``derived`` maps each result field computed from the merged fields to a formula built
from :class:`F` (a merged field), numbers, ``+ - * /``, :func:`sqrt`, :func:`greatest`,
:func:`when_positive`, and the sketch estimates :func:`hll_estimate`, :func:`quantile` and
:func:`top_entries` (see :mod:`streamkit.estimates`); a store recomputes these fields after
every merge. :meth:`Expr.evaluate` gives a formula's value in Python.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from . import estimates

__all__ = ["MERGE_KINDS", "Expr", "F", "sqrt", "greatest", "when_positive", "Span", "Frequent",
           "hll_estimate", "quantile", "top_entries"]


def _add(stored: Any, value: Any) -> Any:
    return value if stored is None else stored + value


def _min(stored: Any, value: Any) -> Any:
    return value if stored is None else min(stored, value)


def _max(stored: Any, value: Any) -> Any:
    return value if stored is None else max(stored, value)


def _max_by_key(stored: Any, value: Any) -> Any:
    if stored is None:
        return dict(value)
    out = dict(stored)
    for k, v in value.items():
        if v > out.get(k, 0):
            out[k] = v
    return out


def _add_aligned(stored: Any, value: Any) -> Any:
    if stored is None or not stored["counts"]:
        return {"offset": value["offset"], "counts": list(value["counts"])}
    if not value["counts"]:
        return stored
    lo = min(stored["offset"], value["offset"])
    hi = max(stored["offset"] + len(stored["counts"]), value["offset"] + len(value["counts"]))
    counts = [0] * (hi - lo)
    for h in (stored, value):
        o = h["offset"] - lo
        for i, c in enumerate(h["counts"]):
            counts[o + i] += c
    return {"offset": lo, "counts": counts}


def _count_by_key(stored: Any, value: Any) -> Any:
    out = dict(stored) if stored is not None else {}
    for k, e in value.items():
        have = out.get(k)
        out[k] = dict(e) if have is None else {"value": have["value"], "count": have["count"] + e["count"]}
    return out


#: merge kind -> how a flush's ``value`` merges into the ``stored`` one (None: nothing stored yet)
MERGE_KINDS: Mapping[str, Callable[[Any, Any], Any]] = {
    "add": _add, "min": _min, "max": _max,
    "max_by_key": _max_by_key, "add_aligned": _add_aligned, "count_by_key": _count_by_key}


class Span:
    """Bound of an ``add_aligned`` histogram: at most ``width`` positions, the highest ones; the
    counts below them are added to the lowest position kept. The result is the same whatever the
    order of the merges: every count ends at its own position or, if that is below the ``width``
    highest positions ever seen, at the lowest of those."""

    kind = "span"

    def __init__(self, width: int) -> None:
        self.width = width

    def apply(self, value: Any) -> Any:
        counts = value["counts"]
        cut = len(counts) - self.width
        if cut <= 0:
            return value
        return {"offset": value["offset"] + cut, "counts": [sum(counts[:cut + 1]), *counts[cut + 1:]]}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Span) and other.width == self.width

    def __hash__(self) -> int:
        return hash(("span", self.width))


class Frequent:
    """Bound of a ``count_by_key`` summary (Misra-Gries): where more than ``capacity`` keys are
    held, the (capacity+1)-th largest count is taken from every count and the keys left with
    none are dropped. Every count held is then at most ``total / (capacity + 1)`` below the true
    count of its value (``total``: every count merged), and any value more frequent than that is
    held, whatever the order of the merges; with at most ``capacity`` distinct values merged the
    counts are exact."""

    kind = "frequent"

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity

    def apply(self, value: Any) -> Any:
        if len(value) <= self.capacity:
            return value
        cut = sorted((e["count"] for e in value.values()), reverse=True)[self.capacity]
        return {k: {"value": e["value"], "count": e["count"] - cut} for k, e in value.items() if e["count"] > cut}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Frequent) and other.capacity == self.capacity

    def __hash__(self) -> int:
        return hash(("frequent", self.capacity))


class Expr:
    """A formula over merged fields. ``op`` names the operation (``field``, ``const``, ``add``,
    ``sub``, ``mul``, ``div``, ``sqrt``, ``greatest``, ``when_positive``) and ``args`` its operands
    (expressions, or the field name / the number for ``field`` / ``const``)."""

    __slots__ = ("op", "args")

    def __init__(self, op: str, *args: Any) -> None:
        self.op = op
        self.args = args

    def __add__(self, other: Any) -> "Expr":
        return Expr("add", self, _expr(other))

    def __sub__(self, other: Any) -> "Expr":
        return Expr("sub", self, _expr(other))

    def __mul__(self, other: Any) -> "Expr":
        return Expr("mul", self, _expr(other))

    def __truediv__(self, other: Any) -> "Expr":
        return Expr("div", self, _expr(other))

    def __radd__(self, other: Any) -> "Expr":
        return Expr("add", _expr(other), self)

    def __rsub__(self, other: Any) -> "Expr":
        return Expr("sub", _expr(other), self)

    def __rmul__(self, other: Any) -> "Expr":
        return Expr("mul", _expr(other), self)

    def __rtruediv__(self, other: Any) -> "Expr":
        return Expr("div", _expr(other), self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expr) and (self.op, self.args) == (other.op, other.args)

    def __hash__(self) -> int:
        return hash((self.op, self.args))

    def __repr__(self) -> str:
        return f"{self.op}({', '.join(map(repr, self.args))})"

    def evaluate(self, fields: Mapping[str, Any]) -> Any:
        """The formula's value for these merged field values."""
        op, args = self.op, self.args
        if op == "field":
            return fields.get(args[0])
        if op == "const":
            return args[0]
        if op == "when_positive":
            guard = args[0].evaluate(fields)
            return args[1].evaluate(fields) if guard is not None and guard > 0 else None
        values = [a.evaluate(fields) for a in args]
        return _PYTHON[op](*values)


_PYTHON: dict[str, Callable[..., Any]] = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "sqrt": math.sqrt, "greatest": max,
    "hll_estimate": estimates.hll_estimate, "quantile": estimates.quantile, "top_entries": estimates.top_entries,
}


def _expr(value: Any) -> Expr:
    if isinstance(value, Expr):
        return value
    if type(value) in (int, float):
        return Expr("const", value)
    raise TypeError(f"a formula takes merged fields (F) and numbers, not {value!r}")


def F(name: str) -> Expr:  # noqa: N802 - reads like a field reference in a formula
    """The merged value of the stored field ``name``."""
    return Expr("field", name)


def sqrt(value: Any) -> Expr:
    return Expr("sqrt", _expr(value))


def greatest(a: Any, b: Any) -> Expr:
    return Expr("greatest", _expr(a), _expr(b))


def when_positive(guard: Any, then: Any) -> Expr:
    """``then`` where ``guard`` is greater than 0, else None (no division by a zero count)."""
    return Expr("when_positive", _expr(guard), _expr(then))


def hll_estimate(registers: Expr, precision: int) -> Expr:
    """The number of distinct values behind HyperLogLog ``registers`` (a ``max_by_key`` map of
    register index to rank) of 2**``precision`` registers; see :func:`estimates.hll_estimate`."""
    return Expr("hll_estimate", registers, _expr(precision))


def quantile(positive: Expr, negative: Expr, zero: Expr, count: Expr, low: Expr, high: Expr,
             q: float, gamma: float) -> Expr:
    """The ``q`` quantile of a log-bucketed histogram (``add_aligned`` counts of positive values and
    of the magnitudes of negative ones, bucket i holding (gamma**(i-1), gamma**i]), a count of
    zeros, the count of every value and the exact smallest and largest; see
    :func:`estimates.quantile`."""
    return Expr("quantile", positive, negative, zero, count, low, high, _expr(q), _expr(gamma))


def top_entries(items: Expr, k: int) -> Expr:
    """The ``k`` entries of a ``count_by_key`` map with the largest counts, as a list of
    ``{"value", "count"}`` (ties: smaller key first)."""
    return Expr("top_entries", items, _expr(k))
