"""The ``mongodb`` sink: one document per (aggregation, group key, window), merged with bulk upserts.

With ``delivery: exactly_once`` (the default) every document keeps, per pipeline and
source partition, the end position of the last flush merged into it (its *fence*,
``_fence.<pipeline>|<partition>``); a partition's part of a flush is merged only where
that fence is behind, so a replay after a crash or a rebalance changes nothing twice,
and pipelines of other names sharing the collection each count exactly.
Before a flush is applied its exact position range is stored as an *intent* in
the offsets collection; a restart replays an unfinished intent with the same
boundaries. An owner *epoch* per partition stops a zombie from starting a flush
after its partitions moved on. Each offsets record also keeps the pipeline's
*definition* (what its aggregations mean), compared on every start.
``mongomock://`` selects an in-memory store.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from typing import Any

import orjson
import bson
from bson.errors import BSONError
from pymongo import ASCENDING, DESCENDING, MongoClient, ReturnDocument, UpdateOne
from pymongo.errors import (AutoReconnect, BulkWriteError, ConnectionFailure, NetworkTimeout,
                            ServerSelectionTimeoutError)

from streamkit import ConfigError, Duration, Option, Sink, StreamkitError, hookimpl

from .updates import KINDS, derived_fields, merge_fields, unsupported

log = logging.getLogger("streamkit.mongodb")
UTC = dt.timezone.utc
DUPLICATE_KEY = 11000
#: offsets records of this layout belong to documents whose fences name the pipeline
LAYOUT = 2
TRANSIENT = (AutoReconnect, ConnectionFailure, NetworkTimeout, ServerSelectionTimeoutError)

_mock_clients: dict[str, Any] = {}
_mock_lock = threading.Lock()


class SinkError(StreamkitError):
    exit_code = 1


class StoreRefused(StreamkitError):
    """What is stored cannot be used (or reset) as asked: the user decides what to do."""


def _speed_up_mongomock(mongomock: Any) -> None:
    """Look documents up by ``_id`` instead of scanning the collection for every update.

    mongomock matches every filter against every document, so a flush of n upserts
    into n documents costs n² filter evaluations. A filter with a plain ``_id``
    equality can match only the document stored under that ``_id``; the filter is
    still evaluated on it, so results are unchanged. The sink's own fence conditions
    (``_fence.<p>: {$not: {$gte: end}}``) are checked directly rather than through
    mongomock's general filter code, which would double the cost of a flush.
    """
    from mongomock_ng import collection as mcoll, filtering

    def applies(filter: dict, doc: dict) -> bool:  # noqa: A002
        fences = None
        for k, v in filter.items():
            if k == "_id":
                continue
            if not (k.startswith("_fence.") and type(v) is dict and len(v) == 1 and "$not" in v):
                return filtering.filter_applies(filter, doc)
            cond = v["$not"]
            if not (type(cond) is dict and len(cond) == 1 and "$gte" in cond):
                return filtering.filter_applies(filter, doc)
            if fences is None:
                fences = doc.get("_fence")
                fences = fences if isinstance(fences, dict) else {}
            have = fences.get(k[7:])
            if type(have) in (int, float) and have >= cond["$gte"]:
                return False
        return True

    cls = mcoll.Collection
    if getattr(cls, "_streamkit_fast_id", False):
        return
    original = cls._iter_documents

    def _iter_documents(self, filter):  # noqa: A002 - mongomock's signature
        _id = filter.get("_id") if isinstance(filter, dict) else None
        if isinstance(_id, (str, int)) and not isinstance(_id, bool):
            store = self._store
            if _id in store:
                doc = store[_id]
                return iter([doc] if applies(filter, doc) else [])
            return iter([])
        return original(self, filter)

    # tests put mongomock's own lookup back, to check the fence conditions with its matcher
    _iter_documents.__wrapped__ = original  # type: ignore[attr-defined]
    cls._iter_documents = _iter_documents
    cls._streamkit_fast_id = True


def connect(uri: str, **kwargs: Any) -> Any:
    """A pymongo client for ``uri``; ``mongomock://`` gives one in-memory store per URI and process."""
    if uri.startswith("mongomock://"):
        with _mock_lock:
            if uri not in _mock_clients:
                try:
                    import mongomock_ng as mongomock
                except ImportError:  # pragma: no cover - the original package, if that is what is installed
                    import mongomock  # type: ignore[no-redef]
                _speed_up_mongomock(mongomock)
                _mock_clients[uri] = mongomock.MongoClient(tz_aware=True)
            return _mock_clients[uri]
    return MongoClient(uri, tz_aware=True, **kwargs)


