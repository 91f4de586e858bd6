"""How an aggregator's stored fields merge, and how its result fields derive from them.

The declaration is store-neutral: a store (the ``mongodb`` sink, or any other) translates
it into its own update language, so an aggregator never names a store::

    class Avg(Aggregator):
        merges = {"sum": "add", "count": "add"}
        derived = {"avg": when_positive(F("count"), F("sum") / F("count"))}

``merges`` maps each stored field to a *merge kind*, saying how the value one flush
brings for that field combines with the value already stored:

- ``add``: the sum of both (a missing stored value counts as 0);
- ``min`` / ``max``: the smaller / larger of both (a missing stored value is replaced).

Each kind is commutative and associative, which is what lets several flushes and several
processes merge into one stored document in any order. :data:`MERGE_KINDS` holds each
kind's meaning as a Python function, for stores that merge in Python. Later kinds (per
element maximum of a register array, added counts of a bucket map) are added here, and a
store that cannot do a kind refuses the pipeline at start-up naming the kind.

``derived`` maps each result field computed from the merged fields to a formula built
from :class:`F` (a merged field), numbers, ``+ - * /``, :func:`sqrt`, :func:`greatest`
and :func:`when_positive`; a store recomputes these fields after every merge.
:meth:`Expr.evaluate` gives a formula's value in Python.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

__all__ = ["MERGE_KINDS", "Expr", "F", "sqrt", "greatest", "when_positive"]


def _add(stored: Any, value: Any) -> Any:
    return value if stored is None else stored + value


def _min(stored: Any, value: Any) -> Any:
    return value if stored is None else min(stored, value)


def _max(stored: Any, value: Any) -> Any:
    return value if stored is None else max(stored, value)


#: merge kind -> how a flush's ``value`` merges into the ``stored`` one (None: nothing stored yet)
MERGE_KINDS: Mapping[str, Callable[[Any, Any], Any]] = {"add": _add, "min": _min, "max": _max}


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
