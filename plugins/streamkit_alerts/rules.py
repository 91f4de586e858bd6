"""Alert rules and their evaluation after each flush.

A rule watches one field of one aggregation (``count of interactions_per_item
above 500``); the window is the aggregation's own. After a flush, the documents
that flush touched are read back (only those past a threshold are returned), so
a rule sees the merged value that every process contributed to, not one
process's delta. An alert is stored under an ``_id`` made of the rule and the
document, so it fires once per rule, key and window, whichever process sees
the crossing first.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable

from streamkit import UTC, iso_time
from streamkit_mongodb import DUPLICATE_KEY

log = logging.getLogger("streamkit.alerts")
ALERTS_COLLECTION = "streamkit_alerts"
RULE_KEYS = {"name", "aggregation", "field", "above", "below"}
READ_CHUNK = 500           # document ids per read-back query
FIRED_MEMORY = 100_000     # (rule, document) pairs remembered to skip known alerts


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_rules(rules: list) -> list:
    """Structure of ``alerts.rules`` (names of aggregations are checked when the pipeline starts)."""
    if not rules:
        raise ValueError("expected at least one rule")
    names = set()
    for i, r in enumerate(rules):
        where = f"rule {i}"
        unknown = sorted(set(r) - RULE_KEYS)
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(RULE_KEYS))})")
        if not isinstance(r.get("aggregation"), str) or not r["aggregation"]:
            raise ValueError(f"{where}: needs aggregation: <name of an aggregation>")
        for k in ("name", "field"):
            if k in r and (not isinstance(r[k], str) or not r[k]):
                raise ValueError(f"{where}: {k} must be a non-empty string, got {r[k]!r}")
        ops = [k for k in ("above", "below") if k in r]
        if len(ops) != 1:
            raise ValueError(f"{where}: needs exactly one of above: <number> or below: <number>")
        if not _is_number(r[ops[0]]):
            raise ValueError(f"{where}: {ops[0]} must be a number, got {r[ops[0]]!r}")
        if "name" in r:
            if r["name"] in names:
                raise ValueError(f"{where}: duplicate rule name {r['name']!r}")
            names.add(r["name"])
    return rules


@dataclass
class Rule:
    name: str
    aggregation: str
    field: str
    op: str            # above | below
    threshold: float

    def crossed(self, value: Any) -> bool:
        if not _is_number(value):
            return False
        return value > self.threshold if self.op == "above" else value < self.threshold

    def query(self) -> dict:
        return {self.field: {"$gt" if self.op == "above" else "$lt": self.threshold}}

    def alert_id(self, doc_id: str) -> str:
        return hashlib.blake2b(f"{self.name}\x00{doc_id}".encode(), digest_size=16).hexdigest()


def _key_text(key: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in key.items()) or "(all)"


def message(rule: Rule, key: dict, window: dict, value: Any) -> str:
    where = "all-time"
    if window.get("start") is not None:
        where = f"window {iso_time(window['start'])}–{iso_time(window.get('end'))}"
    return (f"{rule.aggregation} {rule.field} = {value:g} is {rule.op} {rule.threshold:g} "
            f"for {_key_text(key)} ({where})")


def to_json(doc: dict) -> dict:
    """A stored alert as destinations receive it (dates as ISO-8601 strings)."""
    w = doc.get("window") or {}
    return {"id": doc["_id"], "rule": doc["rule"], "pipeline": doc.get("pipeline"),
            "aggregation": doc["aggregation"], "collection": doc.get("collection"), "key": doc["key"],
            "window": {"start": iso_time(w.get("start")), "end": iso_time(w.get("end"))},
            "field": doc["field"], "value": doc["value"], "op": doc["op"], "threshold": doc["threshold"],
            "message": doc["message"], "fired_at": iso_time(doc["fired_at"])}


class AlertEngine:
    """Evaluates the rules after each flush; hands new alerts to ``notify``."""

    def __init__(self, rules: list[Rule], coll: Any, alerts: Any, pipeline_name: str, collection: str,
                 document_id: Callable[..., str], notify: Callable[[list[dict]], None]) -> None:
        self.rules = rules
        self.coll = coll
        self.alerts = alerts
        self.pipeline_name = pipeline_name
        self.collection = collection
        self.document_id = document_id
        self.notify = notify
        self.by_agg: dict[str, list[Rule]] = {}
        for r in rules:
            self.by_agg.setdefault(r.aggregation, []).append(r)
        self.fired: set[str] = set()

    def start(self) -> None:
        from pymongo import ASCENDING, DESCENDING
        self.alerts.create_index([("collection", ASCENDING), ("fired_at", DESCENDING)])

    def flushed(self, flush: Any) -> list[dict]:
        """Alerts newly fired by this flush (already stored and handed to ``notify``)."""
        touched: dict[str, list[str]] = {}
        for d in flush.deltas():
            if d.aggregation in self.by_agg:
                touched.setdefault(d.aggregation, []).append(self.document_id(d.aggregation, d.key, d.window_start))
        candidates: list[dict] = []
        now = dt.datetime.now(UTC)
        for agg, ids in touched.items():
            rules = self.by_agg[agg]
            fields = {r.field for r in rules}
            proj = {"key": 1, "window": 1, **{f: 1 for f in fields}}
            cond = [r.query() for r in rules]
            for i in range(0, len(ids), READ_CHUNK):
                chunk = ids[i:i + READ_CHUNK]
                for doc in self.coll.find({"_id": {"$in": chunk}, "$or": cond}, proj):
                    for r in rules:
                        value = doc.get(r.field)
                        aid = r.alert_id(doc["_id"])
                        if aid in self.fired or not r.crossed(value):
                            continue
                        key, window = doc.get("key") or {}, doc.get("window") or {}
                        candidates.append({
                            "_id": aid, "rule": r.name, "pipeline": self.pipeline_name, "aggregation": agg,
                            "collection": self.collection, "document": doc["_id"], "key": key,
                            "window": {"start": window.get("start"), "end": window.get("end")},
                            "field": r.field, "value": value, "op": r.op, "threshold": r.threshold,
                            "message": message(r, key, window, value), "fired_at": now})
        if not candidates:
            return []
        fresh, unstored = self._store(candidates)
        if len(self.fired) > FIRED_MEMORY:
            self.fired.clear()  # forgetting costs only a duplicate-key error on the next crossing
        self.fired.update(c["_id"] for c in candidates if c["_id"] not in unstored)
        out = [to_json(c) for c in fresh]
        if out:
            self.notify(out)
        return out

    def _store(self, candidates: list[dict]) -> tuple[list[dict], set]:
        """Insert; an alert whose ``_id`` exists already fired (here or in another process).
        Returns the new alerts and the ids that could not be stored (tried again next flush)."""
        from pymongo import InsertOne
        from pymongo.errors import BulkWriteError
        try:
            self.alerts.bulk_write([InsertOne(c) for c in candidates], ordered=False)
            return candidates, set()
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            other = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            if other:
                log.warning("alerts: could not store %d alerts: %s", len(other), other[0].get("errmsg"))
            failed = {e["index"] for e in errors}
            return ([c for i, c in enumerate(candidates) if i not in failed],
                    {candidates[e["index"]]["_id"] for e in other})
