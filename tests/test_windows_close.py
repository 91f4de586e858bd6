"""Windows that close (streamkit/watermarks.py): late records, final windows and their values,
checked against an independent truth (tests/truth.py ``closing_truth``) over generated streams:
out of order, several partitions, tumbling and hopping windows, lateness 0 and larger than the
window, flushes anywhere, a restart in the middle of a window and a crash in the middle of a flush."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

import streamkit_mongodb
from streamkit import Pipeline
from stores import Store
from truth import as_pipeline, closing_truth, diff, finals, stored

import uuid


class Crash(BaseException):
    """Stands for kill -9: nothing after it runs."""


def _store() -> Store:
    uri = f"mongomock://close-{uuid.uuid4().hex}"
    return Store("fast", uri, "db", streamkit_mongodb.connect(uri))


def _aggs(size: int, hop: int, lateness: float) -> list[dict]:
    return [
        {"name": "per_key", "type": "count", "group_by": ["k"], "window": size, "lateness": lateness},
        {"name": "sum_hop", "type": "sum", "field": "v", "group_by": ["k"], "window": (size, hop),
         "lateness": lateness},
        {"name": "all_time", "type": "count", "group_by": ["k"]},
    ]


def _yaml_aggs(aggs: list[dict]) -> list[dict]:
    out = []
    for a in as_pipeline(aggs):
        a = dict(a)
        if "lateness" in a:
            a["lateness"] = f"{a['lateness']}s"
        out.append(a)
    return out


def _pipeline(store, parts, aggs, *, batch=7, max_records=50, end=True, late="drop_counted", sinks=(),
              dead_letter=None):
    raw = {p: [json.dumps(r).encode() for r in recs] for p, recs in parts.items()}
    yaml_aggs = [{**a, "late": late} if "lateness" in a else a for a in _yaml_aggs(aggs)]
    return Pipeline.from_dict({
        "name": "close", "source": {"type": "list", "partitions": raw, "batch": batch, "end": end},
        "aggregations": yaml_aggs, "sinks": [store.sink(), *sinks],
        "flush": {"max_records": max_records, "interval": "60s"}, "dead_letter": dead_letter})


records = st.builds(lambda k, v, q: {"k": k, "v": v, "timestamp": q / 4},
                    st.sampled_from(["a", "b", "c"]), st.integers(-5, 100), st.integers(0, 4 * 400))
streams = st.dictionaries(st.sampled_from(["p0", "p1", "p2"]), st.lists(records, min_size=1, max_size=60),
                          min_size=1, max_size=3)
windows = st.sampled_from([(60, 60), (60, 20), (30, 12), (10, 10)])
latenesses = st.sampled_from([0, 0.25, 5, 45, 200])

SETTINGS = dict(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check(store, parts, aggs, result, ended=True):
    expected, closed, late = closing_truth(parts, aggs, ended=ended)
    coll = store.db["aggregations"]
    assert diff(expected, stored(coll, aggs)) == ""
    assert finals(coll) == closed
    assert result_late(result) == {k: v for k, v in late.items() if isinstance(k, str)}
    return late


def result_late(results) -> dict:
    out: dict = {}
    for r in results if isinstance(results, list) else [results]:
        for k, v in r.late.items():
            out[k] = out.get(k, 0) + v
    return out


@settings(**SETTINGS)
@given(parts=streams, window=windows, lateness=latenesses, batch=st.integers(1, 20), flush=st.integers(1, 80))
@example(parts={"p0": [{"k": "a", "v": 1, "timestamp": 65}, {"k": "a", "v": 2, "timestamp": 30},
                       {"k": "a", "v": 3, "timestamp": 59.75}, {"k": "a", "v": 4, "timestamp": 60}]},
         window=(60, 60), lateness=0, batch=1, flush=1)
def test_late_records_and_final_windows_equal_the_truth(test_plugins, parts, window, lateness, batch, flush):
    store = _store()
    aggs = _aggs(*window, lateness)
    result = _pipeline(store, parts, aggs, batch=batch, max_records=flush).run()
    assert result.stopped_by == "source_finished"
    _check(store, parts, aggs, result)


@settings(**SETTINGS)
@given(parts=streams, window=windows, lateness=latenesses, batch=st.integers(1, 20))
def test_while_the_source_runs_a_window_is_final_once_every_partition_passed_it(test_plugins, parts, window,
                                                                                lateness, batch):
    store = _store()
    aggs = _aggs(*window, lateness)
    total = sum(map(len, parts.values()))
    result = _pipeline(store, parts, aggs, batch=batch, end=False).run(max_events=total)
    assert result.stopped_by == "max_events"
    _check(store, parts, aggs, result, ended=False)


@settings(**SETTINGS)
@given(parts=streams, window=windows, lateness=latenesses, batch=st.integers(1, 20), cut=st.floats(0, 1))
def test_a_restart_in_the_middle_of_a_window_decides_as_one_pass(test_plugins, parts, window, lateness, batch,
                                                                 cut):
    """The first run stops part-way (its clocks are stored with its positions); the second reads
    on from there: late records, values and final windows are those of one pass."""
    store = _store()
    aggs = _aggs(*window, lateness)
    total = sum(map(len, parts.values()))
    first = _pipeline(store, parts, aggs, batch=batch, end=False).run(max_events=int(total * cut))
    second = _pipeline(store, parts, aggs, batch=batch).run()
    _check(store, parts, aggs, [first, second])


@settings(**SETTINGS)
@given(parts=streams, window=windows, lateness=latenesses, batch=st.integers(1, 20), at=st.integers(1, 6),
       share=st.floats(0, 1))
def test_a_crash_in_the_middle_of_a_flush_changes_nothing(test_plugins, parts, window, lateness, batch, at, share):
    """The process dies in the bulk write of its ``at``-th flush, with part of its updates applied;
    the next start replays it: values, late records and final windows are those of one pass, and
    no window marked final changed afterwards."""
    store = _store()
    aggs = _aggs(*window, lateness)
    real = streamkit_mongodb.MongoSink._bulk
    calls = {"n": 0}
    before: dict = {}

    def bulk(self, ops):
        calls["n"] += 1
        if calls["n"] == at:
            real(self, ops[:int(len(ops) * share)])
            coll = store.db["aggregations"]
            before.update({d["_id"]: d for d in coll.find({"final": True})})
            raise Crash()
        return real(self, ops)
    streamkit_mongodb.MongoSink._bulk = bulk
    try:
        with pytest.raises(Crash):
            _pipeline(store, parts, aggs, batch=batch, max_records=batch * 2).run()
            raise Crash()  # fewer flushes than ``at``: a crash after the last one
    finally:
        streamkit_mongodb.MongoSink._bulk = real
    _pipeline(store, parts, aggs, batch=batch, max_records=batch * 2).run()
    expected, closed, late = closing_truth(parts, aggs)
    coll = store.db["aggregations"]
    assert diff(expected, stored(coll, aggs)) == ""
    assert finals(coll) == closed
    for _id, doc in before.items():  # final before the crash: untouched since
        now = coll.find_one({"_id": _id})
        assert {k: v for k, v in now.items() if k != "updated_at"} == \
            {k: v for k, v in doc.items() if k != "updated_at"}


@settings(**SETTINGS)
@given(parts=streams, lateness=latenesses, batch=st.integers(1, 20))
def test_late_records_become_dead_letters_with_their_bytes(test_plugins, tmp_path_factory, parts, lateness, batch):
    store = _store()
    aggs = _aggs(60, 20, lateness)[:1]
    path = tmp_path_factory.mktemp("dl") / "dead.jsonl"
    pipe = _pipeline(store, parts, aggs, batch=batch, late="dead_letter",
                     dead_letter={"type": "jsonl", "path": str(path)})
    result = pipe.run()
    _, _, late = closing_truth(parts, aggs)
    letters = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    got = {(d["partition"], d["position"]) for d in letters}
    assert got == late.get(("positions", "per_key"), set())
    for d in letters:
        assert json.loads(d["record"]) == parts[d["partition"]][d["position"]]
        assert d["reason"].startswith("late for aggregation 'per_key'")
    assert result.late == {k: v for k, v in late.items() if isinstance(k, str)}
    assert result.dead_letters == len(letters)

