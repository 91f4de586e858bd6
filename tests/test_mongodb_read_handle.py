"""The mongodb sink's public read handle: what observers (dashboard, alerts, any plugin) use."""
from __future__ import annotations

import types
import uuid

import pytest

from streamkit import ConfigError, Pipeline
from streamkit_generator import Generator
from streamkit_mongodb import Aggregates, aggregates_of, connect, document_id

AGGS = [{"name": "per_user", "type": "count", "group_by": ["user_id"]},
        {"name": "per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]}]


@pytest.fixture
def observer(throwaway_plugin):
    """A throw-away plugin keeping each flush and the sink's read handle (no use of the sink itself)."""
    seen: dict = {"flushes": [], "handle": None}

    def startup(pipeline):
        seen["handle"] = aggregates_of(pipeline, None, "observer")

    def flushed(pipeline, flush):
        seen["flushes"].append(flush)

    throwaway_plugin("streamkit_test_observer", startup=startup, flushed=flushed)
    return seen


def _config(uri: str, name: str) -> dict:
    return {"name": name, "source": {"type": "generator", "seed": 3, "users": 40, "items": 7, "rate": 0,
                       "batch_size": 50},
            "aggregations": AGGS, "sinks": [{"type": "discard"}, {"type": "mongodb", "uri": uri, "database": "d"}],
            "flush": {"max_records": 150}}


def _first_seen(n: int) -> dict:
    """Truth, from the generator's records in plain Python: the record index at which each
    document (aggregation, key) first appears."""
    g = Generator({**{k: o.default for k, o in Generator.options.items()},
                   "seed": 3, "users": 40, "items": 7, "rate": 0}, None)
    first: dict = {}
    for i, r in enumerate(g.records(0, n)):
        first.setdefault(document_id("per_user", {"user_id": r["user_id"]}, None), i)
        first.setdefault(document_id("per_item", {"item_id": r["item_id"]}, None), i)
    return first


def test_created_names_the_documents_each_flush_created_read_after_the_run(observer):
    uri = f"mongomock://handle-{uuid.uuid4().hex}"
    r = Pipeline.from_dict(_config(uri, "a")).run(max_events=1000)
    assert r.records_read == 1000
    handle = observer["handle"]
    assert isinstance(handle, Aggregates)
    assert (handle.uri, handle.database, handle.collection) == (uri, "d", "aggregations")
    flushes = observer["flushes"]
    assert 5 <= len(flushes) <= 16  # all still remembered
    # read now, from this thread, long after each flush's write: each flush created exactly the
    # documents whose first record it carried
    first = _first_seen(1000)
    ends = [sum(f.record_count for f in flushes[:i + 1]) for i in range(len(flushes))]
    for i, flush in enumerate(flushes):
        start = ends[i - 1] if i else 0
        want = {_id for _id, at in first.items() if start <= at < ends[i]}
        assert handle.created(flush) == want, f"flush {i}"
    stored = {d["_id"] for d in connect(uri).d.aggregations.find({}, {"_id": 1})}
    assert stored == set(first)

    # a second pipeline into the same documents creates none of them
    observer["flushes"].clear()
    Pipeline.from_dict(_config(uri, "b")).run(max_events=1000)
    assert observer["flushes"] and all(observer["handle"].created(f) == frozenset() for f in observer["flushes"])


def test_the_handle_of_a_sink_that_is_not_mongodb_is_refused():
    p = Pipeline.from_dict(_config("mongomock://refused", "a"))
    p.sinks = [types.SimpleNamespace(), types.SimpleNamespace()]
    with pytest.raises(ConfigError, match=r"^<dict>: observer.sink: sinks\[0\] is not a mongodb sink$"):
        aggregates_of(p, 0, "observer")
    with pytest.raises(ConfigError, match=r"^<dict>: observer: needs a mongodb sink to read from "
                                          r"\(add one under sinks\)$"):
        aggregates_of(p, None, "observer")
