"""What a running pipeline keeps up to date for dashboards: a status document per
process and per-aggregation counters, both in the ``streamkit_status`` collection.

Counters (distinct keys, and the totals of the additive ``count`` and ``sum``
fields) let ``/api/summary`` answer without reading every document. They are
kept from each flush's deltas: the totals grow by the deltas, the distinct keys
by the documents the MongoDB sink created in that flush (its read handle's
``created(flush)``: an upsert creates a document exactly once, whichever process
wins the race). The first process to
watch a collection starts the counters from what is already stored.
"""
from __future__ import annotations

import collections
import datetime as dt
import functools
import itertools
import logging
import os
import socket
import threading
import time
from typing import Any, Callable

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.errors import DuplicateKeyError

from streamkit_mongodb import try_briefly

from streamkit import UTC

from .meta import AggMeta

log = logging.getLogger("streamkit.dashboard")
STATUS_COLLECTION = "streamkit_status"
ADDITIVE = ("count", "sum")
HEARTBEAT = 5.0  # seconds between status updates when no flush happens (an idle source)
LAG_EVERY = 2.0  # seconds between readings of the source's lag


_runs = itertools.count(1)


def counter_id(collection: str, aggregation: str) -> str:
    return f"counter|{collection}|{aggregation}"


def ensure_status_indexes(status: Any) -> None:
    status.create_index([("kind", ASCENDING), ("collection", ASCENDING), ("updated_at", DESCENDING)])


def baseline(coll: Any, meta: AggMeta) -> dict:
    """Distinct keys and additive totals of what is stored now (one pass in the database)."""
    group: dict = {"_id": None, "keys": {"$sum": 1}}
    for f in ADDITIVE:
        if f in meta.fields:
            group[f] = {"$sum": f"${f}"}
    rows = list(coll.aggregate([{"$match": {"aggregation": meta.name}}, {"$group": group}]))
    out = {"keys": 0, **{f: 0 for f in ADDITIVE if f in meta.fields}}
    if rows:
        out.update({k: v for k, v in rows[0].items() if k != "_id"})
    return out


def reset_counters(aggregates: Any, pipeline: Any, dry_run: bool) -> int:
    """After ``streamkit reset``: the counters of the pipeline's aggregations, from the documents left
    (``aggregates``: the mongodb sink's read handle)."""
    status = aggregates.db[STATUS_COLLECTION]
    collection = aggregates.collection
    metas = [AggMeta.from_spec(a) for a in pipeline.aggregations]
    ids = {counter_id(collection, m.name): m for m in metas}
    found = [d["_id"] for d in status.find({"_id": {"$in": list(ids)}}, {"_id": 1})]
    if not dry_run:
        now = dt.datetime.now(UTC)
        for cid in found:
            meta = ids[cid]
            status.replace_one({"_id": cid}, {"kind": "counter", "collection": collection, "aggregation": meta.name,
                                              **baseline(aggregates.documents, meta), "updated_at": now})
    return len(found)


# status is secondary to the pipeline's own writes: retry briefly, then log and go on
_retry = functools.partial(try_briefly, logger=log)


