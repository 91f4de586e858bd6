"""The one reference truth for tests: aggregation in plain Python, independent of the code under test.

Nothing here imports streamkit. Windows are computed in exact rational arithmetic, aggregates
from the full list of values of each group, so a test compares the stored or captured
results with something the code under test had no hand in.

API
---
``truth(records, aggregations) -> {(aggregation, key, window_start): fields}``
    ``records``: dicts, every one usable by every aggregation (filter with :func:`usable`, or use
    :func:`aggregate`, when some are not). ``aggregations``: dicts in the pipeline file's shape
    (``name``, ``type`` in count/sum/avg/min/max, ``group_by``, ``field``, ``time_field``) with
    ``window`` given in seconds: absent or None (all-time), a number (tumbling), or hopping as
    ``(size, hop)`` or ``{"size": s, "hop": h}``. Hops need not divide the size.
    ``key`` is the tuple of (field, value) pairs sorted by field; ``window_start`` is epoch
    seconds as a float (None for all-time). ``fields`` is what the aggregator stores:
    count -> {count}; sum -> {sum}; avg -> {avg, sum, count}; min -> {min}; max -> {max}.

``aggregate(records, aggregations) -> (truth of the usable records, number of unusable ones)``
    for inputs with records the pipeline turns into dead letters.

``stored(collection, aggregations)``
    the documents of a MongoDB (or mongomock) collection in the shape ``truth`` returns, each
    with exactly the fields of its aggregation type, so extra or missing documents show.

``as_pipeline(aggregations)``
    the same aggregations as a pipeline file takes them (windows as ``"5s"`` or
    ``{size: "5s", hop: "2s"}``).

``diff(expected, actual)``
    a readable difference, ``''`` when equal (exact comparison, no tolerance).
"""
from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from fractions import Fraction
from typing import Any, Iterable

FIELDS = {"count": ("count",), "sum": ("sum",), "avg": ("avg", "sum", "count"), "min": ("min",),
          "max": ("max",)}