def document_id(aggregation: str, key: dict, window_start: float | None) -> str:
    """Deterministic ``_id`` from aggregation, group key and window (stable across processes)."""
    raw = orjson.dumps([aggregation, sorted(key.items()), window_start], default=str)
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def _escape(name: str) -> str:
    return name.replace("%", "%25").replace(".", "%2E").replace("$", "%24").replace("|", "%7C")


def _unescape(name: str) -> str:
    return name.replace("%7C", "|").replace("%24", "$").replace("%2E", ".").replace("%25", "%")


def fence_field(pipeline: str, partition: str) -> str:
    """A pipeline's partition as one field name of ``_fence``: ``<pipeline>|<partition>``, each part
    escaped (no '.', no '$', no '|'), so pipelines sharing a collection keep separate fences."""
    return f"{_escape(pipeline)}|{_escape(partition)}"


def fence_pipeline(field: str) -> str | None:
    """The pipeline a fence field belongs to; None for a field of the unscoped (older) layout."""
    owner, sep, _ = field.partition("|")
    return _unescape(owner) if sep else None


_WAY_OUT = ("nothing of this flush was acknowledged: fix the cause (the server's validation rules, "
            "indexes or limits) and start again, and the flush is replayed exactly; or start over "
            "with: streamkit reset <pipeline file>")


def _describe(op: Any) -> str:
    """Which document an update of this sink writes: aggregation, key, window and _id."""
    try:
        head = op._doc[0]["$set"]
        window = head["window"]["$literal"]
        start, end = (w.isoformat().replace("+00:00", "Z") if w is not None else None
                      for w in (window["start"], window["end"]))
        span = "all time" if start is None else f"{start}..{end}"
        key = repr(head["key"]["$literal"])
        key = key if len(key) <= 200 else key[:200] + "..."
        return (f"the document of aggregation {head['aggregation']['$literal']!r}, key {key}, "
                f"window {span} (_id {op._filter.get('_id')})")
    except (AttributeError, LookupError, TypeError):
        return "a document"


def _date(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, UTC)


