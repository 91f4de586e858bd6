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
    ``(size, hop)`` or ``{"size": s, "hop": h}``. Hops need not divide the size. The sketches
    (``distinct``, ``percentiles``, ``top_k``, with their options in the dict) give their exact
    stored state, computed here from the README's definitions: ``distinct`` -> {registers} (the
    HyperLogLog register of each distinct value's BLAKE2b hash); ``percentiles`` -> {positive,
    negative, zero, count, min, max} (log-bucket counts); ``top_k`` -> {items, count} (exact
    counts: the test keeps the distinct values within ``capacity``). :func:`exact` gives what
    their estimates stand for.
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
import hashlib
import math
from collections import Counter, defaultdict
from fractions import Fraction
from typing import Any, Iterable

FIELDS = {"count": ("count",), "sum": ("sum",), "avg": ("avg", "sum", "count"), "min": ("min",),
          "max": ("max",), "distinct": ("registers",),
          "percentiles": ("positive", "negative", "zero", "count", "min", "max"), "top_k": ("items", "count")}


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


def _value_hash(v: Any) -> int:
    """BLAKE2b-64 of a value with its JSON type: s<utf-8>, i<decimal>, f<repr>, b1/b0."""
    if isinstance(v, bool):
        data = b"b1" if v else b"b0"
    elif isinstance(v, int):
        data = b"i" + str(v).encode()
    elif isinstance(v, float):
        data = b"f" + repr(v + 0.0).encode()
    else:
        data = b"s" + v.encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _typed(v: Any) -> tuple:
    return (type(v).__name__, v + 0.0 if isinstance(v, float) else v)


def _registers(vals: list, precision: int) -> dict:
    rest = 64 - precision
    regs: dict = {}
    for _, v in {_typed(v) for v in vals}:
        h = _value_hash(v)
        i, rank = str(h >> rest), rest - (h & ((1 << rest) - 1)).bit_length() + 1
        regs[i] = max(regs.get(i, 0), rank)
    return regs


def _histogram(mags: list, gamma: float, width: int) -> dict:
    if not mags:
        return {"offset": 0, "counts": []}
    scale = 1 / math.log(gamma)
    buckets = Counter(math.ceil(math.log(m) * scale) for m in mags)
    hi = max(buckets)
    lo = max(min(buckets), hi - width + 1)
    counts = [0] * (hi - lo + 1)
    for i, c in buckets.items():
        counts[max(i, lo) - lo] += c
    return {"offset": lo, "counts": counts}


def _sketch(a: dict, vals: list) -> dict:
    kind = a["type"]
    if kind == "distinct":
        return {"registers": _registers(vals, a.get("precision", 14))}
    if kind == "percentiles":
        acc = a.get("relative_accuracy", 0.01)
        gamma, width = (1 + acc) / (1 - acc), a.get("buckets", 2048)
        return {"positive": _histogram([v for v in vals if v > 0], gamma, width),
                "negative": _histogram([-v for v in vals if v < 0], gamma, width),
                "zero": sum(1 for v in vals if v == 0), "count": len(vals), "min": min(vals), "max": max(vals)}
    counts = Counter(_typed(v) for v in vals)
    assert len(counts) <= a.get("capacity", 100), "top_k truth: more distinct values than the capacity"
    return {"items": {f"{_value_hash(v):016x}": {"value": v, "count": c} for (_, v), c in counts.items()},
            "count": len(vals)}


def exact(vals: list, a: dict) -> dict:
    """What a sketch's estimates stand for, exactly: distinct -> {distinct: number of distinct
    values (with their JSON types)}; percentiles -> {p50: the value at rank floor(0.5*(n-1)) of the
    sorted values, ...}; top_k -> {top: [{value, count}] by count, then by the value's hash}."""
    if a["type"] == "distinct":
        return {"distinct": len({_typed(v) for v in vals})}
    if a["type"] == "percentiles":
        ordered = sorted(vals)
        out = {}
        for q in a.get("quantiles", [0.5, 0.95, 0.99]):
            name = "p" + f"{q * 100:.6f}".rstrip("0").rstrip(".").replace(".", "_")
            out[name] = ordered[math.floor(q * (len(ordered) - 1))]
        return out
    counts = Counter(_typed(v) for v in vals)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], f"{_value_hash(kv[0][1]):016x}"))
    return {"top": [{"value": v, "count": c} for (_, v), c in ranked[:a.get("k", 10)]]}


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
            out[(a["name"], key, start)] = (_sketch(a, vals) if a["type"] in ("distinct", "percentiles", "top_k")
                                            else _result(a["type"], vals))
    return out


