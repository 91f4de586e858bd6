"""Positions, intents and epochs: where each partition resumes, kept in the offsets collection.

Each record (``_id`` ``<pipeline>|<collection>|<partition>``) holds the position after the last
flush merged into the documents, the *intent* of a flush being applied (its exact position
range, replayed with the same boundaries after a crash), the owner's *epoch* (a process whose
epoch is not current stops writing that partition) and the pipeline's *definition*.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable

from streamkit import UTC, Resume

from .client import SinkError, StoreRefused

#: offsets records of this layout belong to documents whose fences name the pipeline
LAYOUT = 2


class Positions:
    """The positions part of the mongodb sink (mixed into :class:`~.sink.MongoSink`, whose
    ``_connect`` sets ``offsets``, ``pipeline_name``, ``exact``, ``epochs`` and ``definition``)."""

    config: dict
    context: Any
    offsets: Any
    pipeline_name: str
    exact: bool
    epochs: dict[str, int]
    definition: dict | None
    _retry: Callable[..., Any]

    def _offset_id(self, partition: str) -> str:
        return f"{self.pipeline_name}|{self.config['collection']}|{partition}"

    def _own_offsets(self) -> dict:
        """A filter for this pipeline's offsets records (one per partition), on the ``_id`` index."""
        prefix = self._offset_id("")
        return {"_id": {"$gte": prefix, "$lt": prefix[:-1] + chr(ord("|") + 1)}, "pipeline": self.pipeline_name}

    def _file(self) -> str:
        file = self.context.file
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

    def positions(self, partitions: list[str]) -> dict[str, Resume]:
        """Take ownership (a new epoch) and return where to resume: a stored position, or the
        start and end of an unfinished intent that must be replayed with the same boundaries."""
        if not self.exact:
            return {}
        from pymongo import ReturnDocument
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
                out[p] = Resume(intent["start"], replay_end=intent["end"], clock=doc.get("clock"))
            elif doc.get("position") is not None:
                out[p] = Resume(doc["position"], clock=doc.get("clock"))
        return out

    def clocks(self) -> dict[str, dict]:
        """The event-time clock stored with each partition's position, for every partition of
        this pipeline (whichever process owns it); None for one claimed but never written."""
        if not self.exact:
            return {}
        docs = self._retry("read clocks", lambda: list(self.offsets.find(
            {**self._own_offsets(), "partition": {"$exists": True}}, {"partition": 1, "clock": 1})))
        return {d["partition"]: d.get("clock") for d in docs}

    def _set_intents(self, parts: dict) -> None:
        """Record each partition's range before any document changes (one round trip), each
        only where this process's epoch is still current."""
        unclaimed = [p for p in parts if p not in self.epochs]
        if unclaimed:  # partitions this process never claimed (a source without assignments)
            self.positions(unclaimed)
        from pymongo import UpdateOne
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

    def _finish(self, parts: dict, clocks: dict | None = None) -> None:
        """Each partition's new position, with its event-time clock in the same update; and the
        clocks of partitions that moved on without records (idle), each under its epoch."""
        from pymongo import UpdateOne
        now = dt.datetime.now(UTC)
        clocks = clocks or {}
        ops = []
        for p, part in parts.items():
            done: dict = {"position": part.next, "intent": None, "updated_at": now}
            if p in clocks:
                done["clock"] = clocks[p]
            ops.append(UpdateOne({"_id": self._offset_id(p), "epoch": self.epochs[p]}, {"$set": done}))
        for p, clock in clocks.items():
            if p not in parts and p in self.epochs:
                ops.append(UpdateOne({"_id": self._offset_id(p), "epoch": self.epochs[p]},
                                     {"$set": {"clock": clock, "updated_at": now}}))
        if ops:
            self.offsets.bulk_write(ops, ordered=False)
