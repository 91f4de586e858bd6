"""The store-neutral aggregator contract: ``merges`` and ``derived`` say everything a store needs.

A store that knows only the declared merge kinds and formulas (here: a dict merged with
``streamkit.MERGE_KINDS`` and ``Expr.evaluate``, as an in-memory store would) ends with the
same fields as the truth computed from all values at once, however the values were split
into flushes. The mongodb sink's translation gives the update expressions it always stored.
"""
from __future__ import annotations

import os
import statistics
import sys

import pytest
from hypothesis import example, given, strategies as st

from streamkit import MERGE_KINDS, Aggregator, ConfigError, Pipeline

import streamkit_aggregators as builtins
from streamkit_mongodb import updates


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _stddev_module():
    sys.path.insert(0, f"{ROOT}/examples/custom_plugin")
    try:
        import streamkit_stddev
    finally:
        sys.path.pop(0)
    return streamkit_stddev


def _truth(kind: str, values: list[int], sample: bool = False) -> dict:
    """Plain Python over every value at once."""
    n, s = len(values), sum(values)
    if kind == "count":
        return {"count": n}
    if kind == "sum":
        return {"sum": s}
    if kind == "avg":
        return {"avg": s / n, "sum": s, "count": n}
    if kind in ("min", "max"):
        return {kind: (min if kind == "min" else max)(values)}
    sq = sum(v * v for v in values)
    d = n - 1 if sample else n
    spread = None if d <= 0 else (statistics.stdev(values) if sample else statistics.pstdev(values))
    return {"stddev": spread, "count": n, "sum": s, "sumsq": sq}


def _store(agg: Aggregator, flushes: list[list[int]]) -> dict:
    """What a store holding the contract alone keeps after merging every flush's partial."""
    doc: dict = {}
    for values in flushes:
        table = agg.new_table()
        agg.add_batch(table, ["k"] * len(values), values)
        for f, v in agg.stored(table["k"]).items():
            doc[f] = MERGE_KINDS[agg.merges[f]](doc.get(f), v)
        for f, e in agg.derived.items():
            doc[f] = e.evaluate(doc)
    return doc


flushes = st.lists(st.lists(st.integers(-10 ** 6, 10 ** 6), min_size=1, max_size=20), min_size=1, max_size=6)


@pytest.mark.parametrize("kind", ["count", "sum", "avg", "min", "max"])
@given(flushes=flushes)
@example(flushes=[[5], [-3, 7]])
def test_a_store_knowing_only_the_contract_keeps_the_builtin_fields_exactly(kind, flushes):
    cls = {"count": builtins.Count, "sum": builtins.Sum, "avg": builtins.Avg,
           "min": builtins.Min, "max": builtins.Max}[kind]
    agg = cls({})
    doc = _store(agg, flushes)
    assert doc == _truth(kind, [v for f in flushes for v in f])
    assert set(doc) == set(agg.fields)


@pytest.mark.parametrize("sample", [False, True])
@given(flushes=flushes)
@example(flushes=[[4]])
@example(flushes=[[4], [4]])
def test_the_example_plugin_needs_nothing_but_the_contract(sample, flushes):
    agg = _stddev_module().StdDev({"sample": sample})
    doc = _store(agg, flushes)
    want = _truth("stddev", [v for f in flushes for v in f], sample)
    assert {k: doc[k] for k in ("count", "sum", "sumsq")} == {k: want[k] for k in ("count", "sum", "sumsq")}
    if want["stddev"] is None:
        assert doc["stddev"] is None
    else:
        assert doc["stddev"] == pytest.approx(want["stddev"], rel=1e-9, abs=1e-6)
    assert set(doc) == set(agg.fields)


def test_the_mongodb_sink_stores_the_expressions_it_always_did():
    avg = builtins.Avg({})
    assert updates.derived_fields(avg) == {
        "avg": {"$cond": [{"$gt": ["$count", 0]}, {"$divide": ["$sum", "$count"]}, None]}}
    assert updates.merge_fields(avg, [2.5, 2]) == {
        "sum": {"$add": [{"$ifNull": ["$sum", 0]}, {"$literal": 2.5}]},
        "count": {"$add": [{"$ifNull": ["$count", 0]}, {"$literal": 2}]}}
    assert updates.merge_fields(builtins.Max({}), 7) == {"max": {"$max": [{"$ifNull": ["$max", {"$literal": 7}]},
                                                                          {"$literal": 7}]}}
    assert updates.merge_fields(builtins.Sum({}), 2 ** 64) == {
        "sum": {"$add": [{"$ifNull": ["$sum", 0]}, {"$literal": float(2 ** 64)}]}}
    assert updates.derived_fields(builtins.Count({})) is None
    stddev = _stddev_module().StdDev
    for sample, d in ((False, "$count"), (True, {"$subtract": ["$count", 1]})):
        var = {"$divide": [{"$max": [{"$subtract": ["$sumsq", {"$divide": [{"$multiply": ["$sum", "$sum"]},
                                                                          "$count"]}]}, 0]}, d]}
        assert updates.derived_fields(stddev({"sample": sample})) == {
            "stddev": {"$cond": [{"$gt": [d, 0]}, {"$sqrt": var}, None]}}


class _Registers(Aggregator):
    """A kind the mongodb sink does not know (yet)."""

    fields = ("registers",)
    merges = {"registers": "max_each"}


def test_a_merge_kind_the_store_cannot_do_is_refused_naming_the_aggregation(throwaway_plugin):
    throwaway_plugin("streamkit_test_registers", register_aggregators=lambda register: register("registers", _Registers))
    spec = {"source": {"type": "generator", "rate": 0},
            "aggregations": [{"name": "c", "type": "count"}, {"name": "r", "type": "registers", "field": "user_id"}],
            "sinks": [{"type": "mongodb", "uri": "mongomock://registers"}]}
    pipeline = Pipeline.from_dict(spec)
    with pytest.raises(ConfigError, match=r"^<dict>: aggregations\[1\]\.type: type 'registers' merges its field "
                                          r"'registers' by 'max_each', which the mongodb sink cannot do "
                                          r"\(it can: add, min, max, max_by_key, add_aligned, count_by_key\)$"):
        pipeline.run(max_events=10)
