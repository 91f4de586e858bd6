"""distinct, percentiles and top_k: accuracy against exact truths on a million values, merges in
the store equal to one pass over every record (1, 2 and 4 partitions, many flushes), bounded
size, and their options checked before anything runs.

The truths come from tests/truth.py (nothing of streamkit): exact counts and sorted values, and
the exact stored state of each sketch computed from the README's definitions."""
from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from collections import Counter

import bson
import orjson
import pytest

import truth
from streamkit import MERGE_KINDS, Pipeline, tag_key
from streamkit_aggregators.distinct import Distinct
from streamkit_aggregators.percentiles import Percentiles
from streamkit_aggregators.top_k import TopK
from stores import store  # noqa: F401

MILLION = 1_000_000


def _one_pass(agg, values: list, batch: int = 10_000):
    """The partial of ``values`` added batch by batch, as the engine adds a partition's records."""
    table: dict = {}
    for i in range(0, len(values), batch):
        chunk = values[i:i + batch]
        agg.add_batch(table, ["k"] * len(chunk), chunk)
    return table["k"]


def _contract_store(agg, partials: list) -> dict:
    """What a store knowing only the contract holds after merging ``partials`` in this order."""
    doc: dict = {}
    for p in partials:
        for f, v in agg.stored(p).items():
            doc[f] = MERGE_KINDS[agg.merges[f]](doc.get(f), v)
            if f in agg.bounds:
                doc[f] = agg.bounds[f].apply(doc[f])
    for f, e in agg.derived.items():
        doc[f] = e.evaluate(doc)
    return doc


# -- hashes: the same everywhere ----------------------------------------------------------------

GOLDEN = [("u1", 0x1dd19f8acc8cb844), ("", 0xe64984c3aacf6ede), ("ü", 0x835334e24651221), (1, 0xae2a1effba11cf0a),
          (-5, 0xe59bbe77af8e92b5), (1.5, 0x2c2ce41e30aaeff9), (True, 0x992e9a7e321efcda), (False, 0x937ba9e9d7c38717)]


def test_value_hashes_are_fixed_numbers_whatever_the_process():
    """BLAKE2b of the value's type and text: the numbers below in every process and Python version
    (a salted hash() would change with PYTHONHASHSEED)."""
    from streamkit import stable_hash
    assert [(v, stable_hash(tag_key(v))) for v, _ in GOLDEN] == GOLDEN
    code = ("from streamkit import stable_hash, tag_key; "
            "print([stable_hash(tag_key(v)) for v in ['u1', '', 'ü', 1, -5, 1.5, True, False]])")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        assert out.strip() == str([h for _, h in GOLDEN])


# -- accuracy on a million values ---------------------------------------------------------------

def test_distinct_is_within_2_percent_on_a_million_distinct_values():
    values = [f"user-{i}" for i in range(MILLION)] + [f"user-{i}" for i in range(0, MILLION, 7)]
    random.Random(1).shuffle(values)
    agg = Distinct({})
    est = agg.result(_one_pass(agg, values))["distinct"]
    exact = truth.exact(values, {"type": "distinct"})["distinct"]
    assert exact == MILLION
    assert abs(est - exact) / exact < 0.02, (est, exact)


@pytest.mark.parametrize("precision", [10, 14, 16])
def test_distinct_small_counts_are_exact_or_off_by_one_and_mid_range_within_3_sigma(precision):
    agg = Distinct({"precision": precision})
    sigma = 1.04 / math.sqrt(2 ** precision)
    for n in (0, 1, 2, 5, 10, 30, 100, 1000, 10_000, 100_000):
        values = [f"v{precision}-{n}-{i}" for i in range(n)]
        est = agg.result(_one_pass(agg, values))["distinct"] if n else 0
        if n <= 10:
            assert est == n, (n, est)
        elif n <= 100:
            assert abs(est - n) <= 1, (n, est)
        else:
            assert abs(est - n) <= 3 * sigma * n, (n, est)


