"""Every read the dashboard makes, each one bounded.

A request reads at most its ``limit`` of aggregate documents plus a constant:
top-N lists are sorted scans of the sink's ``(aggregation, <field> desc)``
index with a limit, windows are found on the ``(aggregation, window.start)``
index, and totals come from the counters pipelines keep at flush time
(``status.py``). Nothing loads a whole collection into Python.
"""
from __future__ import annotations

import datetime as dt
import math
import threading
import time
from typing import Any

from streamkit import UTC, iso_time as iso
from streamkit_alerts import ALERTS_COLLECTION

from .meta import AggMeta, SeedFields, seed_aggregations
from .status import STATUS_COLLECTION, baseline

MAX_LIMIT = 1000
MAX_TOP = 100
MAX_PROCESSES = 20
MAX_AGGREGATIONS = 200
SERIES_WINDOWS = 30      # windows shown in the over-time chart
SERIES_MAX_DOCS = 1000   # documents read for it at most
SERIES_MAX_KEYS = 10     # lines drawn at most
META_TTL = 30.0          # seconds a standalone dashboard trusts its aggregation list


_ANY = object()


class QueryError(ValueError):
    """A request the store cannot answer: ``status`` 400 (bad parameter) or 404 (no such thing)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def epoch(value: Any) -> float | None:
    if not isinstance(value, dt.datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _date(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, UTC)


_FIRST = dt.datetime.min.replace(tzinfo=UTC)
_LAST = dt.datetime.max.replace(tzinfo=UTC)


def _bound(ts: float) -> dt.datetime:
    """A query bound: ``_date``, but a time before year 1 or after year 9999 is the first or last one."""
    try:
        return _date(ts)
    except (ValueError, OverflowError, OSError):
        return _FIRST if ts < 0 else _LAST


def parse_window(value: str) -> dt.datetime:
    """A window start from ISO-8601 (UTC unless a zone is given) or epoch seconds."""
    try:
        return _date(float(value))
    except (ValueError, OverflowError, OSError):
        pass
    try:
        d = dt.datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise QueryError(f"window must be 'latest', an ISO-8601 window start or epoch seconds, "
                         f"got {value!r}") from None
    try:
        return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is in year 10000 in UTC
        raise QueryError(f"window must be a time from year 1 to 9999 in UTC, got {value!r}") from None


def _number(value: Any) -> Any:
    """Numbers as JSON can carry them (no NaN or infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class DashboardStore:
    """Reads one collection of aggregate documents and the status next to it.

    ``metas`` fixes the aggregations (a dashboard inside a pipeline knows them);
    without it they are read from the newest status document, else inferred.
    """

    def __init__(self, db: Any, collection: str, *, fields: SeedFields | None = None,
                 metas: list[AggMeta] | None = None) -> None:
        self.db = db
        self.collection = collection
        self.coll = db[collection]
        self.status = db[STATUS_COLLECTION]
        self.alerts = db[ALERTS_COLLECTION]
        self.fields = fields or SeedFields()
        self._fixed = metas
        self._metas: list[AggMeta] | None = None
        self._metas_at = 0.0
        self._fallback: dict[str, tuple[float, dict]] = {}
        self._lock = threading.Lock()
        self._mock = type(db).__module__.startswith("mongomock")
        self._bounds: dict[tuple, Any] = {}      # see _sorted
        self._latest: dict[str, Any] = {}        # aggregation -> newest window start seen

    def _limit(self, cursor: Any, n: int) -> Any:
        """At most ``n`` documents, in one reply (a server sends 101 first unless told)."""
        cursor = cursor.limit(n)
        return cursor if self._mock else cursor.batch_size(n)

    # -- aggregations ---------------------------------------------------------------------
    def aggregations(self) -> list[AggMeta]:
        if self._fixed is not None:
            return self._fixed
        with self._lock:
            if self._metas is None or time.monotonic() - self._metas_at > META_TTL:
                self._metas = self._discover()
                self._metas_at = time.monotonic()
            return self._metas

    def _discover(self) -> list[AggMeta]:
        newest = list(self.status.find({"kind": "process", "collection": self.collection},
                                       {"aggregations": 1}).sort("updated_at", -1).limit(1))
        if newest and newest[0].get("aggregations"):
            return [AggMeta.from_json(a) for a in newest[0]["aggregations"]]
        names = sorted(n for n in self.coll.distinct("aggregation") if isinstance(n, str))[:MAX_AGGREGATIONS]
        metas = []
        for name in names:
            doc = self.coll.find_one({"aggregation": name}, {"_fence": 0})
            if doc is not None:
                metas.append(AggMeta.from_document(doc))
        return metas

    def meta(self, name: str) -> AggMeta:
        for m in self.aggregations():
            if m.name == name:
                return m
        raise QueryError(f"no aggregation named {name!r}", 404)

    # -- counters -------------------------------------------------------------------------
    def counters(self) -> dict[str, dict]:
        docs = self._limit(self.status.find({"kind": "counter", "collection": self.collection}), MAX_AGGREGATIONS)
        return {d["aggregation"]: d for d in docs}

    def totals(self, meta: AggMeta, counters: dict[str, dict]) -> dict:
        """Distinct keys and additive totals: the counters, or (no pipeline keeps them) one
        pass in the database, remembered for a few seconds."""
        c = counters.get(meta.name)
        if c is not None:
            return {"keys": c.get("keys", 0), "count": c.get("count"), "sum": c.get("sum"), "exact": True}
        hit = self._fallback.get(meta.name)
        if hit is None or time.monotonic() - hit[0] > 10.0:
            hit = (time.monotonic(), baseline(self.coll, meta))
            self._fallback[meta.name] = hit
        t = hit[1]
        return {"keys": t.get("keys", 0), "count": t.get("count"), "sum": t.get("sum"), "exact": False}

    # -- reads ----------------------------------------------------------------------------
    def _sorted(self, meta: AggMeta, fld: str, limit: int, ascending: bool = False,
                start: dt.datetime | None = None) -> list[dict]:
        """The first ``limit`` documents by ``fld``: an index scan of ``(aggregation, fld)`` with a limit.

        All-time aggregations split the scan at the value the same page ended at last time
        (its *bound*) into consecutive parts of the full order — for a top list: values down
        to the bound, then smaller values, then null or missing ones (a sort puts those last;
        first when ascending) — and read the parts in turn until ``limit`` documents are
        found. The page is exact and never longer than ``limit``, and usually the first part
        fills it. MongoDB reads ``limit`` index keys either way; a server that sorts all a
        query matches (the test server) then reads only the bound's narrow range.
        """
        proj = {"key": 1, **{f: 1 for f in meta.fields}}
        direction = 1 if ascending else -1
        filt: dict = {"aggregation": meta.name}
        if meta.windowed:
            filt["window.start"] = start  # one window: the (aggregation, window.start) index narrows it
            return list(self._limit(self.coll.find(filt, proj).sort(fld, direction), limit))
        memo = (meta.name, fld, ascending, limit)
        bound = self._bounds.get(memo)
        if bound is None:
            parts: list = [_ANY]
        elif ascending:
            parts = [None, {"$lte": bound}, {"$gt": bound}]
        else:
            parts = [{"$gte": bound}, {"$lt": bound}, None]
        docs: list = []
        for cond in parts:
            query = filt if cond is _ANY else {**filt, fld: cond}
            docs += self._limit(self.coll.find(query, proj).sort(fld, direction), limit - len(docs))
            if len(docs) == limit:
                break
        if len(docs) == limit:
            self._remember(memo, docs[-1].get(fld))
        return docs

    def _remember(self, memo: tuple, value: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            if len(self._bounds) > 10_000:
                self._bounds.clear()
            self._bounds[memo] = value

    def _latest_start(self, meta: AggMeta, before: dt.datetime | None = None,
                      after: dt.datetime | None = None) -> dt.datetime | None:
        """The newest window start (or the one just before / after a given start), from the
        ``(aggregation, window.start)`` index; ranges are tried narrow first, as in :meth:`_sorted`."""
        step = meta.step or 60.0
        if before is not None:
            tries = [{"$lt": before, "$gte": _bound(epoch(before) - 10 * step)}, {"$lt": before}]
            direction = -1
        elif after is not None:
            tries = [{"$gt": after, "$lte": _bound(epoch(after) + 10 * step)}, {"$gt": after}]
            direction = 1
        else:
            known = self._latest.get(meta.name)  # window starts only grow
            tries = ([{"$gte": known}] if known is not None else []) + [{"$gt": _date(0)}]
            direction = -1
        for cond in tries:
            docs = list(self.coll.find({"aggregation": meta.name, "window.start": cond}, {"window": 1})
                        .sort("window.start", direction).limit(1))
            if docs:
                found = docs[0]["window"]["start"]
                if before is None and after is None:
                    self._latest[meta.name] = found
                return found
        return None

    def table(self, name: str, *, window: str | None = None, limit: int = 20, sort: str | None = None,
              order: str = "desc") -> dict:
        """One page of an aggregation: ``limit`` documents of one window, sorted by a value field."""
        meta = self.meta(name)
        sort = sort or meta.primary
        if sort not in meta.fields:
            raise QueryError(f"sort must be one of {', '.join(meta.fields)} for aggregation {name!r}, got {sort!r}")
        start = prev = nxt = None
        if not meta.windowed:
            if window not in (None, "", "all", "latest"):
                raise QueryError(f"aggregation {name!r} is all-time; window must be 'all' or left out")
        else:
            if window in (None, "", "latest"):
                start = self._latest_start(meta)
            elif window == "all":
                raise QueryError(f"aggregation {name!r} has {meta.window_label()}; "
                                 f"window must be 'latest' or a window start")
            else:
                start = parse_window(window)
            if start is not None:
                prev = self._latest_start(meta, before=start)
                nxt = self._latest_start(meta, after=start)
        docs = [] if meta.windowed and start is None else self._sorted(meta, sort, limit, order == "asc", start)
        end = None
        if start is not None and meta.window_size:
            try:
                end = _date(epoch(start) + meta.window_size)
            except (ValueError, OverflowError, OSError):  # a window that ends after year 9999
                end = None
        keys = None
        if not meta.windowed:
            keys = self.totals(meta, self.counters())["keys"]
        return {"aggregation": name, "meta": meta.to_json(),
                "window": {"start": iso(start), "end": iso(end)},
                "previous_window": iso(prev), "next_window": iso(nxt),
                "sort": sort, "order": order, "limit": limit, "keys": keys,
                "rows": [{"key": d.get("key") or {}, "values": {f: _number(d.get(f)) for f in meta.fields}}
                         for d in docs]}

    def _per_key(self, meta: AggMeta | None, fld: str, counters: dict, top: int, fewest: bool) -> dict | None:
        if meta is None:
            return None
        t = self.totals(meta, counters)
        total, distinct = t["count"] or 0, t["keys"] or 0

        def rows(docs: list[dict]) -> list[dict]:
            return [{"key": (d.get("key") or {}).get(fld), "count": d.get("count")} for d in docs]

        out = {"aggregation": meta.name, "field": fld, "total": total, "distinct": distinct,
               "average": round(total / distinct, 4) if distinct else None, "exact": t["exact"],
               "top": rows(self._sorted(meta, "count", top))}
        if fewest:
            out["fewest"] = rows(self._sorted(meta, "count", top, ascending=True))
        return out

    def _distinct(self, meta: AggMeta | None, fld: str, top: int) -> dict | None:
        """The keys with the most distinct values (distinct users per item)."""
        if meta is None:
            return None
        docs = self._sorted(meta, "distinct", top)
        return {"aggregation": meta.name, "field": fld, "of": meta.field,
                "top": [{"key": (d.get("key") or {}).get(fld), "count": d.get("distinct")} for d in docs]}

    def _quantiles(self, meta: AggMeta | None, fld: str) -> dict | None:
        """Every key's quantiles (duration per interaction type), highest primary quantile first."""
        if meta is None:
            return None
        names = [f for f in meta.fields if f not in ("count", "min", "max")]
        docs = self._sorted(meta, meta.primary, 50)
        return {"aggregation": meta.name, "field": fld, "of": meta.field, "quantiles": names,
                "primary": meta.primary,
                "rows": [{"key": (d.get("key") or {}).get(fld), "count": d.get("count"),
                          "values": {f: _number(d.get(f)) for f in names}} for d in docs]}

    def series(self, meta: AggMeta | None) -> dict | None:
        """Counts per key over the last windows of a windowed aggregation (the over-time chart)."""
        if meta is None:
            return None
        out: dict = {"aggregation": meta.name, "field": meta.group_by[0], "window": meta.window_label(),
                     "windows": [], "series": [], "truncated": False}
        latest = self._latest_start(meta)
        if latest is None:
            return out
        last = epoch(latest)
        step = meta.step
        first = last - (SERIES_WINDOWS - 1) * step if step else last
        docs = list(self._limit(self.coll.find({"aggregation": meta.name, "window.start": {"$gte": _date(first)}},
                                               {"key": 1, "window": 1, "count": 1, "final": 1})
                                          .sort("window.start", -1),
                                SERIES_MAX_DOCS))
        if not step:
            step = 1.0
        present = [epoch(d["window"]["start"]) for d in docs]
        first = max(first, min(present))
        n = int(round((last - first) / step)) + 1
        starts = [first + i * step for i in range(n)]
        index = {round(s, 3): i for i, s in enumerate(starts)}
        fld = meta.group_by[0]
        lines: dict = {}
        has, open_ = [False] * n, [False] * n  # windows with documents; with one not (yet) final
        for d, s in zip(docs, present):
            i = index.get(round(s, 3))
            if i is None:
                continue
            has[i] = True
            if d.get("final") is not True:
                open_[i] = True
            key = (d.get("key") or {}).get(fld)
            values = lines.setdefault(_hashable(key), [key, [0] * n])[1]
            values[i] += d.get("count") or 0
        ranked = sorted(lines.values(), key=lambda kv: (-sum(kv[1]), str(kv[0])))
        out["truncated"] = len(ranked) > SERIES_MAX_KEYS or len(docs) == SERIES_MAX_DOCS
        out["windows"] = [iso(_date(s)) for s in starts]
        out["series"] = [{"key": k, "values": v} for k, v in ranked[:SERIES_MAX_KEYS]]
        if any(d.get("final") is True for d in docs):
            # an aggregation whose windows close: those up to the newest closed one are final
            # (windows close in order; a window with no document in between is closed too)
            last = max((i for i in range(n) if has[i] and not open_[i]), default=-1)
            out["final"] = [i <= last for i in range(n)]
        return out

    def health(self) -> dict:
        docs = list(self.status.find({"kind": "process", "collection": self.collection}, {"aggregations": 0})
                    .sort("updated_at", -1).limit(MAX_PROCESSES))
        now = time.time()
        procs = []
        for d in docs:
            updated = epoch(d.get("updated_at")) or 0.0
            state = d.get("state") or "running"
            if state == "running" and now - updated > max(15.0, 3 * (d.get("flush_interval") or 1.0)):
                state = "stale"  # stopped without saying so (killed) or cannot reach MongoDB
            last_flush = epoch(d.get("last_flush"))
            procs.append({
                "pipeline": d.get("pipeline"), "host": d.get("host"), "pid": d.get("pid"), "state": state,
                "source": d.get("source"), "records_read": d.get("records_read", 0),
                "records_per_second": d.get("records_per_second", 0.0) if state == "running" else 0.0,
                "dead_letters": d.get("dead_letters", 0), "flushes": d.get("flushes", 0),
                "last_flush": iso(d.get("last_flush")),
                "last_flush_age": round(now - last_flush, 1) if last_flush else None,
                "lag_total": d.get("lag_total"), "lag": d.get("lag"),
                "started_at": iso(d.get("started_at")), "updated_at": iso(d.get("updated_at"))})
        live = [p for p in procs if p["state"] == "running"]
        lags = [p["lag_total"] for p in live if p["lag_total"] is not None]
        flushes = [p["last_flush"] for p in procs if p["last_flush"]]
        return {"processes": procs, "running": len(live),
                "records_per_second": round(sum(p["records_per_second"] or 0 for p in live), 1),
                "records_read": sum(p["records_read"] or 0 for p in live),
                "dead_letters": sum(p["dead_letters"] or 0 for p in live),
                "lag": sum(lags) if lags else None,
                "last_flush": max(flushes) if flushes else None}

    def recent_alerts(self, limit: int = 10) -> dict:
        docs = list(self._limit(self.alerts.find({"collection": self.collection}, {"_id": 0})
                                .sort("fired_at", -1), limit))
        total = self.alerts.count_documents({"collection": self.collection})
        return {"total": total, "recent": [_alert_json(d) for d in docs]}

    def summary(self, top: int = 10) -> dict:
        """The seed's figures, pipeline health and recent alerts."""
        metas = self.aggregations()
        seed = seed_aggregations(metas, self.fields)
        counters = self.counters()
        users = self._per_key(seed.users, self.fields.user, counters, top, fewest=False)
        items = self._per_key(seed.items, self.fields.item, counters, top, fewest=True)
        total = users["total"] if users else (items["total"] if items else None)
        return {"generated_at": iso(dt.datetime.now(UTC)), "database": self.db.name,
                "collection": self.collection,
                "total_interactions": total,
                "distinct_users": users["distinct"] if users else None,
                "average_per_user": users["average"] if users else None,
                "most_interacted_item": items["top"][0] if items and items["top"] else None,
                "fewest_interacted_item": items["fewest"][0] if items and items["fewest"] else None,
                "users": users, "items": items,
                "types_over_time": self.series(seed.types),
                "distinct_per_item": self._distinct(seed.distinct, self.fields.item, top),
                "quantiles_per_type": self._quantiles(seed.percentiles, self.fields.type),
                "missing": seed.missing,
                "aggregations": [m.name for m in metas],
                "health": self.health(),
                "alerts": self.recent_alerts(10)}

    def aggregation_list(self) -> dict:
        counters = self.counters()
        out = []
        for m in self.aggregations():
            c = counters.get(m.name) or {}
            out.append({**m.to_json(), "keys": c.get("keys"),
                        "totals": {f: c[f] for f in ("count", "sum") if f in c}})
        return {"aggregations": out}

    def ping(self) -> None:
        self.db.command("ping")


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def _alert_json(d: dict) -> dict:
    w = d.get("window") or {}
    return {"rule": d.get("rule"), "aggregation": d.get("aggregation"), "key": d.get("key"),
            "window": {"start": iso(w.get("start")), "end": iso(w.get("end"))},
            "field": d.get("field"), "value": _number(d.get("value")), "op": d.get("op"),
            "threshold": d.get("threshold"), "message": d.get("message"), "fired_at": iso(d.get("fired_at"))}