def aggregate(records: Iterable[Any], aggregations: list[dict]) -> tuple[dict, int]:
    """(truth of the records every aggregation can use, how many records are unusable)."""
    needs, numeric, times = set(), set(), set()
    for a in aggregations:
        needs.update(a.get("group_by", []))
        if a["type"] in ("distinct", "top_k"):
            needs.add(a["field"])
        elif a["type"] != "count":
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


# -- streams with hostile records: what a sink can store, decided from the raw bytes ----------

import json as _json
import math as _math
from fractions import Fraction as _F

MIN_TIME = -62135596800      # 0001-01-01T00:00:00Z
END_TIME = 253402300800      # 10000-01-01T00:00:00Z
INT64 = (-(2 ** 63), 2 ** 63 - 1)


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def _walk_ok(v):
    """No lone surrogate and no non-finite number anywhere (orjson refuses both)."""
    if isinstance(v, str):
        try:
            v.encode()
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(v, float):
        return _math.isfinite(v)
    if isinstance(v, list):
        return all(_walk_ok(x) for x in v)
    if isinstance(v, dict):
        return all(_walk_ok(k) and _walk_ok(x) for k, x in v.items())
    return True


def decode(raw):
    """The record in ``raw`` bytes, or raise ValueError: strict UTF-8, standard JSON."""
    text = raw.decode("utf-8")
    v = _json.loads(text, parse_constant=_no_constant)
    if not _walk_ok(v):
        raise ValueError("not representable")
    return v


def exact_time(v):
    """Event time as an exact Fraction of seconds, or None if it is not a time."""
    if type(v) in (int, float):
        if isinstance(v, float) and not _math.isfinite(v):
            return None
        if isinstance(v, int) and abs(v) >= 2 ** 1024:  # no float holds it
            return None
        return _F(v)
    if type(v) is str:
        try:
            d = dt.datetime.fromisoformat(v[:-1] + "+00:00" if v.endswith("Z") else v)
        except ValueError:
            return None
        if d.tzinfo is None:
            d = d.replace(tzinfo=dt.timezone.utc)
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
        delta = d - epoch
        return _F(delta.days * 86400 + delta.seconds) + _F(delta.microseconds, 10 ** 6)
    return None


def _key_ok(v, limit):
    if isinstance(v, bool):
        return True
    if isinstance(v, int):
        return INT64[0] <= v <= INT64[1]
    if isinstance(v, float):
        return _math.isfinite(v)
    if isinstance(v, str):
        try:
            return len(v.encode()) <= limit
        except UnicodeEncodeError:
            return False
    return False


def _number_ok(v):
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return INT64[0] <= v <= INT64[1]
    return isinstance(v, float) and _math.isfinite(v)


def typed(v):
    """A group-by value with its JSON type: 1, 1.0, true and "1" are different groups."""
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, float):
        return ("float", v + 0.0)
    return (type(v).__name__, v)


