"""The ``mongodb`` sink: one document per (aggregation, group key, window), merged with bulk upserts.

With ``delivery: exactly_once`` (the default) every document keeps, per source
partition, the end position of the last flush merged into it (its *fence*); an
update applies only where that fence is behind, and each partition's part is
its own update, so a replay after a crash or a rebalance changes nothing twice.
Before a flush is applied its exact position range is stored as an *intent* in
the offsets collection; a restart replays an unfinished intent with the same
boundaries. An owner *epoch* per partition stops a zombie from starting a flush
after its partitions moved on. ``mongomock://`` selects an in-memory store.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from typing import Any

import orjson
from pymongo import ASCENDING, DESCENDING, MongoClient, ReturnDocument, UpdateOne
from pymongo.errors import (AutoReconnect, BulkWriteError, ConnectionFailure, NetworkTimeout,
                            OperationFailure, ServerSelectionTimeoutError)

from streamkit import Duration, Option, Sink, StreamkitError, hookimpl

log = logging.getLogger("streamkit.mongodb")
UTC = dt.timezone.utc
DUPLICATE_KEY = 11000
TRANSIENT = (AutoReconnect, ConnectionFailure, NetworkTimeout, ServerSelectionTimeoutError)

_mock_clients: dict[str, Any] = {}
_mock_lock = threading.Lock()


class SinkError(StreamkitError):
    exit_code = 1


def _speed_up_mongomock(mongomock: Any) -> None:
    """Look documents up by ``_id`` instead of scanning the collection for every update.

    mongomock matches every filter against every document, so a flush of n upserts
    into n documents costs n² filter evaluations. A filter with a plain ``_id``
    equality can match only the document stored under that ``_id``; the filter is
    still evaluated on it, so results are unchanged.
    """
    from mongomock_ng import collection as mcoll, filtering

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
                return iter([doc] if filtering.filter_applies(filter, doc) else [])
            return iter([])
        return original(self, filter)

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


def fence_field(partition: str) -> str:
    """A partition name as one field name: no '.', no leading '$'."""
    return partition.replace("%", "%25").replace(".", "%2E").replace("$", "%24")


def _date(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, UTC)


class MongoSink(Sink):
    """Aggregates into MongoDB documents with bulk upserts (exactly once by default)."""

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
        #: ``_id`` s of the documents the last ``write`` created (for observers in ``flushed``)
        self.upserted: set = set()
        if c["create_indexes"]:
            self._retry("create indexes", self._create_indexes)

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

    def positions(self, partitions: list[str]) -> dict:
        """Take ownership (a new epoch) and return where to resume: a stored position, or the
        (start, end) of an unfinished intent that must be replayed with the same boundaries."""
        if not self.exact:
            return {}
        out: dict = {}
        for p in partitions:
            doc = self._retry("claim partition", lambda p=p: self.offsets.find_one_and_update(
                {"_id": self._offset_id(p)},
                {"$inc": {"epoch": 1}, "$setOnInsert": {"pipeline": self.pipeline_name, "partition": p}},
                upsert=True, return_document=ReturnDocument.AFTER))
            self.epochs[p] = doc["epoch"]
            intent = doc.get("intent")
            if intent:
                out[p] = (intent["start"], intent["end"])
            elif doc.get("position") is not None:
                out[p] = doc["position"]
        return out

    def _set_intent(self, partition: str, start: int, end: int) -> None:
        epoch = self.epochs.get(partition)
        if epoch is None:  # a partition this process never claimed (source without assignment)
            self.positions([partition])
            epoch = self.epochs[partition]
        res = self.offsets.update_one({"_id": self._offset_id(partition), "epoch": epoch},
                                      {"$set": {"intent": {"start": start, "end": end}}})
        if res.matched_count == 0:
            raise SinkError(f"{self.context.name}: partition {partition} is owned by a newer process "
                            f"(epoch > {epoch}); this process stops writing it")

    def _finish(self, partition: str, end: int) -> None:
        self.offsets.update_one({"_id": self._offset_id(partition), "epoch": self.epochs[partition]},
                                {"$set": {"position": end, "intent": None,
                                          "updated_at": dt.datetime.now(UTC)}})

    # -- writing ------------------------------------------------------------------------
    def _update(self, delta: Any, now: dt.datetime, fence: tuple[str, int] | None) -> UpdateOne:
        agg = delta.aggregator
        _id = document_id(delta.aggregation, delta.key, delta.window_start)
        merge = agg.mongo_merge(delta.partial)
        stage: dict = {
            "aggregation": {"$literal": delta.aggregation},
            "key": {"$literal": delta.key},
            "window": {"$literal": {"start": _date(delta.window_start), "end": _date(delta.window_end)}},
            **merge,
            "updated_at": {"$literal": now},
        }
        filt: dict = {"_id": _id}
        if fence is not None:
            field, end = fence
            path = f"_fence.{field}"
            # "not >= end" also matches a missing fence; unlike an $or of $lt and $exists it
            # keeps the lookup on the _id index in every server (SecantusDB scans otherwise)
            filt[path] = {"$not": {"$gte": end}}
            stage[path] = {"$literal": end}
        pipeline = [{"$set": stage}]
        fin = agg.mongo_finalize()
        if fin:
            pipeline.append({"$set": fin})
        return UpdateOne(filt, pipeline, upsert=True)

    def _bulk(self, ops: list) -> None:
        # A duplicate key on a fenced upsert means the document exists with its fence not behind:
        # already applied. But it is also what the loser gets when two writers (two partitions,
        # two processes) create the same new document at once, having merged nothing. So those
        # operations are tried once more, when the document surely exists.
        for _ in range(2):
            if not ops:
                return
            try:
                result = self.coll.bulk_write(ops, ordered=False)
                self.upserted.update(result.upserted_ids.values())
                return
            except BulkWriteError as exc:
                self.upserted.update(u["_id"] for u in exc.details.get("upserted", []))
                errors = exc.details.get("writeErrors", [])
                other = [e for e in errors if e.get("code") != DUPLICATE_KEY]
                if other:
                    raise SinkError(f"{self.context.name}: MongoDB rejected {len(other)} updates: "
                                    f"{other[0].get('errmsg')}") from None
                ops = [ops[e["index"]] for e in errors]

    def write(self, flush: Any) -> None:
        now = dt.datetime.now(UTC)
        self.upserted = set()
        if not self.exact:
            ops = [self._update(d, now, None) for d in flush.deltas()]
            self._retry("bulk write", self._bulk, ops)
            return
        for partition, part in flush.parts.items():
            self._retry("write intent", self._set_intent, partition, part.first, part.next)
        ops = []
        for partition, part in flush.parts.items():
            fence = (fence_field(partition), part.next)
            ops.extend(self._update(d, now, fence) for d in flush.partition_deltas(partition))
        self._retry("bulk write", self._bulk, ops)
        for partition, part in flush.parts.items():
            self._retry("finish intent", self._finish, partition, part.next)

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None and not self.config["uri"].startswith("mongomock://"):
            client.close()


@hookimpl
def register_sinks(register) -> None:
    register("mongodb", MongoSink)