def test_distinct_counts_values_with_their_json_type():
    agg = Distinct({})
    values = [tag_key(v) for v in ["1", 1, 1.0, True, "true", 0, False, -0.0, 0.0]]
    assert agg.result(_one_pass(agg, values))["distinct"] == 8  # -0.0 is 0.0; 1, 1.0, true and "1" differ


def _mixture(n: int, seed: int) -> list:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = i % 10
        if r < 4:
            out.append(int(rng.expovariate(1 / 300)) + 1)        # durations in ms
        elif r < 7:
            out.append(rng.lognormvariate(0, 3))                  # twenty orders of magnitude
        elif r < 8:
            out.append(-rng.expovariate(1 / 50))                 # negative values
        elif r < 9:
            out.append(0)
        else:
            out.append(rng.uniform(1e-6, 1e9))
    return out


@pytest.mark.parametrize("accuracy", [0.01, 0.001])
def test_every_quantile_is_within_the_relative_accuracy_on_a_million_values(accuracy):
    values = _mixture(MILLION, 7)
    qs = [0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1]
    agg = Percentiles({"quantiles": qs, "relative_accuracy": accuracy, "buckets": 32768})
    got = agg.result(_one_pass(agg, values))
    want = truth.exact(values, {"type": "percentiles", "quantiles": qs})
    assert set(want) <= set(got)
    for name, x in want.items():
        assert abs(got[name] - x) <= accuracy * abs(x) * (1 + 1e-9), (name, got[name], x)
    assert got["count"] == MILLION and got["min"] == min(values) and got["max"] == max(values)
    assert got["p0"] == min(values) and got["p100"] == max(values)  # clamped to the exact extremes


def test_a_span_keeps_the_top_buckets_and_folds_the_rest_into_the_lowest():
    values = [10.0 ** e for e in range(-300, 301)] * 3
    agg = Percentiles({"buckets": 16, "quantiles": [0.5, 0.999]})
    stored = agg.stored(_one_pass(agg, values, batch=100))
    assert len(stored["positive"]["counts"]) == 16
    assert sum(stored["positive"]["counts"]) == len(values)
    got = agg.result(_one_pass(agg, values, batch=100))
    assert got["p99_9"] == pytest.approx(1e300, rel=0.01)  # the top of the range keeps its accuracy


def _zipf(n: int, universe: int, s: float, seed: int) -> list:
    rng = random.Random(seed)
    weights = [1 / (i + 1) ** s for i in range(universe)]
    return [f"item-{i}" for i in rng.choices(range(universe), weights, k=n)]


@pytest.mark.parametrize("shape", ["zipf", "uniform"])
def test_top_k_is_exact_within_capacity_and_within_its_bound_beyond(shape):
    few = _zipf(200_000, 80, 1.1, 3) if shape == "zipf" else [f"v{i % 80}" for i in range(200_000)]
    agg = TopK({"k": 10, "capacity": 100})
    got = agg.result(_one_pass(agg, few))
    assert got["top"] == truth.exact(few, {"type": "top_k", "k": 10})["top"]

    many = _zipf(MILLION, 100_000, 1.2, 4) if shape == "zipf" else [f"v{i % 50_000}" for i in range(MILLION)]
    random.Random(5).shuffle(many)
    partial = _one_pass(agg, many)
    got = agg.result(partial)
    exact = Counter(many)
    bound = len(many) / (agg.capacity + 1)
    assert got["count"] == len(many) and len(partial[0]) <= agg.capacity
    for e in got["top"]:
        assert exact[e["value"]] - bound <= e["count"] <= exact[e["value"]], e
    kth = got["top"][-1]["count"]
    for value, c in exact.items():  # anything clearly above the k-th reported count is reported
        if c > kth + bound:
            assert value in {e["value"] for e in got["top"]}, (value, c)
    if shape == "zipf":
        assert [e["value"] for e in got["top"]] == [v for v, _ in exact.most_common(10)]


