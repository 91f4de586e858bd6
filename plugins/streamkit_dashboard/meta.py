"""What the dashboard knows about each aggregation, and which ones give the seed's figures.

Inside a pipeline the metadata comes from its configuration; a standalone
dashboard reads it from the newest status document a pipeline wrote, or, when
no pipeline wrote one, infers it from one sample document per aggregation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

#: document fields that are not values of the aggregation
_NOT_VALUES = {"_id", "aggregation", "key", "window", "updated_at"}
#: the fields the built-in aggregators own, in the order a table shows them
_KNOWN_ORDER = ("distinct", "count", "sum", "avg", "min", "max")
#: a stored sketch field -> the sketch type it tells (a document read without its pipeline)
_SKETCH_STATE = {"registers": "distinct", "positive": "percentiles", "items": "top_k"}


@dataclass
class AggMeta:
    name: str
    group_by: list[str]
    fields: list[str]
    primary: str
    window_kind: str = "all"          # all | tumbling | hopping
    window_size: float | None = None  # seconds
    window_hop: float | None = None
    type: str | None = None
    field: str | None = None          # the record field the aggregation reads (None: unknown)

    @property
    def windowed(self) -> bool:
        return self.window_kind != "all"

    @property
    def step(self) -> float | None:
        """Seconds between consecutive window starts."""
        return self.window_hop or self.window_size

    def window_label(self) -> str:
        if not self.windowed:
            return "all-time"
        size = _seconds_label(self.window_size)
        if self.window_kind == "hopping":
            return f"{size} windows every {_seconds_label(self.window_hop)}"
        return f"{size} windows"

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type, "group_by": list(self.group_by), "field": self.field,
                "fields": list(self.fields), "primary": self.primary,
                "window": {"kind": self.window_kind, "size": self.window_size, "hop": self.window_hop,
                           "label": self.window_label()}}

    @classmethod
    def from_json(cls, d: dict) -> "AggMeta":
        """From :meth:`to_json` (what status documents store)."""
        w = d.get("window") or {}
        return cls(name=d["name"], type=d.get("type"), group_by=list(d.get("group_by") or []),
                   field=d.get("field"), fields=list(d.get("fields") or []), primary=d.get("primary") or "",
                   window_kind=w.get("kind") or "all", window_size=w.get("size"), window_hop=w.get("hop"))

    @classmethod
    def from_spec(cls, spec: Any) -> "AggMeta":
        """From a configured aggregation (``pipeline.aggregations[i]``)."""
        d = spec.describe()
        w = d["window"]
        fields = list(d["fields"])
        return cls(name=d["name"], type=d["type"], group_by=list(d["group_by"]), field=d["field"], fields=fields,
                   primary=d["primary"] or (fields[0] if fields else ""),
                   window_kind=w["kind"], window_size=w["size"], window_hop=w["hop"])

    @classmethod
    def from_document(cls, doc: dict) -> "AggMeta":
        """A best guess from one stored document (standalone dashboard, no status document)."""
        key = doc.get("key") or {}
        values = [k for k, v in doc.items() if k not in _NOT_VALUES and not k.startswith("_")
                  and (v is None or isinstance(v, (int, float))) and not isinstance(v, bool)]
        fields = sorted(values, key=lambda f: (_KNOWN_ORDER.index(f) if f in _KNOWN_ORDER else 99, f))
        primary = "avg" if "avg" in fields else (fields[0] if fields else "")
        kind = next((t for f, t in _SKETCH_STATE.items() if isinstance(doc.get(f), dict)), None)
        if kind == "distinct":
            primary = "distinct"
        elif kind == "percentiles":
            fields = [f for f in fields if f.startswith("p")] + [f for f in ("count", "min", "max") if f in fields]
            primary = "p95" if "p95" in fields else fields[0]
        elif kind == "top_k":
            fields, primary = ["top", *fields], "count"
        window = doc.get("window") or {}
        start, end = window.get("start"), window.get("end")
        window_kind, size = "all", None
        if start is not None:
            window_kind = "tumbling"
            if end is not None and hasattr(end, "timestamp") and hasattr(start, "timestamp"):
                size = end.timestamp() - start.timestamp()
        return cls(name=doc["aggregation"], group_by=list(key), fields=fields, primary=primary,
                   window_kind=window_kind, window_size=size, window_hop=size, type=kind)


def _seconds_label(seconds: float | None) -> str:
    if not seconds:
        return "?"
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= n and seconds % n == 0:
            return f"{int(seconds // n)}{unit}"
    return f"{seconds:g}s"


@dataclass
class SeedFields:
    """The record fields the seed's figures are about (configurable)."""

    user: str = "user_id"
    item: str = "item_id"
    type: str = "interaction_type"


@dataclass
class SeedAggregations:
    """The aggregations the seed's figures come from, or what to add when one is missing."""

    users: AggMeta | None
    items: AggMeta | None
    types: AggMeta | None
    missing: list[dict] = field(default_factory=list)
    #: distinct users per item, and quantiles per interaction type (no hint when missing: optional)
    distinct: AggMeta | None = None
    percentiles: AggMeta | None = None


def _prefer_count(cands: list[AggMeta]) -> AggMeta | None:
    # a count aggregation says it most plainly; an avg also keeps a count per key
    cands.sort(key=lambda m: (m.type != "count", m.name))
    return cands[0] if cands else None


def per_key(metas: Iterable[AggMeta], fld: str) -> AggMeta | None:
    """An all-time aggregation grouped by ``fld`` alone that keeps a ``count``."""
    return _prefer_count([m for m in metas if not m.windowed and m.group_by == [fld] and "count" in m.fields])


def over_time(metas: Iterable[AggMeta], fld: str) -> AggMeta | None:
    """A windowed aggregation grouped by ``fld`` alone that keeps a ``count``."""
    return _prefer_count([m for m in metas if m.windowed and m.group_by == [fld] and "count" in m.fields])


def seed_aggregations(metas: list[AggMeta], fields: SeedFields) -> SeedAggregations:
    users, items, types = per_key(metas, fields.user), per_key(metas, fields.item), over_time(metas, fields.type)
    missing = []
    if users is None:
        missing.append({"figures": "total interactions, distinct users, average per user, top users",
                        "add": f"{{name: interactions_per_user, type: count, group_by: [{fields.user}]}}"})
    if items is None:
        missing.append({"figures": "most and fewest interacted items, top items",
                        "add": f"{{name: interactions_per_item, type: count, group_by: [{fields.item}]}}"})
    if types is None:
        missing.append({"figures": "interactions per type over time",
                        "add": f"{{name: interactions_per_type, type: count, group_by: [{fields.type}], "
                               f"window: 1m}}"})
    return SeedAggregations(users, items, types, missing, distinct=distinct_per(metas, fields.item, fields.user),
                            percentiles=percentiles_per(metas, fields.type))


def distinct_per(metas: Iterable[AggMeta], fld: str, of: str) -> AggMeta | None:
    """An all-time ``distinct`` grouped by ``fld`` alone, preferably of the field ``of``."""
    cands = [m for m in metas if not m.windowed and m.group_by == [fld] and m.type == "distinct"]
    cands.sort(key=lambda m: (m.field != of, m.name))
    return cands[0] if cands else None


def percentiles_per(metas: Iterable[AggMeta], fld: str) -> AggMeta | None:
    """An all-time ``percentiles`` grouped by ``fld`` alone."""
    cands = sorted((m for m in metas if not m.windowed and m.group_by == [fld] and m.type == "percentiles"),
                   key=lambda m: m.name)
    return cands[0] if cands else None
