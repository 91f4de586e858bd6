"""The aggregator contract (``merges``, ``bounds``, ``derived``; see ``streamkit.merging``) as
MongoDB update expressions: one ``$set`` stage merging a partial into a document, then the
stages that bound and derive (:func:`finish_stages`).

Only operators that MongoDB (5.0 and later), SecantusDB and mongomock all evaluate alike are
used: no ``$sortArray``, ``$range``, ``$zip`` or ``$setField`` (see ``sketches``)."""
from __future__ import annotations

import weakref
from typing import Any

from streamkit import Aggregator, Expr

from . import sketches

_INT64 = (-(2 ** 63), 2 ** 63 - 1)

#: merge kinds this store can do
KINDS = ("add", "min", "max", "max_by_key", "add_aligned", "count_by_key")

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


class Merged:
    """The ``max_by_key`` values this sink has durably merged into each document (HyperLogLog
    registers). A stored value of that kind never decreases, so a later flush need not send a key
    whose value is not above what this sink already wrote there: the update carries only the
    registers that can change. Kept per sink instance (a restarted process starts empty and sends
    everything, which merges to the same registers), at most ``limit`` keys in all."""

    def __init__(self, limit: int = 1 << 20) -> None:
        self.limit = limit
        self.durable: dict = {}   # _id -> {field: {key: value}}
        self.pending: dict = {}   # the same, for the flush being written
        self.size = 0

    def unknown(self, _id: str, f: str, value: dict) -> dict:
        """The keys of ``value`` above what is durably known for ``(_id, f)``; noted as pending."""
        known = self.durable.get(_id, {}).get(f)
        if known:
            value = {k: v for k, v in value.items() if v > known.get(k, 0)}
        note = self.pending.setdefault(_id, {}).setdefault(f, {})
        for k, v in value.items():
            if v > note.get(k, 0):
                note[k] = v
        return value

    def begin(self) -> None:
        self.pending = {}

    def written(self) -> None:
        """The flush's updates are acknowledged: what they carried is stored."""
        for _id, fields in self.pending.items():
            doc = self.durable.setdefault(_id, {})
            for f, values in fields.items():
                have = doc.setdefault(f, {})
                before = len(have)
                for k, v in values.items():
                    if v > have.get(k, 0):
                        have[k] = v
                self.size += len(have) - before
        self.pending = {}
        if self.size > self.limit:  # forget, rather than grow: only the updates get bigger again
            self.durable, self.size = {}, 0


def merge_fields(agg: Aggregator, partial: Any, merged: Merged | None = None, _id: str | None = None) -> dict:
    """``$set`` expressions merging ``partial`` into the current document, one per stored field
    (or per key of a map: ``registers.123``); with ``merged``, a ``max_by_key`` field carries only
    the keys that can still change document ``_id``."""
    merges = agg.merges
    out = {}
    for f, value in agg.stored(partial).items():
        kind = merges[f]
        if kind == "max_by_key" and merged is not None and _id is not None:
            value = merged.unknown(_id, f, value)
        if kind in sketches.MERGES:
            out.update(sketches.MERGES[kind](f, value, agg.bounds.get(f)))
            continue
        lit = literal(value)
        if kind == "add":
            out[f] = {"$add": [{"$ifNull": ["$" + f, 0]}, lit]}
        else:
            # $ifNull first: a missing field is not smaller than every number on every server
            out[f] = {"$" + kind: [{"$ifNull": ["$" + f, lit]}, lit]}
    return out


def finish_stages(agg: Aggregator) -> list[dict]:
    """The stages that follow the merges: one applying the bounds the merge expressions do not
    apply themselves, then :func:`derived_fields`."""
    try:
        return _finish[agg]
    except (KeyError, TypeError):  # TypeError: an aggregator that cannot be a key (defines __eq__ only)
        bounds = {f: sketches.BOUNDS[b.kind](f, b) for f, b in agg.bounds.items() if b.kind in sketches.BOUNDS}
        derived = derived_fields(agg)
        stages = ([{"$set": bounds}] if bounds else []) + ([{"$set": derived}] if derived else [])
        try:
            _finish[agg] = stages
        except TypeError:
            pass
        return stages


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


_finish: "weakref.WeakKeyDictionary[Aggregator, list]" = weakref.WeakKeyDictionary()
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
    if op in sketches.ESTIMATES:
        return sketches.ESTIMATES[op](*args)
    return {_OPS[op]: [expression(a) for a in args]}
