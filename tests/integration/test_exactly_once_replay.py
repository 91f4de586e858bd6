"""Crashes at chosen points, in one process, against the in-memory store: the replay of an
interrupted flush and the duplicate-key race of two writers creating the same document.

The kill -9 tests find these at random; here each is set up exactly, so it always runs."""
from __future__ import annotations

import uuid

import pytest
from pymongo.errors import BulkWriteError

import streamkit_mongodb
from crashkit import diff, generator_records, stored, truth
from streamkit import Pipeline

AGGREGATIONS = [
    {"name": "per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "longest", "type": "max", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "per_type_1s", "type": "count", "group_by": ["interaction_type"], "window": 1},
]
SOURCE = {"seed": 5, "users": 50, "items": 20, "rate": 0, "max_records": 3000, "batch_size": 100}


class Crash(BaseException):
    """Stands for kill -9: nothing after it runs."""


def _pipeline(uri: str, max_records: int) -> Pipeline:
    aggs = [{**a, "window": f"{a['window']}s"} if "window" in a else a for a in AGGREGATIONS]
    return Pipeline.from_dict({
        "name": "replay", "source": {"type": "generator", **SOURCE}, "aggregations": aggs,
        "sinks": [{"type": "mongodb", "uri": uri, "database": "db", "collection": "aggregations"}],
        "flush": {"max_records": max_records, "interval": "60s"}})


def _crash_in_bulk(monkeypatch, apply: float) -> None:
    """The next bulk write applies the first ``apply`` share of its updates, then the process dies."""
    real = streamkit_mongodb.MongoSink._bulk

    def bulk(self, ops):
        real(self, ops[:int(len(ops) * apply)])
        monkeypatch.setattr(streamkit_mongodb.MongoSink, "_bulk", real)
        raise Crash()
    monkeypatch.setattr(streamkit_mongodb.MongoSink, "_bulk", bulk)


def _offsets(uri: str) -> dict:
    return streamkit_mongodb.connect(uri)["db"]["streamkit_offsets"].find_one({"pipeline": "replay"})


def test_replay_is_written_whole_even_when_flushes_get_smaller(monkeypatch):
    """An interrupted flush [1000, 2000) is replayed by a process that flushes every 300 records
    and crashes again on its first write: the replay must still end at 2000, or the end of the
    interrupted flush is forgotten and half-applied documents get records twice."""
    uri = f"mongomock://replay-{uuid.uuid4().hex}"
    _pipeline(uri, 1000).run(max_events=1000)
    _crash_in_bulk(monkeypatch, apply=0.5)  # flush [1000, 2000): half of the documents merged
    with pytest.raises(Crash):
        _pipeline(uri, 1000).run()
    assert _offsets(uri)["intent"] == {"start": 1000, "end": 2000}

    _crash_in_bulk(monkeypatch, apply=0.0)  # the replay crashes before merging anything
    with pytest.raises(Crash):
        _pipeline(uri, 300).run()
    assert _offsets(uri)["intent"] == {"start": 1000, "end": 2000}, "the replay was cut in pieces"

    result = _pipeline(uri, 300).run()
    assert result.records_read == 2000
    expected = truth(generator_records(SOURCE, 3000), AGGREGATIONS)
    problem = diff(expected, stored(streamkit_mongodb.connect(uri)["db"]["aggregations"], AGGREGATIONS))
    assert not problem, problem
    assert _offsets(uri)["position"] == 3000 and _offsets(uri)["intent"] is None


def test_stop_during_a_replay_leaves_it_for_the_next_start(monkeypatch):
    """Stopping (max events, SIGTERM) in the middle of a replay writes none of it."""
    uri = f"mongomock://replay-{uuid.uuid4().hex}"
    _crash_in_bulk(monkeypatch, apply=0.3)
    with pytest.raises(Crash):
        _pipeline(uri, 2000).run()
    assert _offsets(uri)["intent"] == {"start": 0, "end": 2000}
    _pipeline(uri, 500).run(max_events=1200)
    assert _offsets(uri)["intent"] == {"start": 0, "end": 2000}
    _pipeline(uri, 500).run()
    expected = truth(generator_records(SOURCE, 3000), AGGREGATIONS)
    problem = diff(expected, stored(streamkit_mongodb.connect(uri)["db"]["aggregations"], AGGREGATIONS))
    assert not problem, problem


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


def test_an_upsert_that_loses_a_creation_race_is_applied(monkeypatch):
    uri = f"mongomock://race-{uuid.uuid4().hex}"
    real_open = streamkit_mongodb.MongoSink.open

    def open_(self):
        real_open(self)
        self.coll = _Racing(self.coll)
    monkeypatch.setattr(streamkit_mongodb.MongoSink, "open", open_)
    p = Pipeline.from_dict({
        "name": "race", "source": {"type": "generator", **SOURCE, "max_records": 500},
        "aggregations": [{"name": "all", "type": "count"}],
        "sinks": [{"type": "mongodb", "uri": uri, "database": "db", "collection": "aggregations"}]})
    p.run()
    doc = streamkit_mongodb.connect(uri)["db"]["aggregations"].find_one({})
    assert doc["count"] == 1000 + 500, "the update that lost the race to create the document was dropped"
