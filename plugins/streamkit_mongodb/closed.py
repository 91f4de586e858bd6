"""Closed windows in MongoDB: marked final, dropped after their retention, read back for the
sinks that emit closed windows, and how far each of those got.

A closed window's document gains ``final: true`` and ``closed_at`` (when it was marked); with a
``retention`` also ``expire_at`` (``closed_at`` + retention), which a TTL index on that field lets
the server delete by itself. The sink deletes them too, on every flush: the documents whose
``expire_at`` passed (for servers with no TTL monitor, such as mongomock) and the closed windows
whose end is a retention behind the latest event time (when the stream runs faster than the wall
clock). Nothing can write a closed window again, so neither deletion can bring one back.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Mapping

from streamkit import UTC, WindowResult

from .client import is_mock
from .ids import _escape, _unescape
from .positions import LAYOUT

#: the dates BSON and Python both hold; a closing time beyond them closes every window
_FIRST = dt.datetime(1, 1, 1, tzinfo=UTC)
_LAST = dt.datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)


def as_date(ts: float) -> dt.datetime:
    """Epoch seconds as a date, clamped to what a document can hold."""
    try:
        return min(max(dt.datetime.fromtimestamp(ts, UTC), _FIRST), _LAST)
    except (OverflowError, OSError, ValueError):
        return _FIRST if ts < 0 else _LAST


def _seconds(d: Any) -> float:
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d.timestamp()


class ClosedWindows:
    """The closed-windows part of the mongodb sink (mixed into :class:`~.sink.MongoSink`)."""

    config: dict
    context: Any
    coll: Any
    offsets: Any
    pipeline_name: str
    _retry: Callable[..., Any]
    _offset_id: Callable[[str], str]

    def _aggregation(self, name: str) -> Any:
        pipeline = self.context.pipeline
        for a in pipeline.aggregations if pipeline is not None else []:
            if a.name == name:
                return a
        return None

    def _create_window_indexes(self) -> None:
        from pymongo import ASCENDING
        pipeline = self.context.pipeline
        aggs = pipeline.aggregations if pipeline is not None else []
        if any(a.closes for a in aggs):
            self.coll.create_index([("aggregation", ASCENDING), ("window.end", ASCENDING)])
        if any(a.retention is not None for a in aggs) and not is_mock(self.config["uri"]):
            # the server deletes a document once its expire_at passed (MongoDB's TTL monitor); not
            # in mongomock, which would look for expired documents on every access to any one
            # (a flush of n updates would cost n scans): there the sink's own deletion does it
            self.coll.create_index([("expire_at", ASCENDING)], expireAfterSeconds=0)

    def close_windows(self, closing: Mapping[str, float]) -> None:
        now = dt.datetime.now(UTC)
        ops = []
        for name, upto in closing.items():
            done: dict = {"final": True, "closed_at": now}
            agg = self._aggregation(name)
            if agg is not None and agg.retention is not None:
                done["expire_at"] = now + dt.timedelta(seconds=agg.retention)
            ops.append((name, {"aggregation": name, "window.end": {"$lte": as_date(upto)},
                               "final": {"$ne": True}}, {"$set": done}))
        for name, filt, update in ops:
            self._retry("close windows", lambda f=filt, u=update: self.coll.update_many(f, u))

    def drop_windows(self, before: Mapping[str, float]) -> None:
        now = dt.datetime.now(UTC)
        for name, upto in before.items():
            filt = {"aggregation": name, "final": True, "window.end": {"$lte": as_date(upto)}}
            self._retry("drop windows", lambda f=filt: self.coll.delete_many(f))
        if any(a.retention is not None for a in (self.context.pipeline.aggregations
                                                 if self.context.pipeline is not None else [])):
            # what a TTL monitor does, for servers that have none (mongomock)
            self._retry("drop expired windows", lambda: self.coll.delete_many({"expire_at": {"$lte": now}}))

    def final_windows(self, aggregation: str, after: float, until: float) -> list[WindowResult]:
        agg = self._aggregation(aggregation)
        fields = tuple(agg.aggregator.fields) if agg is not None else ()
        filt = {"aggregation": aggregation, "final": True,
                "window.end": {"$gt": as_date(after), "$lte": as_date(until)}}
        docs = self._retry("read closed windows", lambda: list(
            self.coll.find(filt).sort([("window.end", 1), ("_id", 1)])))
        return [WindowResult(aggregation, d.get("key") or {}, _seconds(d["window"]["start"]),
                             _seconds(d["window"]["end"]), {f: d.get(f) for f in fields}, str(d["_id"]))
                for d in docs]

    # -- how far each emitting sink got ---------------------------------------------------------
    def _windows_id(self) -> str:
        return self._offset_id("") + "*windows"  # within this pipeline's offsets, no partition's name

    def emitted(self, sink: str) -> dict[str, float]:
        doc = self._retry("read emitted windows", lambda: self.offsets.find_one({"_id": self._windows_id()}))
        got = ((doc or {}).get("emitted") or {}).get(_escape(sink)) or {}
        return {_unescape(k): float(v) for k, v in got.items() if isinstance(v, (int, float))}

    def keep_emitted(self, sink: str, upto: Mapping[str, float]) -> None:
        from pymongo import UpdateOne
        path = "emitted." + _escape(sink)
        update = {"$max": {f"{path}.{_escape(a)}": float(v) for a, v in upto.items()},
                  "$setOnInsert": {"pipeline": self.pipeline_name, "collection": self.config["collection"],
                                   "layout": LAYOUT}}
        self._retry("store emitted windows", lambda: self.offsets.bulk_write(
            [UpdateOne({"_id": self._windows_id()}, update, upsert=True)]))
