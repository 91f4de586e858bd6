"""Crashes at chosen points, in one process: the replay of an interrupted flush and the
duplicate-key race of two writers creating the same document.

The kill -9 tests find these at random; here each is set up exactly, so it always runs. Each
case runs once per store (tests/stores.py): mongomock with and without the sink's fast path
(which checks fences with the sink's own code), and the real server."""
from __future__ import annotations

import random
import types

import pytest
from pymongo.errors import BulkWriteError

import streamkit_mongodb
from processes import generator_records, make_events
from streamkit import Batch, Option, Pipeline, Source, hookimpl
from streamkit.plugins import get_plugin_manager
from stores import store  # noqa: F401
from truth import as_pipeline, diff, stored, truth

AGGREGATIONS = [
    {"name": "per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "longest", "type": "max", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "shortest", "type": "min", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "duration_per_type", "type": "sum", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "per_type_1s", "type": "count", "group_by": ["interaction_type"], "window": 1},
    {"name": "sum_2s_every_1s", "type": "sum", "field": "duration_ms", "group_by": ["interaction_type"],
     "window": (2, 1)},
    {"name": "avg_5s_every_2s", "type": "avg", "field": "duration_ms", "group_by": ["item_id"], "window": (5, 2)},
    {"name": "max_1s", "type": "max", "field": "duration_ms", "window": 1},
    {"name": "users_per_item", "type": "distinct", "field": "user_id", "group_by": ["item_id"]},
    {"name": "users_1s", "type": "distinct", "field": "user_id", "window": 1, "precision": 10},
    {"name": "duration_pct_per_type", "type": "percentiles", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "items_per_type_2s_every_1s", "type": "top_k", "field": "item_id", "group_by": ["interaction_type"],
     "window": (2, 1), "k": 3},
]
SOURCE = {"seed": 5, "users": 50, "items": 20, "rate": 0, "max_records": 3000, "batch_size": 100}


class Crash(BaseException):
    """Stands for kill -9: nothing after it runs."""


def _pipeline(store, max_records: int) -> Pipeline:  # noqa: F811
    return Pipeline.from_dict({
        "name": "replay", "source": {"type": "generator", **SOURCE}, "aggregations": as_pipeline(AGGREGATIONS),
        "sinks": [store.sink()], "flush": {"max_records": max_records, "interval": "60s"}})


def _crash_in_bulk(monkeypatch, apply: float) -> None:
    """The next bulk write applies the first ``apply`` share of its updates, then the process dies."""
    real = streamkit_mongodb.MongoSink._bulk

    def bulk(self, ops):
        real(self, ops[:int(len(ops) * apply)])
        monkeypatch.setattr(streamkit_mongodb.MongoSink, "_bulk", real)
        raise Crash()
    monkeypatch.setattr(streamkit_mongodb.MongoSink, "_bulk", bulk)


def _offsets(store) -> dict:  # noqa: F811
    return store.db["streamkit_offsets"].find_one({"pipeline": "replay"})


def _exact(store) -> None:  # noqa: F811
    expected = truth(generator_records(SOURCE, 3000), AGGREGATIONS)
    problem = diff(expected, stored(store.db["aggregations"], AGGREGATIONS))
    assert not problem, problem


def test_replay_is_written_whole_even_when_flushes_get_smaller(monkeypatch, store):  # noqa: F811
    """An interrupted flush [1000, 2000) is replayed by a process that flushes every 300 records
    and crashes again on its first write: the replay must still end at 2000, or the end of the
    interrupted flush is forgotten and half-applied documents get records twice."""
    _pipeline(store, 1000).run(max_events=1000)
    _crash_in_bulk(monkeypatch, apply=0.5)  # flush [1000, 2000): half of the documents merged
    with pytest.raises(Crash):
        _pipeline(store, 1000).run()
    assert _offsets(store)["intent"] == {"start": 1000, "end": 2000}

    _crash_in_bulk(monkeypatch, apply=0.0)  # the replay crashes before merging anything
    with pytest.raises(Crash):
        _pipeline(store, 300).run()
    assert _offsets(store)["intent"] == {"start": 1000, "end": 2000}, "the replay was cut in pieces"

    result = _pipeline(store, 300).run()
    assert result.records_read == 2000
    _exact(store)
    assert _offsets(store)["position"] == 3000 and _offsets(store)["intent"] is None


def test_stop_during_a_replay_leaves_it_for_the_next_start(monkeypatch, store):  # noqa: F811
    """Stopping (max events, SIGTERM) in the middle of a replay writes none of it."""
    _crash_in_bulk(monkeypatch, apply=0.3)
    with pytest.raises(Crash):
        _pipeline(store, 2000).run()
    assert _offsets(store)["intent"] == {"start": 0, "end": 2000}
    _pipeline(store, 500).run(max_events=1200)
    assert _offsets(store)["intent"] == {"start": 0, "end": 2000}
    _pipeline(store, 500).run()
    _exact(store)


class _Racing:
    """A collection where another writer creates the document just before our upsert inserts it."""

    def __init__(self, coll) -> None:
        self.coll = coll
        self.raced = False

    def __getattr__(self, name):
        return getattr(self.coll, name)

    def bulk_write(self, ops, ordered=True):
        if not self.raced:
            self.raced = True
            first = ops[0]._filter["_id"]
            self.coll.insert_one({"_id": first, "count": 1000, "_fence": {"other%2Ftopic/0": 7}})
            ops = ops[1:]
            done = self.coll.bulk_write(ops, ordered=ordered) if ops else None
            raise BulkWriteError({"writeErrors": [{"index": 0, "code": 11000, "errmsg": "duplicate key"}],
                                  "nUpserted": done.upserted_count if done else 0, "upserted": []})
        return self.coll.bulk_write(ops, ordered=ordered)


def test_an_upsert_that_loses_a_creation_race_is_applied(monkeypatch, store):  # noqa: F811
    real_open = streamkit_mongodb.MongoSink.open

    def open_(self):
        real_open(self)
        self.coll = _Racing(self.coll)
    monkeypatch.setattr(streamkit_mongodb.MongoSink, "open", open_)
    p = Pipeline.from_dict({
        "name": "race", "source": {"type": "generator", **SOURCE, "max_records": 500},
        "aggregations": [{"name": "all", "type": "count"}],
        "sinks": [store.sink()]})
    p.run()
    doc = store.db["aggregations"].find_one({})
    assert doc["count"] == 1000 + 500, "the update that lost the race to create the document was dropped"


class Partitioned(Source):
    """Fixed records in three partitions; every poll returns a batch of each, so every flush
    holds parts of all three and most documents get deltas from several partitions at once."""

    options = {"seed": Option(int, 1, "records"), "n": Option(int, 3000, "records in all")}
    partitions = ["m/0", "m/1", "m/2"]

    def open(self, hooks):
        events = make_events(self.config["n"], random.Random(self.config["seed"]), users=40, items=12)
        self.data = {p: events[i::3] for i, p in enumerate(self.partitions)}
        resume = hooks.assigned(self.partitions) or {}
        self.pos = {p: resume.get(p, 0) for p in self.partitions}

    def poll(self, timeout):
        batches = []
        for p in self.partitions:
            first = self.pos[p]
            records = self.data[p][first:first + 100]
            if records:
                self.pos[p] = first + len(records)
                batches.append(Batch(p, records, first, first + len(records), decoded=True))
        return batches or None


@pytest.fixture
def partitioned():
    pm = get_plugin_manager()
    mod = types.ModuleType("partitioned_source")
    mod.register_sources = hookimpl(lambda register: register("partitioned", Partitioned))
    pm.register(mod, name="partitioned_source")
    try:
        yield
    finally:
        pm.unregister(name="partitioned_source")


def _partitioned(store) -> Pipeline:  # noqa: F811
    return Pipeline.from_dict({
        "name": "multi", "source": {"type": "partitioned", "seed": 3, "n": 3000},
        "aggregations": as_pipeline(AGGREGATIONS), "sinks": [store.sink()],
        "flush": {"max_records": 900, "interval": "60s"}})


def _exact_partitioned(store) -> None:  # noqa: F811
    coll = store.db["aggregations"]
    events = make_events(3000, random.Random(3), users=40, items=12)
    problem = diff(truth(events, AGGREGATIONS), stored(coll, AGGREGATIONS))
    assert not problem, problem


def test_documents_fed_by_several_partitions_in_one_flush(partitioned, monkeypatch, store):  # noqa: F811
    """Crash in the middle of merging a flush of three partitions, and again in its replay: each
    document merges each partition's part exactly once."""
    pipeline = lambda: _partitioned(store)  # noqa: E731

    real = streamkit_mongodb.MongoSink._bulk
    calls = {"n": 0}

    def bulk(self, ops):  # the second flush: a third of its documents merged, then the crash
        calls["n"] += 1
        if calls["n"] == 2:
            real(self, ops[:len(ops) // 3])
            raise Crash()
        return real(self, ops)
    monkeypatch.setattr(streamkit_mongodb.MongoSink, "_bulk", bulk)
    with pytest.raises(Crash):
        pipeline().run()
    coll = store.db["aggregations"]
    assert any(len(d.get("_fence", {})) == 3 for d in coll.find({})), "no document fed by three partitions"

    _crash_in_bulk(monkeypatch, apply=0.6)  # the replay of that flush crashes too
    with pytest.raises(Crash):
        pipeline().run()
    pipeline().run()
    _exact_partitioned(store)


def test_replayed_part_and_new_part_in_one_document_update(partitioned, monkeypatch, store):  # noqa: F811
    """A flush of three partitions is merged whole, but the crash comes while its intents are
    being finished: one partition is done, two are not. The next start replays those two while
    the third reads on, so one update carries a replayed part, already merged, next to a new
    part: only the new one may be added."""
    real = streamkit_mongodb.MongoSink._finish
    calls = {"n": 0}

    def finish(self, parts, *clocks):
        calls["n"] += 1
        if calls["n"] == 2:
            real(self, {"m/2": parts["m/2"]}, *clocks)
            raise Crash()
        return real(self, parts, *clocks)
    monkeypatch.setattr(streamkit_mongodb.MongoSink, "_finish", finish)
    with pytest.raises(Crash):
        _partitioned(store).run()
    monkeypatch.setattr(streamkit_mongodb.MongoSink, "_finish", real)
    offsets = {d["partition"]: d for d in store.db["streamkit_offsets"].find({})}
    assert offsets["m/2"]["intent"] is None and offsets["m/0"]["intent"] is not None
    _partitioned(store).run()
    _exact_partitioned(store)