class MongoSink(Sink):
    """Aggregates into MongoDB documents with bulk upserts (exactly once by default)."""

    exactly_once = True

    options = {
        "uri": Option(str, "mongodb://127.0.0.1:27017", "MongoDB URI; mongomock:// for an in-memory store"),
        "database": Option(str, "interaction_db", "database name"),
        "collection": Option(str, "aggregations", "collection of aggregate documents"),
        "offsets_collection": Option(str, "streamkit_offsets", "collection of positions and intents"),
        "connect_timeout": Option(Duration, 10.0, "server selection timeout per attempt"),
        "retry_backoff_max": Option(Duration, 5.0, "longest wait between retries while the server is down"),
        "retry_for": Option(Duration, None, "give up after retrying this long (default: keep retrying)"),
        "create_indexes": Option(bool, True, "create the indexes the dashboard and readers use"),
    }

    def open(self) -> None:
        self._check_merges()
        self._connect()
        if self.config["create_indexes"]:
            self._retry("create indexes", self._create_indexes)

    def _check_merges(self) -> None:
        pipeline = self.context.pipeline
        for i, a in enumerate(pipeline.aggregations if pipeline is not None else []):
            for f, kind in unsupported(a.aggregator).items():
                raise ConfigError(f"type {a.type!r} merges its field {f!r} by {kind!r}, which the mongodb sink "
                                  f"cannot do (it can: {', '.join(KINDS)})", file=pipeline.spec.file,
                                  key=f"aggregations[{i}].type")

    def _connect(self) -> None:
        c = self.config
        kwargs = {} if c["uri"].startswith("mongomock://") else {
            "serverSelectionTimeoutMS": int(c["connect_timeout"] * 1000),
            "connectTimeoutMS": int(c["connect_timeout"] * 1000)}
        self.client = connect(c["uri"], **kwargs)
        self.db = self.client[c["database"]]
        self.coll = self.db[c["collection"]]
        self.offsets = self.db[c["offsets_collection"]]
        pipeline = self.context.pipeline
        self.pipeline_name = pipeline.name if pipeline is not None else "pipeline"
        self.exact = pipeline is None or pipeline.spec.delivery == "exactly_once"
        self.epochs: dict[str, int] = {}
        self.definition: dict | None = None
        #: ``_id`` s of the documents the last ``write`` created (for observers in ``flushed``)
        self.upserted: set = set()

    def _create_indexes(self) -> None:
        self.coll.create_index([("aggregation", ASCENDING), ("window.start", DESCENDING)])
        primaries = {"count"}
        pipeline = self.context.pipeline
        if pipeline is not None:
            primaries |= {a.aggregator.primary for a in pipeline.aggregations if a.aggregator.primary}
        for p in sorted(primaries):
            self.coll.create_index([("aggregation", ASCENDING), (p, DESCENDING)])

    # -- retries ------------------------------------------------------------------------
    def _retry(self, what: str, fn: Any, *args: Any) -> Any:
        delay, started, warned = 0.1, time.monotonic(), False
        limit = self.config["retry_for"]
        while True:
            try:
                result = fn(*args)
                if warned:
                    log.warning("MongoDB is back; %s succeeded", what)
                return result
            except TRANSIENT as exc:
                waited = time.monotonic() - started
                if limit is not None and waited >= limit:
                    raise SinkError(f"{self.context.name}: MongoDB unreachable for {waited:.0f}s during "
                                    f"{what}: {exc}") from None
                if self.context.stopping and waited > 10:
                    raise SinkError(f"{self.context.name}: stopping while MongoDB is unreachable; "
                                    f"positions not acknowledged, nothing lost") from None
                if not warned:
                    log.warning("MongoDB unreachable during %s (%s); retrying", what, type(exc).__name__)
                    warned = True
                time.sleep(delay)
                delay = min(delay * 2, self.config["retry_backoff_max"])

    # -- positions, intents, epochs -----------------------------------------------------
    def _offset_id(self, partition: str) -> str:
        return f"{self.pipeline_name}|{self.config['collection']}|{partition}"

    def _own_offsets(self) -> dict:
        """A filter for this pipeline's offsets records (one per partition), on the ``_id`` index."""
        prefix = self._offset_id("")
        return {"_id": {"$gte": prefix, "$lt": prefix[:-1] + chr(ord("|") + 1)}, "pipeline": self.pipeline_name}

    def _file(self) -> str:
        pipeline = self.context.pipeline
        file = pipeline.spec.file if pipeline is not None else None
        return file if file and not file.startswith("<") else "FILE"

    def keep_definition(self, definition: dict) -> dict | None:
        """The definition stored with this pipeline's positions (one that differs from
        ``definition`` if any does); ``definition`` is stored with every partition claimed later.
        Positions stored before fences were kept per pipeline are refused: the documents' fences
        cannot tell this pipeline's merges from another's, so a replay could count twice."""
        if not self.exact:
            return None
        self.definition = definition
        docs = self._retry("read positions", lambda: list(self.offsets.find(
            self._own_offsets(), {"definition": 1, "layout": 1, "resetting": 1})))
        if any(d.get("resetting") for d in docs):
            raise StoreRefused(f"{self.context.name}: a reset of pipeline {self.pipeline_name!r} was interrupted; "
                               f"run `streamkit reset {self._file()}` again to complete it")
        if any(d.get("layout") != LAYOUT for d in docs):
            where = f"{self.config['database']}.{self.config['offsets_collection']}"
            raise StoreRefused(f"{self.context.name}: the positions of pipeline {self.pipeline_name!r} in {where} "
                               f"were stored by an earlier streamkit whose fences do not name the pipeline; "
                               f"to start over run `streamkit reset {self._file()}`")
        stored = [d["definition"] for d in docs if d.get("definition") is not None]
        for d in stored:
            if d != definition:
                return d
        return stored[0] if stored else None

    def positions(self, partitions: list[str]) -> dict:
        """Take ownership (a new epoch) and return where to resume: a stored position, or the
        (start, end) of an unfinished intent that must be replayed with the same boundaries."""
        if not self.exact:
            return {}
        out: dict = {}
        for p in partitions:
            insert = {"pipeline": self.pipeline_name, "partition": p, "collection": self.config["collection"],
                      "layout": LAYOUT}
            if self.definition is not None:
                insert["definition"] = self.definition
            doc = self._retry("claim partition", lambda p=p: self.offsets.find_one_and_update(
                {"_id": self._offset_id(p)}, {"$inc": {"epoch": 1}, "$setOnInsert": insert},
                upsert=True, return_document=ReturnDocument.AFTER))
            self.epochs[p] = doc["epoch"]
            intent = doc.get("intent")
            if intent:
                out[p] = (intent["start"], intent["end"])
            elif doc.get("position") is not None:
                out[p] = doc["position"]
        return out

    def _set_intents(self, parts: dict) -> None:
        """Record each partition's range before any document changes (one round trip), each
        only where this process's epoch is still current."""
        unclaimed = [p for p in parts if p not in self.epochs]
        if unclaimed:  # partitions this process never claimed (a source without assignments)
            self.positions(unclaimed)
        ops = [UpdateOne({"_id": self._offset_id(p), "epoch": self.epochs[p]},
                         {"$set": {"intent": {"start": part.first, "end": part.next}}})
               for p, part in parts.items()]
        if self.offsets.bulk_write(ops, ordered=False).matched_count == len(ops):
            return
        ids = [self._offset_id(p) for p in parts]
        stored = {d["_id"]: d.get("epoch") for d in self.offsets.find({"_id": {"$in": ids}})}
        for p in parts:
            if stored.get(self._offset_id(p)) != self.epochs[p]:
                raise SinkError(f"{self.context.name}: partition {p} is owned by a newer process "
                                f"(epoch > {self.epochs[p]}); this process stops writing it")

    def _finish(self, parts: dict) -> None:
        now = dt.datetime.now(UTC)
        self.offsets.bulk_write([
            UpdateOne({"_id": self._offset_id(p), "epoch": self.epochs[p]},
                      {"$set": {"position": part.next, "intent": None, "updated_at": now}})
            for p, part in parts.items()], ordered=False)

    # -- writing ------------------------------------------------------------------------
    def _head(self, delta: Any, now: dt.datetime) -> dict:
        return {"aggregation": {"$literal": delta.aggregation},
                "key": {"$literal": delta.key},
                "window": {"$literal": {"start": _date(delta.window_start), "end": _date(delta.window_end)}},
                "updated_at": {"$literal": now}}

    def _update(self, _id: str, parts: list, now: dt.datetime) -> UpdateOne:
        """One update merging every part of ``parts`` ((delta, fence) per source partition; fence
        None: unfenced) into one document, matched only if every part's fence is behind.

        That holds for every document in the normal course; where it does not (a replay, a
        replayed partition next to new ones, two writers creating the document at once), the
        upsert fails with a duplicate key and :meth:`_update_each` takes over."""
        delta = parts[0][0]
        agg = delta.aggregator
        partial = delta.partial
        for d, _ in parts[1:]:
            partial = agg.merge(partial, d.partial)
        stage = {**self._head(delta, now), **merge_fields(agg, partial)}
        filt: dict = {"_id": _id}
        for _, fence in parts:
            if fence is not None:
                field, end = fence
                path = f"_fence.{field}"
                # "not >= end" also matches a missing fence; unlike an $or of $lt and $exists it
                # keeps the lookup on the _id index in every server (SecantusDB scans otherwise)
                filt[path] = {"$not": {"$gte": end}}
                stage[path] = {"$literal": end}
        pipeline = [{"$set": stage}]
        fin = derived_fields(agg)
        if fin:
            pipeline.append({"$set": fin})
        return UpdateOne(filt, pipeline, upsert=True)

    def _update_each(self, _id: str, parts: list, now: dt.datetime) -> UpdateOne:
        """The same merge, one pipeline stage per part, each adding its delta only where its own
        partition's fence is behind: right whatever mix of fences the document has."""
        delta = parts[0][0]
        agg = delta.aggregator
        pipeline = [{"$set": self._head(delta, now)}]
        for delta, (field, end) in parts:
            path = f"_fence.{field}"
            behind = {"$lt": [{"$ifNull": ["$" + path, -1]}, end]}
            merge = merge_fields(agg, delta.partial)
            stage = {f: {"$cond": [behind, expr, "$" + f]} for f, expr in merge.items()}
            stage[path] = {"$cond": [behind, {"$literal": end}, "$" + path]}
            pipeline.append({"$set": stage})
        fin = derived_fields(agg)
        if fin:
            pipeline.append({"$set": fin})
        return UpdateOne({"_id": _id}, pipeline, upsert=True)

    def _bulk(self, ops: list) -> list[int]:
        """Write ``ops`` unordered; the indexes of those that failed with a duplicate key.

        Any other rejection is not transient: retrying or replaying cannot change it, so it
        stops the pipeline with one line naming the document (:meth:`_rejected`)."""
        if not ops:
            return []
        try:
            result = self.coll.bulk_write(ops, ordered=False)
            self.upserted.update(result.upserted_ids.values())
            return []
        except BulkWriteError as exc:
            self.upserted.update(u["_id"] for u in exc.details.get("upserted", []))
            errors = exc.details.get("writeErrors", [])
            other = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            if other:
                raise self._rejected(ops, other) from None
            return [e["index"] for e in errors]
        except (OverflowError, BSONError, UnicodeError) as exc:  # refused before it was sent
            raise self._unencodable(ops, exc) from None

    def _rejected(self, ops: list, errors: list[dict]) -> SinkError:
        first = errors[0]
        more = f" (and {len(errors) - 1} more documents)" if len(errors) > 1 else ""
        why = f"{first.get('errmsg')} (code {first.get('code')})"
        return SinkError(f"{self.context.name}: MongoDB rejected {_describe(ops[first['index']])}: {why}"
                         f"{more}; {_WAY_OUT}")

    def _unencodable(self, ops: list, exc: Exception) -> SinkError:
        """The first document pymongo cannot encode, found one update at a time (this path only)."""
        culprit = None
        for op in ops:
            try:
                bson.encode({"q": op._filter, "u": op._doc})
            except (OverflowError, BSONError, UnicodeError):
                culprit = op
                break
        what = _describe(culprit) if culprit is not None else f"one of {len(ops)} documents"
        return SinkError(f"{self.context.name}: cannot store {what}: {type(exc).__name__}: {exc}; {_WAY_OUT}")

    def write(self, flush: Any) -> None:
        now = dt.datetime.now(UTC)
        self.upserted = set()
        if not self.exact:
            ops = [self._update(document_id(d.aggregation, d.key, d.window_start), [(d, None)], now)
                   for d in flush.deltas()]
            again = self._retry("bulk write", self._bulk, ops)
            # the loser of two concurrent creations of a document: it exists now
            self._retry("bulk write", self._bulk, [ops[i] for i in again])
            return
        self._retry("write intents", self._set_intents, flush.parts)
        docs: dict[str, list] = {}
        for partition, part in flush.parts.items():
            fence = (fence_field(self.pipeline_name, partition), part.next)
            for d in flush.partition_deltas(partition):
                docs.setdefault(document_id(d.aggregation, d.key, d.window_start), []).append((d, fence))
        ids = list(docs)
        again = self._retry("bulk write", self._bulk, [self._update(_id, docs[_id], now) for _id in ids])
        if again:
            # filtered on _id alone, these upserts match the (now existing) document: no duplicate key
            slow = [self._update_each(ids[i], docs[ids[i]], now) for i in again]
            self._retry("bulk write", self._bulk, slow)
        self._retry("finish intents", self._finish, flush.parts)

    # -- starting over ------------------------------------------------------------------
    def reset(self, *, dry_run: bool = False, force: bool = False) -> dict[str, int]:
        """Delete this pipeline's documents, positions and intents.

        This pipeline's documents are those with one of its fences, and those without any
        pipeline's fence whose aggregation is one of its own (written with ``at_least_once``, or
        by an earlier streamkit). A document that also holds another pipeline's fence holds that
        pipeline's counts too, which cannot be subtracted: without ``force`` nothing is deleted
        and the other pipelines are named."""
        self._connect()
        try:  # one attempt: a command run by hand should not wait for a server that is down
            return self._reset(dry_run, force)
        except TRANSIENT as exc:
            raise SinkError(f"{self.context.name}: MongoDB unreachable at {self.config['uri']}: {exc}; "
                            f"nothing was removed") from None

    def _reset(self, dry_run: bool, force: bool) -> dict[str, int]:
        offsets = list(self.offsets.find(self._own_offsets(), {"intent": 1, "definition": 1}))
        names = {a.name for a in self.context.pipeline.aggregations} if self.context.pipeline is not None else set()
        for d in offsets:
            for a in (d.get("definition") or {}).get("aggregations") or []:
                names.add(a.get("name"))
        mine, shared, others = [], 0, set()
        for doc in self.coll.find({}, {"aggregation": 1, "_fence": 1}):
            fences = doc.get("_fence")
            owners = {fence_pipeline(f) for f in fences} if isinstance(fences, dict) else set()
            owners.discard(None)
            if self.pipeline_name in owners:
                mine.append(doc["_id"])
                owners.discard(self.pipeline_name)
                if owners:
                    shared += 1
                    others |= owners
            elif not owners and doc.get("aggregation") in names:
                mine.append(doc["_id"])
        where = f"{self.config['database']}.{self.config['collection']}"
        if shared and not force:
            raise StoreRefused(
                f"{self.context.name}: {shared:,} documents of pipeline {self.pipeline_name!r} in {where} also "
                f"hold the counts of pipeline {', '.join(repr(o) for o in sorted(others))}, which cannot be taken "
                f"apart; nothing was removed. To delete them anyway, with those counts, add --force "
                f"(then reset {'that pipeline' if len(others) == 1 else 'those pipelines'} too)")
        out = {f"documents in {where}": len(mine), "positions": len(offsets),
               "unfinished intents": sum(1 for d in offsets if d.get("intent"))}
        if shared:
            out["of them shared with " + ", ".join(sorted(others))] = shared
        if dry_run:
            return out
        # Interrupted between here and the end, a start refuses and a second reset completes it.
        self.offsets.update_many(self._own_offsets(), {"$set": {"resetting": True}})
        for i in range(0, len(mine), 1000):
            self.coll.delete_many({"_id": {"$in": mine[i:i + 1000]}})
        self.offsets.delete_many(self._own_offsets())
        return out

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None and not self.config["uri"].startswith("mongomock://"):
            client.close()


@hookimpl
def register_sinks(register) -> None:
    register("mongodb", MongoSink)