# -- merges: any split, any number of flushes, the same stored sketch ----------------------------

def test_partials_merged_in_any_split_give_the_one_pass_sketch():
    rng = random.Random(11)
    values = _mixture(20_000, 12)
    users = [tag_key(rng.choice([f"u{rng.randrange(5000)}", rng.randrange(300), rng.random() < 0.5]))
             for _ in range(20_000)]
    for agg, vals in ((Distinct({}), users), (Percentiles({"buckets": 64}), values)):
        whole = _contract_store(agg, [_one_pass(agg, vals)])
        for parts in (2, 4, 9):
            cuts = sorted(rng.sample(range(1, len(vals)), parts - 1))
            pieces = [vals[a:b] for a, b in zip([0, *cuts], [*cuts, len(vals)])]
            partials = [_one_pass(agg, p, batch=rng.randrange(50, 2000)) for p in pieces]
            rng.shuffle(partials)
            assert _contract_store(agg, partials) == whole, (type(agg).__name__, parts)


AGGREGATIONS = [
    {"name": "users_per_item", "type": "distinct", "field": "user_id", "group_by": ["item_id"]},
    {"name": "users", "type": "distinct", "field": "user_id", "precision": 8},
    {"name": "duration_pct", "type": "percentiles", "field": "duration_ms", "group_by": ["type"],
     "quantiles": [0.5, 0.95, 0.99]},
    {"name": "duration_pct_2s_every_1s", "type": "percentiles", "field": "duration_ms", "window": (2, 1),
     "buckets": 32},
    {"name": "items_per_type", "type": "top_k", "field": "item_id", "group_by": ["type"], "k": 3,
     "capacity": 40},
]


