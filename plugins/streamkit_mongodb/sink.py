"""The ``mongodb`` sink's write path: one pipeline-form upsert per document per flush, each
fenced per source partition, and starting over (``streamkit reset``)."""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from streamkit import UTC, ConfigError, Duration, Option, Sink, iso_time

from .client import DUPLICATE_KEY, SinkError, StoreRefused, connect, is_mock, release, retry, transient
from .closed import ClosedWindows
from .mongomock_fast import fast_collection
from .ids import document_id, fence_field, fence_pipeline
from .positions import Positions
from .reading import Aggregates
from .updates import KINDS, Merged, finish_stages, merge_fields, unsupported

if TYPE_CHECKING:  # pymongo and bson are imported where they are used: `streamkit validate` needs neither
    from pymongo import UpdateOne

_WAY_OUT = ("nothing of this flush was acknowledged: fix the cause (the server's validation rules, "
            "indexes or limits) and start again, and the flush is replayed exactly; or start over "
            "with: streamkit reset <pipeline file>")


def _describe(op: Any) -> str:
    """Which document an update of this sink writes: aggregation, key, window and _id."""
    try:
        head = op._doc[0]["$set"]
        window = head["window"]["$literal"]
        start, end = iso_time(window["start"]), iso_time(window["end"])
        span = "all time" if start is None else f"{start}..{end}"
        key = repr(head["key"]["$literal"])
        key = key if len(key) <= 200 else key[:200] + "..."
        return (f"the document of aggregation {head['aggregation']['$literal']!r}, key {key}, "
                f"window {span} (_id {op._filter.get('_id')})")
    except (AttributeError, LookupError, TypeError):
        return "a document"


def _date(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, UTC)


class MongoSink(ClosedWindows, Positions, Sink):
    """Aggregates into MongoDB documents with bulk upserts (exactly once by default)."""

    exactly_once = True
    stores_windows = True

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

    def __init__(self, config: dict, context: Any) -> None:
        super().__init__(config, context)
        #: the public read handle for observers: where the aggregates live, what a flush created
        self.aggregates = Aggregates(self)

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
                                  f"cannot do (it can: {', '.join(KINDS)})", file=self.context.file,
                                  key=f"aggregations[{i}].type")

    def _connect(self) -> None:
        c = self.config
        kwargs = {} if is_mock(c["uri"]) else {
            "serverSelectionTimeoutMS": int(c["connect_timeout"] * 1000),
            "connectTimeoutMS": int(c["connect_timeout"] * 1000)}
        self.client = connect(c["uri"], **kwargs)
        self.db = self.client[c["database"]]
        self.coll = self.db[c["collection"]]
        if is_mock(c["uri"]):  # mongomock scans every document for every update otherwise
            self.coll = fast_collection(self.coll)
        self.offsets = self.db[c["offsets_collection"]]
        pipeline = self.context.pipeline
        self.pipeline_name = pipeline.name if pipeline is not None else "pipeline"
        self.exact = self.context.delivery == "exactly_once"
        self.epochs: dict[str, int] = {}
        self.definition: dict | None = None
        self._created: set = set()  # of the flush being written; see Aggregates.created
        self._merged = Merged()  # registers already stored, left out of later updates

    def _create_indexes(self) -> None:
        from pymongo import ASCENDING, DESCENDING
        self.coll.create_index([("aggregation", ASCENDING), ("window.start", DESCENDING)])
        primaries = {"count"}
        pipeline = self.context.pipeline
        if pipeline is not None:
            primaries |= {a.aggregator.primary for a in pipeline.aggregations if a.aggregator.primary}
        for p in sorted(primaries):
            self.coll.create_index([("aggregation", ASCENDING), (p, DESCENDING)])
        self._create_window_indexes()

    def _retry(self, what: str, fn: Any, *args: Any) -> Any:
        return retry(what, lambda: fn(*args), name=self.context.name, limit=self.config["retry_for"],
                     backoff_max=self.config["retry_backoff_max"], stopping=lambda: self.context.stopping)

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
        stage = {**self._head(delta, now), **merge_fields(agg, partial, self._merged, _id)}
        filt: dict = {"_id": _id}
        for _, fence in parts:
            if fence is not None:
                field, end = fence
                path = f"_fence.{field}"
                # "not >= end" also matches a missing fence; unlike an $or of $lt and $exists it
                # keeps the lookup on the _id index in every server (SecantusDB scans otherwise)
                filt[path] = {"$not": {"$gte": end}}
                stage[path] = {"$literal": end}
        pipeline = [{"$set": stage}, *finish_stages(agg)]
        from pymongo import UpdateOne
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
            merge = merge_fields(agg, delta.partial, self._merged, _id)
            stage = {f: {"$cond": [behind, expr, "$" + f]} for f, expr in merge.items()}
            stage[path] = {"$cond": [behind, {"$literal": end}, "$" + path]}
            pipeline.append({"$set": stage})
        pipeline.extend(finish_stages(agg))
        from pymongo import UpdateOne
        return UpdateOne({"_id": _id}, pipeline, upsert=True)

    def _bulk(self, ops: list) -> list[int]:
        """Write ``ops`` unordered; the indexes of those that failed with a duplicate key.

        Any other rejection is not transient: retrying or replaying cannot change it, so it
        stops the pipeline with one line naming the document (:meth:`_rejected`)."""
        if not ops:
            return []
        from bson.errors import BSONError
        from pymongo.errors import BulkWriteError
        try:
            result = self.coll.bulk_write(ops, ordered=False)
            self._created.update(result.upserted_ids.values())
            return []
        except BulkWriteError as exc:
            self._created.update(u["_id"] for u in exc.details.get("upserted", []))
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
        import bson
        from bson.errors import BSONError
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
        self._created = set()
        self.aggregates._written(flush.seq, self._created)
        self._merged.begin()
        if not self.exact:
            ops = [self._update(document_id(d.aggregation, d.key, d.window_start), [(d, None)], now)
                   for d in flush.deltas()]
            again = self._retry("bulk write", self._bulk, ops)
            # the loser of two concurrent creations of a document: it exists now
            self._retry("bulk write", self._bulk, [ops[i] for i in again])
            self._merged.written()
            return
        if flush.parts:
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
        self._merged.written()
        self._retry("finish intents", self._finish, flush.parts, flush.clocks)

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
        except transient() as exc:
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
        release(getattr(self, "client", None), self.config["uri"])


