"""The aggregator contract (``merges``, ``derived``; see ``streamkit.merging``) as MongoDB
update expressions: one ``$set`` stage merging a partial into a document, one recomputing
the derived fields."""
from __future__ import annotations

import weakref
from typing import Any

from streamkit import Aggregator, Expr

_INT64 = (-(2 ** 63), 2 ** 63 - 1)

#: merge kinds this store can do
KINDS = ("add", "min", "max")

_OPS = {"add": "$add", "sub": "$subtract", "mul": "$multiply", "div": "$divide", "greatest": "$max"}


def literal(value: Any) -> dict:
    """``value`` as an update-expression literal.

    MongoDB holds integers up to signed 64 bits. Records carry no larger ones (they are
    dead letters), but a sum of them can leave that range within one flush: it is stored
    as a double, which is what MongoDB's $add makes of a stored sum that overflows."""
    if type(value) is int and not _INT64[0] <= value <= _INT64[1]:
        value = float(value)
    return {"$literal": value}


def unsupported(agg: Aggregator) -> dict[str, str]:
    """The fields of ``agg`` whose merge kind this store cannot do (field -> kind)."""
    return {f: kind for f, kind in agg.merges.items() if kind not in KINDS}


def merge_fields(agg: Aggregator, partial: Any) -> dict:
    """``$set`` expressions merging ``partial`` into the current document, one per stored field."""
    merges = agg.merges
    out = {}
    for f, value in agg.stored(partial).items():
        kind = merges[f]
        lit = literal(value)
        if kind == "add":
            out[f] = {"$add": [{"$ifNull": ["$" + f, 0]}, lit]}
        else:
            # $ifNull first: a missing field is not smaller than every number on every server
            out[f] = {"$" + kind: [{"$ifNull": ["$" + f, lit]}, lit]}
    return out


def derived_fields(agg: Aggregator) -> dict | None:
    """A ``$set`` stage computing the derived fields from the merged ones, or None (the same,
    unchanged dict for every update of one aggregator: translated once)."""
    try:
        return _derived[agg]
    except (KeyError, TypeError):  # TypeError: an aggregator that cannot be a key (defines __eq__ only)
        derived = agg.derived
        stage = {f: expression(e) for f, e in derived.items()} if derived else None
        try:
            _derived[agg] = stage
        except TypeError:
            pass
        return stage


_derived: "weakref.WeakKeyDictionary[Aggregator, dict | None]" = weakref.WeakKeyDictionary()


def expression(e: Expr) -> Any:
    """One formula as an aggregation expression."""
    op, args = e.op, e.args
    if op == "field":
        return "$" + args[0]
    if op == "const":
        return args[0]
    if op == "sqrt":
        return {"$sqrt": expression(args[0])}
    if op == "when_positive":
        return {"$cond": [{"$gt": [expression(args[0]), 0]}, expression(args[1]), None]}
    return {_OPS[op]: [expression(a) for a in args]}