def _windows(t, window):
    """Window starts (exact) of a time: window is seconds (tumbling) or (size, hop)."""
    size, hop = (window, window) if not isinstance(window, tuple) else window
    start = (t // hop) * hop
    out = []
    while start + size > t:
        out.append(start)
        start -= hop
    return out


def hostile_truth(partitions, aggs, max_key_bytes=1024):
    """Expected documents and dead letters for raw records per partition.

    ``aggs`` as in :func:`aggregate` (windows in whole seconds or (size, hop)). Returns
    ({(aggregation, ((field, (type, value)), ...), window start ms or None): {field: (value, tolerance)}},
     {(partition, position)} of the records that must be dead letters).
    A record is good when it decodes to an object, every group-by value is a string of at most
    ``max_key_bytes`` bytes of UTF-8, an int64, a finite float or a boolean, every number is an
    int64 or a finite float (not a boolean), and every window of every windowed aggregation lies
    within 0001-01-01 .. 10000-01-01. A sum of integers whose absolute values add up within int64
    (no order of adding leaves int64) is an exact int with tolerance 0; any other sum is a
    Fraction with the rounding error any order of double additions may make."""
    keys, numbers, longest = set(), set(), {}
    for a in aggs:
        keys.update(a.get("group_by", []))
        if a["type"] != "count":
            numbers.add(a["field"])
        if a.get("window"):
            w = a["window"]
            size = w[0] if isinstance(w, tuple) else w
            tf = a.get("time_field", "timestamp")
            longest[tf] = max(size, longest.get(tf, 0))
    good, bad = [], set()
    for p, raws in partitions.items():
        for i, raw in enumerate(raws):
            if not isinstance(raw, bytes):  # a source's own object: taken as it is
                rec = raw
            else:
                try:
                    rec = decode(raw)
                except ValueError:
                    bad.add((p, i))
                    continue
            ok = isinstance(rec, dict)
            ok = ok and all(f in rec and rec[f] is not None and _key_ok(rec[f], max_key_bytes) for f in keys)
            ok = ok and all(f in rec and _number_ok(rec[f]) for f in numbers)
            times = {}
            for tf, w in longest.items():
                if not ok:
                    break
                t = exact_time(rec.get(tf))
                ok = t is not None and MIN_TIME + w <= t < END_TIME - w
                times[tf] = t
            if ok:
                good.append((rec, times))
            else:
                bad.add((p, i))
    out = {}
    for a in aggs:
        groups = defaultdict(list)
        for rec, times in good:
            key = tuple((f, typed(rec[f])) for f in sorted(a.get("group_by", [])))
            v = rec[a["field"]] if a["type"] != "count" else 1
            if not a.get("window"):
                groups[(a["name"], key, None)].append(v)
                continue
            for s in _windows(times[a.get("time_field", "timestamp")], a["window"]):
                groups[(a["name"], key, int(s * 1000))].append(v)
        for k, vals in groups.items():
            n = len(vals)
            if a["type"] == "count":
                out[k] = {"count": (n, 0)}
                continue
            if a["type"] in ("min", "max"):
                pick = min if a["type"] == "min" else max
                out[k] = {a["type"]: (pick(_F(v) for v in vals), 0)}
                continue
            exact_sum = sum(_F(v) for v in vals)
            spread = sum(abs(_F(v)) for v in vals)
            all_int = all(isinstance(v, int) for v in vals)
            if all_int and spread <= INT64[1]:
                tol = 0.0
            elif spread < 2 ** 1000:
                tol = float(spread) * n * 2.0 ** -51
            else:  # near the largest double: a sum may round to infinity
                tol = _math.inf
            if all_int and spread <= INT64[1]:  # an int64 in the store, exactly
                exact_sum = int(exact_sum)
            if a["type"] == "sum":
                out[k] = {"sum": (exact_sum, tol)}
            elif a["type"] == "avg":
                out[k] = {"sum": (exact_sum, tol), "count": (n, 0), "avg": (exact_sum / n, tol / n + 1e-12)}
            elif a["type"] == "min":
                out[k] = {"min": (min(vals), 0)}
            else:
                out[k] = {"max": (max(vals), 0)}
    return out, bad


def closing_truth(partitions: dict, aggregations: list[dict], ended: bool = True) -> tuple[dict, set, dict]:
    """Windows that close: lateness by each record's own partition, in exact arithmetic.

    ``partitions``: partition -> its records in order (every one usable by every aggregation);
    ``aggregations`` as for :func:`truth`, a windowed one with ``lateness`` in seconds closing its
    windows. A record adds nothing to a window whose end is at or before its partition's latest
    event time so far minus the lateness; it is *late* when that holds for every one of its
    windows. Returns (results in :func:`truth`'s shape, the keys of the windows closed — all of
    them when the input ``ended``, else those ending at or before the lowest partition's latest
    time minus the lateness — and {aggregation: late records}, with the late records' (partition,
    index) under ``("positions", aggregation)``)."""
    out: dict = {}
    closed: set = set()
    late: dict = {}
    for a in aggregations:
        window = window_of(a)
        lateness = a.get("lateness")
        tf = a.get("time_field", "timestamp")
        fld = a.get("field")
        groups: dict = defaultdict(list)
        latest = {}
        for p, records in partitions.items():
            seen = None
            for i, r in enumerate(records):
                key = tuple(sorted((f, r[f]) for f in a.get("group_by", [])))
                v = r[fld] if fld else None
                if window is None:
                    groups[(key, None)].append(v)
                    continue
                t = Fraction(_time(r[tf]))
                starts = window_starts(float(t), *window)
                if lateness is not None and seen is not None:
                    limit = seen - Fraction(lateness)
                    starts = [s for s in starts if Fraction(s) + window[0] > limit]
                    if not starts:
                        late[a["name"]] = late.get(a["name"], 0) + 1
                        late.setdefault(("positions", a["name"]), set()).add((p, i))
                for s in starts:
                    groups[(key, s)].append(v)
                seen = t if seen is None else max(seen, t)
            latest[p] = seen
        for (key, start), vals in groups.items():
            out[(a["name"], key, start)] = _result(a["type"], vals)
            if window is None or lateness is None:
                continue
            if ended:
                closed.add((a["name"], key, start))
            elif all(v is not None for v in latest.values()) and latest and \
                    Fraction(start) + window[0] <= min(latest.values()) - Fraction(lateness):
                closed.add((a["name"], key, start))
    return out, closed, late


def finals(collection: Any) -> set:
    """The keys (in :func:`stored`'s shape) of the documents marked final."""
    out = set()
    for doc in collection.find({"final": True}):
        start = (doc.get("window") or {}).get("start")
        out.add((doc.get("aggregation"), tuple(sorted((doc.get("key") or {}).items())),
                 None if start is None else round(start.timestamp(), 3)))
    return out
