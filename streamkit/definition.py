"""What a pipeline's aggregations mean, as plain data: stored with its positions by the sinks
that keep positions, and compared on every start, so a pipeline whose aggregations changed
under the same name stops instead of mixing old and new meaning in the same documents."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from .windows import Window

#: the properties of an aggregation that decide what its documents mean, in message order
PROPERTIES = ("type", "group_by", "field", "window", "time_field", "lateness")


def _seconds(s: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size and s % size == 0:
            return f"{int(s // size)}{unit}"
    return f"{s * 1000:g}ms"


def window_text(window: Window) -> str:
    """``all-time``, ``1m`` or ``5m hop 1m``."""
    if window.size is None:
        return "all-time"
    if window.hop is None or window.hop == window.size:
        return _seconds(window.size)
    return f"{_seconds(window.size)} hop {_seconds(window.hop)}"


def definition(aggregations: list) -> dict:
    """``{"fingerprint": ..., "aggregations": [...]}`` for a list of ``AggregationSpec``: JSON-ready,
    what a sink stores with its positions (:meth:`streamkit.Sink.keep_definition`)."""
    aggs = []
    for a in aggregations:
        d: dict[str, Any] = {"name": a.name, "type": a.type, "group_by": list(a.group_by), "field": a.field,
                             "window": window_text(a.window)}
        if a.windowed:  # the time field decides nothing for an all-time aggregation
            d["time_field"] = a.time_field
        if a.closes:  # which records are late decides what the windows hold
            d["lateness"] = _seconds(a.lateness) if a.lateness else "0s"
        # options left at their defaults are left out: a later version may add options
        declared = a.aggregator.options
        d["options"] = {k: v for k, v in a.options.items() if k not in declared or v != declared[k].default}
        aggs.append(d)
    aggs = json.loads(json.dumps(aggs, default=str))
    canonical = json.dumps(sorted(aggs, key=lambda d: d["name"]), sort_keys=True)
    return {"fingerprint": hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest(), "aggregations": aggs}


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return str(value)


def changes(stored: Any, current: dict) -> list[str]:
    """What differs between a stored definition and the current one, one phrase per change
    (``aggregations[1].window: 1m -> 5m``); empty when they mean the same (order aside)."""
    try:
        old = {d["name"]: d for d in stored["aggregations"]}
    except (TypeError, KeyError):
        return ["the stored definition is unreadable"]
    out = []
    names = set()
    for i, d in enumerate(current["aggregations"]):
        names.add(d["name"])
        before = old.get(d["name"])
        if before is None:
            out.append(f"aggregations[{i}] ({d['name']}): new")
            continue
        for prop in PROPERTIES:
            if prop == "time_field" and before.get("window") != d.get("window"):
                continue  # it comes and goes with a window: the window's change says it
            if before.get(prop) != d.get(prop):
                out.append(f"aggregations[{i}].{prop}: {_text(before.get(prop))} -> {_text(d.get(prop))}")
        opts, was = d.get("options") or {}, before.get("options") or {}
        for k in sorted(set(opts) | set(was)):
            if opts.get(k) != was.get(k):
                out.append(f"aggregations[{i}].{k}: {_text(was.get(k, 'default'))} -> {_text(opts.get(k, 'default'))}")
    out += [f"aggregation {name} removed" for name in old if name not in names]
    return out