def _records(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        user = rng.choice([f"u{rng.randrange(400)}", rng.randrange(50), float(rng.randrange(5)) + 0.5, True])
        out.append({"user_id": user, "item_id": rng.choice([f"i{rng.randrange(30)}", 7, False]),
                    "type": rng.choice(["view", "click", "buy"]), "timestamp": 1_700_000_000 + i * 0.002,
                    "duration_ms": rng.choice([int(rng.expovariate(1 / 300)), -rng.random() * 10,
                                               rng.lognormvariate(0, 4), 0])})
    return out


@pytest.mark.parametrize("partitions", [1, 2, 4])
def test_the_store_holds_the_one_pass_sketch_whatever_the_partitions_and_flushes(store, test_plugins,  # noqa: F811
                                                                                 partitions):
    records = _records(3000, 21)
    split: dict = {f"p{i}": [] for i in range(partitions)}
    rng = random.Random(partitions)
    for r in records:
        split[f"p{rng.randrange(partitions)}"].append(orjson.dumps(r))
    p = Pipeline.from_dict({
        "name": f"sketch{partitions}", "source": {"type": "list", "partitions": split, "batch": 70},
        "aggregations": truth.as_pipeline(AGGREGATIONS), "sinks": [store.sink()],
        "flush": {"max_records": 400, "interval": "60s"}})
    result = p.run()
    assert result.records_aggregated == 3000 and result.flushes >= 5
    coll = store.db["aggregations"]
    expected = truth.truth(records, AGGREGATIONS)
    problem = truth.diff(expected, truth.stored(coll, AGGREGATIONS))
    assert not problem, problem
    aggs = {a.name: a.aggregator for a in p.aggregations}
    spec = {a["name"]: a for a in AGGREGATIONS}
    groups: dict = {}
    for r in records:
        for a in AGGREGATIONS:
            groups.setdefault((a["name"], tuple(r[f] for f in a.get("group_by", []))), []).append(r[a["field"]])
    for doc in coll.find({}):
        agg = aggs[doc["aggregation"]]
        for f, e in agg.derived.items():  # the store's estimates are Python's, from the stored sketch
            assert doc[f] == e.evaluate(doc), (doc["aggregation"], f, doc[f], e.evaluate(doc))
        a = spec[doc["aggregation"]]
        if doc["window"]["start"] is None:
            exact = truth.exact(groups[(a["name"], tuple(doc["key"][f] for f in a.get("group_by", [])))], a)
            for f, x in exact.items():
                if a["type"] == "percentiles":
                    assert abs(doc[f] - x) <= 0.01 * abs(x) * (1 + 1e-9), (doc["aggregation"], f, doc[f], x)
                elif a["type"] == "distinct":
                    sigma = 1.04 / math.sqrt(2 ** a.get("precision", 14))
                    assert abs(doc[f] - x) <= max(2, 3 * sigma * x), (doc["aggregation"], f, doc[f], x)
                else:
                    assert doc[f] == x, (doc["aggregation"], f)


# -- size: bounded by the options ---------------------------------------------------------------

def _document_bytes(agg, partial) -> int:
    fields = agg.stored(partial)
    doc = {"_id": "f" * 32, "aggregation": "a" * 20, "key": {"item_id": "i" * 20}, "window": {"start": None, "end": None},
           "_fence": {f"pipeline|topic/{i}": 2 ** 40 for i in range(8)}, **fields,
           **{f: e.evaluate(fields) for f, e in agg.derived.items()}}
    if "registers" in fields:
        doc.update(_registers_n=2 ** 14, _registers_s=2 ** 60)
    return len(bson.encode(doc))


def test_documents_at_the_defaults_stay_far_below_16_mb():
    distinct = Distinct({})
    full = {i: 30 for i in range(2 ** 14)}
    assert _document_bytes(distinct, full) < 260_000
    pct = Percentiles({})
    wide = [{i: 2 ** 40 for i in range(5000)}, {i: 2 ** 40 for i in range(5000)}, 10, 10, -1e300, 1e300]
    assert len(pct.stored(wide)["positive"]["counts"]) == 2048
    assert _document_bytes(pct, wide) < 80_000
    top = TopK({})
    partial = [Counter({"x" * 1000 + str(i): 2 ** 40 + i for i in range(100)}), 2 ** 50]
    assert _document_bytes(top, partial) < 125_000


# -- options ------------------------------------------------------------------------------------

@pytest.mark.parametrize("agg, message", [
    ({"type": "distinct", "field": "u", "precision": 3}, "aggregations[0].precision: expected at least 4, got 3"),
    ({"type": "distinct", "field": "u", "precision": 17}, "aggregations[0].precision: expected at most 16, got 17"),
    ({"type": "distinct"}, "aggregations[0].field: missing required option"),
    ({"type": "percentiles", "field": "d", "quantiles": [0.5, 1.5]},
     "aggregations[0].quantiles: expected quantiles between 0 and 1, got 1.5"),
    ({"type": "percentiles", "field": "d", "quantiles": []}, "aggregations[0].quantiles: expected at least one quantile"),
    ({"type": "percentiles", "field": "d", "quantiles": [0.5, 0.5]},
     "aggregations[0].quantiles: expected different quantiles"),
    ({"type": "percentiles", "field": "d", "relative_accuracy": 0}, "aggregations[0].relative_accuracy: expected at least"),
    ({"type": "percentiles", "field": "d", "buckets": 8}, "aggregations[0].buckets: expected at least 16, got 8"),
    ({"type": "top_k", "field": "i", "k": 20, "capacity": 10}, "aggregations[0]: capacity (10) must be at least k (20)"),
    ({"type": "top_k", "field": "i", "k": 0}, "aggregations[0].k: expected at least 1, got 0"),
])
def test_bad_sketch_options_are_one_line_naming_the_key(agg, message):
    from streamkit import ConfigError
    with pytest.raises(ConfigError) as err:
        Pipeline.from_dict({"source": {"type": "generator"}, "aggregations": [{"name": "a", **agg}],
                            "sinks": [{"type": "discard"}]})
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_a_value_that_cannot_be_counted_is_a_dead_letter(test_plugins):
    records = [orjson.dumps(r) for r in ({"u": "a"}, {"u": [1]}, {"u": {"x": 1}}, {"u": None}, {"u": "b" * 2000})]
    records += [b'{"u": 1180591620717411303424}', b'{"u": 1.5}']
    p = Pipeline.from_dict({"source": {"type": "list", "partitions": {"p": records}},
                            "aggregations": [{"name": "d", "type": "distinct", "field": "u"},
                                             {"name": "t", "type": "top_k", "field": "u"}],
                            "sinks": [{"type": "capture"}]})
    result = p.run()
    assert (result.records_aggregated, result.dead_letters) == (2, 5)
    assert test_plugins[0].results(p.aggregations)[("d", (), None)] == {"distinct": 2}


def test_record_sinks_write_each_flushs_estimates(tmp_path):
    out = tmp_path / "out.jsonl"
    p = Pipeline.from_dict({
        "source": {"type": "generator", "rate": 0, "users": 50, "items": 5, "max_records": 2000},
        "aggregations": [{"name": "d", "type": "distinct", "field": "user_id"},
                         {"name": "p", "type": "percentiles", "field": "duration_ms", "quantiles": [0.5, 0.999]},
                         {"name": "t", "type": "top_k", "field": "item_id", "k": 2}],
        "sinks": [{"type": "jsonl", "path": str(out)}], "flush": {"max_records": 1000}, "delivery": "at_least_once"})
    p.run()
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    by = {(x["flush"], x["aggregation"]): x for x in lines}
    assert {k[1] for k in by} == {"d", "p", "t"} and {k[0] for k in by} == {1, 2}
    assert 40 <= by[(1, "d")]["distinct"] <= 50
    assert set(by[(1, "p")]) >= {"p50", "p99_9", "count", "min", "max"} and by[(1, "p")]["count"] == 1000
    top = by[(2, "t")]["top"]
    assert len(top) == 2 and top[0]["count"] >= top[1]["count"] and sum(e["count"] for e in top) <= 1000


def test_registers_this_sink_stored_are_left_out_of_later_updates_only_once_acknowledged():
    from streamkit_mongodb.updates import Merged, merge_fields
    agg = Distinct({})
    partial = _one_pass(agg, [f"u{i}" for i in range(300)])
    merged = Merged()
    paths = lambda fields: {f for f in fields if f.startswith("registers.")}  # noqa: E731
    first = merge_fields(agg, partial, merged, "doc")
    assert len(paths(first)) == len(partial)
    # not acknowledged (the write failed, or is being retried): everything is sent again
    assert paths(merge_fields(agg, partial, merged, "doc")) == paths(first)
    merged.written()
    assert paths(merge_fields(agg, partial, merged, "doc")) == set()
    assert len(paths(merge_fields(agg, partial, merged, "other document"))) == len(partial)
    higher = {i: r + 1 for i, r in list(partial.items())[:5]}
    assert paths(merge_fields(agg, higher, merged, "doc")) == {f"registers.{i}" for i in higher}
    merged.begin()  # a new flush forgets what an unacknowledged one noted
    merged.written()
    assert len(paths(merge_fields(agg, higher, merged, "doc"))) == 5


# -- the mongodb translation of the merge kinds, against their Python meaning --------------------

def _histograms(draw_width):
    from hypothesis import strategies as st
    hist = st.builds(lambda o, c: {"offset": o, "counts": c}, st.integers(-40, 40),
                     st.lists(st.integers(0, 5), min_size=1, max_size=12))
    return st.lists(hist, min_size=1, max_size=6)


def _apply_in_mongo(coll, kind_fields: list, finish: list, fallback: bool) -> dict:
    """Each element of ``kind_fields`` is one flush's ``$set`` expressions; with ``fallback`` each is
    wrapped as the sink's per-partition ``$cond`` stage does (here always behind)."""
    from pymongo import UpdateOne
    coll.delete_many({})
    for fields in kind_fields:
        stage = ({f: {"$cond": [{"$lt": [{"$ifNull": ["$_fence.p", -1]}, 10 ** 9]}, e, "$" + f]} for f, e in fields.items()}
                 if fallback else fields)
        coll.bulk_write([UpdateOne({"_id": 1}, [{"$set": stage}, *finish], upsert=True)])
    doc = coll.find_one({"_id": 1})
    doc.pop("_id")
    return doc


@pytest.fixture(params=["mongomock", pytest.param("server", marks=pytest.mark.integration)])
def coll(request):
    """A collection on mongomock, or on the real server (``-m integration``)."""
    if request.param == "mongomock":
        import mongomock_ng
        yield mongomock_ng.MongoClient().db.c
        return
    from pymongo import MongoClient
    client = MongoClient(request.getfixturevalue("mongo_uri"), serverSelectionTimeoutMS=10000)
    name = f"sketch_{random.randrange(10 ** 9)}"
    yield client[name]["c"]
    client.drop_database(name)
    client.close()


@pytest.mark.parametrize("fallback", [False, True])
def test_aligned_histograms_merge_in_the_store_as_in_python(coll, fallback):
    """Offsets apart, overlapping, inside one another, beyond the span: the translated expression
    gives what ``add_aligned`` and ``Span`` give in Python."""
    from hypothesis import given, settings, strategies as st
    from streamkit import Span
    from streamkit_mongodb import sketches

    @settings(max_examples=60, deadline=None)
    @given(hists=_histograms(None), width=st.integers(1, 20))
    def check(hists, width):
        span = Span(width)
        want = None
        for h in hists:
            h = span.apply(h)
            want = span.apply(MERGE_KINDS["add_aligned"](want, h))
        got = _apply_in_mongo(coll, [sketches.add_aligned("h", span.apply(h), span) for h in hists], [], fallback)
        assert got["h"] == want, (hists, width)
    check()


def test_frequent_items_and_registers_merge_in_the_store_as_in_python(coll):
    from hypothesis import given, settings, strategies as st
    from streamkit import Frequent
    from streamkit_mongodb import sketches
    items = st.dictionaries(st.sampled_from("abcdefgh"), st.integers(1, 9), min_size=1, max_size=8)

    @settings(max_examples=60, deadline=None)
    @given(flushes=st.lists(items, min_size=1, max_size=5), capacity=st.integers(1, 6))
    def check(flushes, capacity):
        bound = Frequent(capacity)
        want = None
        parts = []
        for f in flushes:
            value = bound.apply({k: {"value": k, "count": c} for k, c in f.items()})
            want = bound.apply(MERGE_KINDS["count_by_key"](want, value))
            parts.append(sketches.count_by_key("items", value, bound))
        got = _apply_in_mongo(coll, parts, [{"$set": {"items": sketches.frequent("items", bound)}}], False)
        assert got["items"] == want, (flushes, capacity)
    check()

    @settings(max_examples=60, deadline=None)
    @given(flushes=st.lists(st.dictionaries(st.sampled_from([str(i) for i in range(10)]), st.integers(1, 45),
                                            min_size=1), min_size=1, max_size=5))
    def registers(flushes):
        from streamkit.estimates import hll_terms
        want = None
        for f in flushes:
            want = MERGE_KINDS["max_by_key"](want, f)
        got = _apply_in_mongo(coll, [sketches.max_by_key("r", f, None) for f in flushes], [], False)
        assert got["r"] == want and (got["_r_n"], got["_r_s"]) == hll_terms(want.values()), flushes
    registers()
