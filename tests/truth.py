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