class StatusWriter:
    """Called by the pipeline's hooks: ``start`` (startup), ``flushed`` (writer thread), ``stop``."""

    def __init__(self, pipeline: Any, aggregates: Any, document_id: Callable[..., str], db: Any = None) -> None:
        self.pipeline = pipeline
        self.aggregates = aggregates  # the mongodb sink's read handle
        self.document_id = document_id
        # ``db``: the sink's database through a client of the dashboard's own, which stays open
        # for the final status after the sink closed its client
        db = aggregates.db if db is None else db
        self.collection = aggregates.collection
        self.coll = db[self.collection]
        self.status = db[STATUS_COLLECTION]
        self.metas = [AggMeta.from_spec(a) for a in pipeline.aggregations]
        self.additive = {m.name: [f for f in ADDITIVE if f in m.fields] for m in self.metas}
        host = socket.gethostname()
        # one document per run: a process may run several pipelines, even of one name (library use)
        self.id = f"process|{pipeline.name}|{host}|{os.getpid()}|{next(_runs)}"
        self.base = {"kind": "process", "pipeline": pipeline.name, "collection": self.collection,
                     "database": aggregates.database, "host": host, "pid": os.getpid(),
                     "source": pipeline.source_type, "flush_interval": pipeline.flush_interval,
                     "aggregations": [m.to_json() for m in self.metas]}
        self.flushes = 0
        self.last_flush_at = 0.0
        self.points: collections.deque = collections.deque()  # (monotonic time, records read)
        self.lag: list | None = None
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.heartbeat: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        _retry("create status indexes", lambda: ensure_status_indexes(self.status))
        for meta in self.metas:
            _retry(f"start the counters of {meta.name}", lambda meta=meta: self._start_counter(meta))
        self.lag = self._read_lag()
        now = dt.datetime.now(UTC)
        doc = {**self.base, **self._counts(), "state": "running", "started_at": now, "updated_at": now,
               "last_flush": None, "stopped_by": None, **self._lag_fields()}
        _retry("write the status document", lambda: self.status.replace_one({"_id": self.id}, doc, upsert=True))
        self.points.append((time.monotonic(), self._result().records_read))
        self.heartbeat = threading.Thread(target=self._beat, name="streamkit-dashboard-status", daemon=True)
        self.heartbeat.start()

    def _start_counter(self, meta: AggMeta) -> None:
        cid = counter_id(self.collection, meta.name)
        if self.status.find_one({"_id": cid}, {"_id": 1}) is not None:
            return
        doc = {"_id": cid, "kind": "counter", "collection": self.collection, "aggregation": meta.name,
               **baseline(self.coll, meta), "updated_at": dt.datetime.now(UTC)}
        try:
            self.status.insert_one(doc)
        except DuplicateKeyError:  # another process started them first: its counts hold
            pass

    def stop(self, result: Any) -> None:
        self.stopped.set()
        with self.lock:
            # a closed source may no longer tell (Kafka): then its last reading stands
            self.lag = self._read_lag() or self.lag
            now = dt.datetime.now(UTC)
            fields = {**self._counts(result), "state": "stopped", "stopped_by": result.stopped_by or "done",
                      "updated_at": now, "records_per_second": 0.0, **self._lag_fields()}
            _retry("write the status document", lambda: self.status.update_one({"_id": self.id}, {"$set": fields}))

    # -- writer thread ------------------------------------------------------------------
    def flushed(self, flush: Any) -> None:
        with self.lock:
            self.flushes += 1
            self._update_counters(flush)
            now = dt.datetime.now(UTC)
            fields = {**self._counts(), "updated_at": now, "last_flush": now, "state": "running",
                      "records_per_second": self._rate()}
            fields.update(self._lag_fields())
            self.last_flush_at = time.monotonic()
            _retry("write the status document",
                   lambda: self.status.update_one({"_id": self.id}, {"$set": fields}, upsert=True))

    def _update_counters(self, flush: Any) -> None:
        created = self.aggregates.created(flush)
        inc: dict[str, dict] = {}
        for d in flush.deltas():
            fields = self.additive.get(d.aggregation)
            if fields is None:
                continue
            acc = inc.setdefault(d.aggregation, {"keys": 0, **{f: 0 for f in fields}})
            if fields:
                values = d.values
                for f in fields:
                    v = values.get(f)
                    if v is not None:
                        acc[f] += v
            if created and self.document_id(d.aggregation, d.key, d.window_start) in created:
                acc["keys"] += 1
        if not inc:
            return
        now = dt.datetime.now(UTC)
        ops = [UpdateOne({"_id": counter_id(self.collection, name)},
                         {"$inc": acc, "$set": {"updated_at": now},
                          "$setOnInsert": {"kind": "counter", "collection": self.collection, "aggregation": name}},
                         upsert=True)
               for name, acc in inc.items()]
        _retry("update the counters", lambda: self.status.bulk_write(ops, ordered=False))

    # -- helpers ------------------------------------------------------------------------
    def _result(self) -> Any:
        return self.pipeline.result

    def _counts(self, result: Any = None) -> dict:
        r = result or self._result()
        if r is None:
            return {"records_read": 0, "records_aggregated": 0, "dead_letters": 0, "flushes": self.flushes}
        return {"records_read": r.records_read, "records_aggregated": r.records_aggregated,
                "dead_letters": r.dead_letters, "flushes": self.flushes}

    def _rate(self) -> float:
        """Records per second over the last ten seconds or so."""
        now = time.monotonic()
        r = self._result()
        self.points.append((now, r.records_read if r else 0))
        while len(self.points) > 2 and now - self.points[1][0] >= 10.0:
            self.points.popleft()
        (t0, n0), (t1, n1) = self.points[0], self.points[-1]
        return round((n1 - n0) / (t1 - t0), 1) if t1 > t0 else 0.0

    def _read_lag(self) -> list | None:
        source = self.pipeline.source
        try:
            lag = source.lag() if source is not None else None
        except Exception as exc:  # a source that cannot tell must not stop the pipeline
            log.debug("dashboard: source lag unavailable: %s", exc)
            return None
        if not lag:  # nothing to tell, or no partitions assigned yet
            return None
        return [{"partition": str(p), "lag": int(n)} for p, n in sorted(lag.items())]

    def _lag_fields(self) -> dict:
        lag = self.lag
        return {"lag": lag, "lag_total": None if lag is None else sum(p["lag"] for p in lag)}

    def _beat(self) -> None:
        # The source's lag is read here, not in the writer thread: a Kafka source asks the
        # brokers for end offsets, which must not hold up a flush. And an idle source flushes
        # nothing, so the status document is refreshed here too.
        beat_at = time.monotonic()
        while not self.stopped.wait(LAG_EVERY):
            lag = self._read_lag()
            with self.lock:
                if self.stopped.is_set():
                    return
                fields = {}
                if lag != self.lag:
                    self.lag = lag
                    fields = self._lag_fields()
                now = time.monotonic()
                if now - self.last_flush_at >= HEARTBEAT and now - beat_at >= HEARTBEAT:
                    beat_at = now
                    fields.update(self._counts(), updated_at=dt.datetime.now(UTC), records_per_second=self._rate())
                if fields:
                    _retry("write the status document",
                           lambda: self.status.update_one({"_id": self.id}, {"$set": fields}), tries=1)