def _time(v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(v)
        return float(v)
    d = dt.datetime.fromisoformat(v)
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return d.timestamp()


def window_of(agg: dict) -> tuple[Fraction, Fraction] | None:
    """(size, hop) of an aggregation's window in exact seconds; None for all-time."""
    w = agg.get("window")
    if w is None:
        return None
    if isinstance(w, dict):
        size, hop = w["size"], w.get("hop", w["size"])
    elif isinstance(w, (tuple, list)):
        size, hop = w
    else:
        size = hop = w
    return Fraction(size), Fraction(hop)


def window_starts(t: float, size: Fraction, hop: Fraction) -> list[float]:
    """Starts of every window ``[k*hop, k*hop + size)`` that holds time ``t`` (exact arithmetic)."""
    x = Fraction(t)
    last = math.floor(x / hop)  # the latest start at or before t
    starts = []
    k = last
    while k * hop + size > x:
        starts.append(float(k * hop))
        k -= 1
    return sorted(starts)


def as_pipeline(aggregations: list[dict]) -> list[dict]:
    """``aggregations`` (windows in seconds) in the pipeline file's shape."""
    out = []
    for a in aggregations:
        w = window_of(a)
        a = {k: v for k, v in a.items() if k != "window"}
        if w is not None:
            size, hop = (f"{int(x) if x.denominator == 1 else float(x)}s" for x in w)
            a["window"] = size if size == hop else {"size": size, "hop": hop}
        out.append(a)
    return out


def usable(rec: Any, needs: Iterable[str], numeric: Iterable[str], times: Iterable[str]) -> bool:
    """Whether a record has every group-by field (a scalar), numeric value field and event time."""
    if not isinstance(rec, dict):
        return False
    for f in needs:
        v = rec.get(f)
        if v is None or not isinstance(v, (str, int, float, bool)):
            return False
    for f in numeric:
        v = rec.get(f)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
            return False
    for f in times:
        try:
            _time(rec[f])
        except (KeyError, ValueError, TypeError):
            return False
    return True


def _result(kind: str, vals: list) -> dict:
    if kind == "count":
        return {"count": len(vals)}
    if kind == "sum":
        return {"sum": sum(vals)}
    if kind == "avg":
        return {"avg": sum(vals) / len(vals), "sum": sum(vals), "count": len(vals)}
    if kind == "min":
        return {"min": min(vals)}
    if kind == "max":
        return {"max": max(vals)}
    raise ValueError(f"no truth for aggregation type {kind!r}")


def truth(records: Iterable[dict], aggregations: list[dict]) -> dict:
    """Expected results: {(aggregation, key, window_start): fields}; see the module docstring."""
    records = list(records)
    out: dict = {}
    for a in aggregations:
        groups: dict = defaultdict(list)
        fld = a.get("field")
        window = window_of(a)
        tf = a.get("time_field", "timestamp")
        for r in records:
            key = tuple(sorted((f, r[f]) for f in a.get("group_by", [])))
            v = r[fld] if fld else None
            if window is None:
                groups[(key, None)].append(v)
            else:
                for start in window_starts(_time(r[tf]), *window):
                    groups[(key, start)].append(v)
        for (key, start), vals in groups.items():
            out[(a["name"], key, start)] = _result(a["type"], vals)
    return out


def aggregate(records: Iterable[Any], aggregations: list[dict]) -> tuple[dict, int]:
    """(truth of the records every aggregation can use, how many records are unusable)."""
    needs, numeric, times = set(), set(), set()
    for a in aggregations:
        needs.update(a.get("group_by", []))
        if a["type"] != "count":
            numeric.add(a["field"])
        if a.get("window"):
            times.add(a.get("time_field", "timestamp"))
    records = list(records)
    good = [r for r in records if usable(r, needs, numeric, times)]
    return truth(good, aggregations), len(records) - len(good)


def stored(collection: Any, aggregations: list[dict]) -> dict:
    """The documents in ``collection``, in the shape :func:`truth` returns."""
    kinds = {a["name"]: a["type"] for a in aggregations}
    out: dict = {}
    for doc in collection.find({}):
        name = doc.get("aggregation")
        start = (doc.get("window") or {}).get("start")
        key = (name, tuple(sorted((doc.get("key") or {}).items())),
               None if start is None else round(start.timestamp(), 3))
        fields = FIELDS.get(kinds.get(name, ""), ())
        assert key not in out, f"two documents for {_fmt(key)}"
        out[key] = {f: doc.get(f) for f in fields} if fields else {"unknown aggregation": doc}
    return out


def diff(expected: dict, actual: dict, limit: int = 15) -> str:
    """A readable difference, '' when the results are exactly the expected ones."""
    missing = [k for k in expected if k not in actual]
    extra = [k for k in actual if k not in expected]
    wrong = [k for k in expected if k in actual and expected[k] != actual[k]]
    if not (missing or extra or wrong):
        return ""
    lines = [f"{len(expected)} results expected, {len(actual)} found: {len(missing)} missing, "
             f"{len(extra)} unexpected, {len(wrong)} with wrong values"]
    for k in sorted(wrong, key=repr)[:limit]:
        lines.append(f"  differs  {_fmt(k)}: expected {expected[k]}, found {actual[k]}")
    for k in sorted(missing, key=repr)[:limit]:
        lines.append(f"  missing  {_fmt(k)}: expected {expected[k]}")
    for k in sorted(extra, key=repr)[:limit]:
        lines.append(f"  extra    {_fmt(k)}: found {actual[k]}")
    return "\n".join(lines)


def _fmt(k: tuple) -> str:
    name, key, start = k
    w = "" if start is None else f" window {dt.datetime.fromtimestamp(start, dt.timezone.utc):%H:%M:%S.%f}"
    return f"{name} {dict(key)}{w}"
