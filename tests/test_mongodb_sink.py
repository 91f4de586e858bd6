"""The mongodb sink on the in-memory store: the document shape, exact merges, fences, key safety."""
import datetime as dt

import pytest

from streamkit import Pipeline
from streamkit_mongodb import connect, document_id
from truth import aggregate

AGGS = [
    {"name": "per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "dur_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "min_item", "type": "min", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "max_type", "type": "max", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "sum_all", "type": "sum", "field": "duration_ms"},
    {"name": "per_type_1m", "type": "count", "group_by": ["interaction_type"], "window": 60},
]


def _yaml_aggs():
    return [{**a, "window": f"{a['window']}s"} if a.get("window") else a for a in AGGS]


def stored(coll):
    out = {}
    for d in coll.find():
        start = d["window"]["start"]
        key = tuple(sorted(d["key"].items()))
        vals = {f: d[f] for f in ("count", "sum", "avg", "min", "max") if f in d}
        if d["aggregation"] == "dur_item":
            vals = {"avg": d["avg"], "sum": d["sum"], "count": d["count"]}
        out[(d["aggregation"], key, start.timestamp() if start else None)] = vals
    return out


def assert_documents(got: dict, want: dict) -> None:
    """Exactly the truth's documents, none missing and none extra, with its values."""
    assert sorted(set(got) - set(want), key=repr) == [], "documents the truth does not have"
    assert sorted(set(want) - set(got), key=repr) == [], "documents missing"
    for k, v in want.items():
        assert got[k] == pytest.approx(v), k


def run(uri, n, **over):
    cfg = {"source": {"type": "generator", "seed": 3, "users": 40, "items": 10, "rate": 0, "time_step": 0.02,
                      "start_time": 1767225600, **over.pop("source", {})},
           "aggregations": _yaml_aggs(),
           "sinks": [{"type": "mongodb", "uri": uri, "database": "t"}],
           "flush": {"max_records": 1000}, **over}
    return Pipeline.from_dict(cfg).run(max_events=n)


def truth(n):
    from streamkit_generator import Generator
    g = Generator({**{k: o.default for k, o in Generator.options.items()},
                   "seed": 3, "users": 40, "items": 10, "rate": 0, "time_step": 0.02, "start_time": 1767225600.0}, None)
    want, _ = aggregate(g.records(0, n), AGGS)
    return want


def test_documents_equal_the_truth():
    uri = "mongomock://docs"
    run(uri, 5000)
    coll = connect(uri).t.aggregations
    assert_documents(stored(coll), truth(5000))
    doc = coll.find_one({"aggregation": "per_type_1m"})
    assert doc["window"]["end"] - doc["window"]["start"] == dt.timedelta(minutes=1)
    assert doc["_id"] == document_id("per_type_1m", doc["key"], doc["window"]["start"].timestamp())
    assert isinstance(doc["updated_at"], dt.datetime)


def test_a_second_run_resumes_from_the_stored_position():
    uri = "mongomock://resume"
    r1 = run(uri, 3000)
    r2 = run(uri, 2000)  # continues at record 3000: the generator resumes from the sink's position
    assert (r1.records_read, r2.records_read) == (3000, 2000)
    assert_documents(stored(connect(uri).t.aggregations), truth(5000))


def test_replaying_a_flush_changes_nothing():
    """A flush applied twice (a crash between the write and the commit) is fenced off."""
    from streamkit_mongodb import MongoSink
    uri = "mongomock://replay"
    p = Pipeline.from_dict({"source": {"type": "generator", "rate": 0, "users": 5},
                            "aggregations": [{"name": "c", "type": "count", "group_by": ["user_id"]}],
                            "sinks": [{"type": "mongodb", "uri": uri, "database": "t"}]})
    flushes = []
    orig = MongoSink.write

    def spy(self, flush):
        orig(self, flush)
        flushes.append((self, flush))
    MongoSink.write = spy
    try:
        p.run(max_events=500)
    finally:
        MongoSink.write = orig
    coll = connect(uri).t.aggregations
    before = {d["_id"]: d["count"] for d in coll.find()}
    sink, flush = flushes[-1]
    sink.write(flush)  # the same flush again
    assert {d["_id"]: d["count"] for d in coll.find()} == before
    assert sum(before.values()) == 500


def test_key_values_are_data_not_operators(test_plugins):
    uri = "mongomock://keys"
    recs = {"x/0": [{"k": "$where", "v": 1}, {"k": "a.b", "v": 2}, {"k": "$inc", "v": 3}, {"k": "$where", "v": 4}]}
    Pipeline.from_dict({"source": {"type": "list", "partitions": recs, "decoded": True},
                        "aggregations": [{"name": "s", "type": "sum", "field": "v", "group_by": ["k"]}],
                        "sinks": [{"type": "mongodb", "uri": uri, "database": "t"}]}).run()
    got = {d["key"]["k"]: d["sum"] for d in connect(uri).t.aggregations.find()}
    assert got == {"$where": 5, "a.b": 2, "$inc": 3}


def test_at_least_once_mode_keeps_no_fences():
    uri = "mongomock://alo"
    run(uri, 2000, delivery="at_least_once")
    db = connect(uri).t
    assert db.streamkit_offsets.count_documents({}) == 0
    assert db.aggregations.count_documents({"_fence": {"$exists": True}}) == 0
    assert_documents(stored(db.aggregations), truth(2000))



PROBE = """
from mongomock_ng import collection, filtering
from streamkit import Pipeline
from streamkit_mongodb import connect

calls = [0]
original = filtering.filter_applies
def counting(*args, **kwargs):
    calls[0] += 1
    return original(*args, **kwargs)
filtering.filter_applies = collection.filter_applies = counting

Pipeline.from_dict({
    "source": {"type": "generator", "users": 2000, "skew": 0, "rate": 0, "max_records": 8000},
    "aggregations": [{"name": "per_user", "type": "count", "group_by": ["user_id"]}],
    "sinks": [{"type": "mongodb", "uri": "mongomock://probe", "database": "d", "collection": "c"}],
    "flush": {"interval": "1h", "max_records": 4000}}).run()
docs = list(connect("mongomock://probe")["d"]["c"].find({}))
print(len(docs), sum(d["count"] for d in docs), calls[0],
      hasattr(collection.Collection._iter_documents, "__wrapped__"))
"""


def test_in_memory_store_looks_documents_up_by_id_without_patching_mongomock():
    """`mongomock://` (the default pipeline's store) stays linear in the documents a flush
    touches, and no class of mongomock's is changed for the process. In a process of its own:
    the tests' conftest opts every mongomock collection of this one into the fast lookup."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    docs, total, calls, patched = out.stdout.split()
    assert int(total) == 8000 and int(docs) > 1000
    # mongomock alone evaluates a filter per stored document per update: millions here
    assert int(calls) < 10 * int(docs), calls
    assert patched == "False"
