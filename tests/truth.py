"""Independent reference aggregation in plain Python, for exact comparisons in tests."""
from __future__ import annotations

import datetime as dt
from collections import defaultdict


def _time(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    d = dt.datetime.fromisoformat(v)
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.timezone.utc)
    return d.timestamp()


def usable(rec, needs, numeric, times):
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


def aggregate(records, aggs):
    """aggs: list of dicts like the YAML (name, type, group_by, field, window seconds or (size, hop))."""
    needs, numeric, times = set(), set(), set()
    for a in aggs:
        needs.update(a.get("group_by", []))
        if a["type"] != "count":
            numeric.add(a["field"])
        if a.get("window"):
            times.add(a.get("time_field", "timestamp"))
    good = [r for r in records if usable(r, needs, numeric, times)]
    out = {}
    for a in aggs:
        acc = defaultdict(list)
        for r in good:
            key = tuple(sorted((f, r[f]) for f in a.get("group_by", [])))
            v = r.get(a.get("field")) if a.get("field") else None
            w = a.get("window")
            if not w:
                acc[(key, None)].append(v)
                continue
            size, hop = (w, w) if not isinstance(w, tuple) else w
            t = _time(r[a.get("time_field", "timestamp")])
            start = (int(t) // hop) * hop  # integer sizes in tests: exact
            while start + size > t:
                acc[(key, float(start))].append(v)
                start -= hop
        for (key, start), vals in acc.items():
            if a["type"] == "count":
                res = {"count": len(vals)}
            elif a["type"] == "sum":
                res = {"sum": sum(vals)}
            elif a["type"] == "avg":
                res = {"avg": sum(vals) / len(vals), "sum": sum(vals), "count": len(vals)}
            elif a["type"] == "min":
                res = {"min": min(vals)}
            else:
                res = {"max": max(vals)}
            out[(a["name"], key, start)] = res
    return out, len(records) - len(good)


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
