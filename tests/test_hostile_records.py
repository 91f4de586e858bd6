"""Hostile records: whatever a sink cannot store is a dead letter, and everything else is counted
exactly once, whatever the batch and flush boundaries (issue 8, sections 2, 3 and 6).

The property test generates streams of good records mixed with every hostile class, runs them
through the engine into the mongodb sink (mongomock here; the real server in
tests/integration/test_hostile_records_server.py) and compares the stored documents and the dead
letters with ``truth.hostile_truth``, which decides from the raw bytes on its own.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import types
import uuid
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from streamkit import DeadLetterDestination, Pipeline, StreamkitError, hookimpl
from streamkit.plugins import get_plugin_manager
from truth import END_TIME, MIN_TIME, hostile_truth

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
LETTERS: list = []


class CaptureDeadLetters(DeadLetterDestination):
    def write(self, letters):
        LETTERS.extend(letters)


@pytest.fixture
def capture_dead_letters(test_plugins):
    mod = types.ModuleType("streamkit_hostile_dl")

    @hookimpl
    def register_dead_letters(register):
        register("capture", CaptureDeadLetters)

    mod.register_dead_letters = register_dead_letters
    pm = get_plugin_manager()
    pm.register(mod, name="streamkit_hostile_dl")
    LETTERS.clear()
    yield LETTERS
    pm.unregister(name="streamkit_hostile_dl")
    LETTERS.clear()


# -- what the streams are made of ------------------------------------------------------------

CANDIDATES = [
    {"name": "count_k", "type": "count", "group_by": ["k"]},
    {"name": "sum_v_1m", "type": "sum", "field": "v", "group_by": ["k"], "window": 60},
    {"name": "avg_v_hop", "type": "avg", "field": "v", "group_by": ["k"], "window": (120, 60)},
    {"name": "min_v", "type": "min", "field": "v", "group_by": ["k"]},
    {"name": "max_v_1m", "type": "max", "field": "v", "window": 60},
    {"name": "sum_n_by_n", "type": "sum", "field": "n", "group_by": ["n"]},
    {"name": "count_kn", "type": "count", "group_by": ["k", "n"]},
    {"name": "sum_v", "type": "sum", "field": "v"},
]
INT64_EDGES = [2 ** 63 - 1, -(2 ** 63), 2 ** 62, -(2 ** 62), 2 ** 53 + 1]
BEYOND_INT64 = [2 ** 63, -(2 ** 63) - 1, 18446744073709551615]
BIG_KEYS = ["x" * 1025, "é" * 513, "x" * 1024, "€" * 341, "y" * 20]
ODD_KEYS = ["$where", "a.b", "$", ".", "ü", "日本", "\x00", "", " ", "_id", "1", "true", "1.0"]
COLLIDING = [1, "1", True, 1.0, 0, "0", False, 0.0, -0.0, 2, 2.0]

keys = st.one_of(
    st.sampled_from(COLLIDING), st.sampled_from(ODD_KEYS), st.sampled_from(BIG_KEYS),
    st.sampled_from(INT64_EDGES + BEYOND_INT64), st.integers(-3, 3), st.text(max_size=4),
    st.sampled_from([None, [1], {"a": 1}, 5e-324, 1e300]),
)
numbers = st.one_of(
    st.integers(-1000, 1000), st.sampled_from(INT64_EDGES), st.sampled_from(BEYOND_INT64),
    st.integers(-2 ** 40, 2 ** 40).map(lambda i: i / 4), st.sampled_from([5e-324, -1e-300, 0.0, -0.0]),
    st.sampled_from([True, False, "5", None, [], {}]),
)
both = st.sampled_from([1, 1.0, True, "1", 2, 0.5, False, 0, -3])


def _iso(t: float, zone: str) -> str:
    d = dt.datetime.fromtimestamp(t, dt.timezone.utc)
    if zone == "Z":
        return d.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    if zone == "none":
        return d.replace(tzinfo=None).isoformat()
    return d.astimezone(dt.timezone(dt.timedelta(hours=5, minutes=30))).isoformat()


normal_times = st.one_of(
    st.integers(T0 - 600, T0 + 600),
    st.integers(4 * (T0 - 600), 4 * (T0 + 600)).map(lambda i: i / 4),
    st.tuples(st.integers(T0 - 600, T0 + 600), st.sampled_from(["Z", "none", "+05:30"])).map(
        lambda tz: _iso(tz[0], tz[1])),
)
edge_times = st.sampled_from([
    "9999-12-31T23:59:30Z", "9999-12-31T23:57:00Z", "9999-12-31T23:59:59-01:00", "10000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z", "0001-01-01T00:02:00Z", "0001-01-01T00:01:59+00:00", "0000-12-31T00:00:00Z",
    1e20, -1e20, 10 ** 20, -(10 ** 20), END_TIME - 120, END_TIME - 121, END_TIME - 120.25, MIN_TIME + 120,
    MIN_TIME + 119, "yesterday", True, None, 2 ** 70,
])
times = st.one_of(normal_times, normal_times, edge_times)


@st.composite
def records(draw):
    rec: dict = {}
    for name, strategy in (("k", keys), ("v", numbers), ("n", both), ("timestamp", times)):
        if draw(st.integers(0, 19)):  # a field is missing one time in twenty
            rec[name] = draw(strategy)
    return rec


def _raw(rec: dict) -> bytes:
    return json.dumps(rec, ensure_ascii=False).encode("utf-8", "surrogatepass")


JUNK = [b"not json", b"", b'{"k":', b"[1, 2]", b'"str"', b"null", b"42", b'{"k": "\xff", "v": 1}', b"\xc3(",
        b'{"k": NaN, "v": 1}', b'{"k": "a", "v": Infinity}', b'{"k": "a", "v": 1e400, "n": 1}',
        b'{"k": "\\ud800", "v": 1}', b'{"k": 18446744073709551616, "v": 1, "n": 1}', b"\xef\xbb\xbf{}"]
raw_records = st.one_of(st.builds(_raw, records()), st.builds(_raw, records()), st.sampled_from(JUNK))


def _spec_aggs(aggs: list[dict], key_bytes: int) -> list[dict]:
    out = []
    for a in aggs:
        a = dict(a, max_key_bytes=key_bytes)
        w = a.get("window")
        if isinstance(w, tuple):
            a["window"] = {"size": f"{w[0]}s", "hop": f"{w[1]}s"}
        elif w:
            a["window"] = f"{w}s"
        out.append(a)
    return out


def _type(v) -> str:
    """The JSON type of a stored value (pymongo reads an int64 as bson.Int64, an int)."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, float):
        return "float"
    return "int" if isinstance(v, int) else type(v).__name__


def _stored(coll) -> dict:
    out = {}
    for doc in coll.find({}):
        key = tuple(sorted((f, (_type(v), v + 0.0 if isinstance(v, float) else v)) for f, v in doc["key"].items()))
        start = doc["window"]["start"]
        ms = None if start is None else round(start.timestamp() * 1000)
        out[(doc["aggregation"], key, ms)] = doc
    return out


NEWLINE = b"\n"


def as_files(partitions: dict, folder) -> tuple[dict, dict]:
    """The partitions as files of JSON lines in ``folder`` (an empty record is a blank line, no
    record): the ``file`` source reading them, and (file partition, byte offset) -> (partition,
    index) of every record."""
    from streamkit_files.file import fingerprint
    where = {}
    for p_, rs in partitions.items():
        path = folder / f"{p_.replace('/', '_')}.jsonl"
        data = b"".join(r + b"\n" for r in rs)
        path.write_bytes(data)
        name = f"{path}#{fingerprint(data[:data.find(NEWLINE) + 1][:1024])}" if data else None  # at most 1 KiB
        offset = 0
        for i, r in enumerate(rs):
            where[(name, offset)] = (p_, i)
            offset += len(r) + 1
    return {"type": "file", "path": str(folder / "*.jsonl")}, where


def check_run(partitions: dict, aggs: list[dict], batch: int, max_records: int, key_bytes: int,
              uri: str, letters: list, decoded: bool = False, files=None) -> None:
    """Run the stream into the mongodb sink at ``uri`` and compare with the truth; with ``files``
    (a folder) through the ``file`` source reading it as files of JSON lines, ``batch`` * 13 bytes
    at a time."""
    database = f"hostile_{uuid.uuid4().hex[:10]}"
    source = {"type": "list", "partitions": partitions, "batch": batch, "decoded": decoded}
    where = None
    if files is not None:
        partitions = {p_: [r for r in rs if r] for p_, rs in partitions.items()}  # a blank line is no record
        source, where = as_files(partitions, files)
        source["read_size"] = batch * 13
    p = Pipeline.from_dict({
        "name": database,
        "source": source,
        "aggregations": _spec_aggs(aggs, key_bytes),
        "sinks": [{"type": "mongodb", "uri": uri, "database": database, "connect_timeout": "5s"}],
        "flush": {"interval": "1h", "max_records": max_records},
        "dead_letter": {"type": "capture"},
    })
    letters.clear()
    result = p.run()  # ends, and raises nothing
    from streamkit_mongodb import connect
    client = connect(uri)
    try:
        got = _stored(client[database]["aggregations"])
    finally:
        client.drop_database(database)
        if not uri.startswith("mongomock://"):
            client.close()
    want, bad = hostile_truth(partitions, aggs, max_key_bytes=key_bytes)
    total = sum(len(v) for v in partitions.values())
    if where is not None:  # the line of each dead letter, by its file and byte offset
        for dl in letters:
            dl.partition, dl.position = where[(dl.partition, dl.position)]
    assert {(dl.partition, dl.position) for dl in letters} == bad
    assert len(letters) == len(bad) == result.dead_letters
    raw_at = {(p_, i): r for p_, rs in partitions.items() for i, r in enumerate(rs)}
    for dl in letters:
        assert dl.reason and "Traceback" not in dl.reason
        raw = raw_at[(dl.partition, dl.position)]  # the original bytes (or object: NaN != NaN), untouched
        assert dl.record == raw if isinstance(raw, bytes) else repr(dl.record) == repr(raw)
    assert result.records_read == total and result.records_aggregated == total - len(bad)
    assert set(got) == set(want), (sorted(set(got) - set(want), key=repr)[:3],
                                   sorted(set(want) - set(got), key=repr)[:3])
    for k, fields in want.items():
        doc = got[k]
        for f, (value, tol) in fields.items():
            stored = doc[f]
            assert stored is not None and not isinstance(stored, bool), (k, f, stored)
            if tol == math.inf:  # a sum of doubles near the largest one: any double, infinity included
                assert isinstance(stored, float), (k, f, stored)
                continue
            if tol == 0 and f != "avg":
                assert Fraction(stored) == Fraction(value), (k, f, stored, value)
                if type(value) is int and f in ("sum", "count"):  # integer sums within int64 stay integers
                    assert _type(stored) == "int", (k, f, stored)
            else:
                err = abs(Fraction(stored) - Fraction(value))
                assert err <= Fraction(tol) + abs(Fraction(value)) * Fraction(1, 10 ** 12), (k, f, stored, value, tol)


streams = st.dictionaries(st.sampled_from(["t/0", "t/1", "t/2"]), st.lists(raw_records, max_size=25),
                          min_size=1, max_size=3)
aggregation_sets = st.lists(st.sampled_from(CANDIDATES), min_size=1, max_size=4, unique_by=lambda a: a["name"])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(partitions=streams, aggs=aggregation_sets, batch=st.integers(1, 12), max_records=st.integers(1, 40),
       key_bytes=st.sampled_from([1024, 1024, 16]))
@example(partitions={"t/0": [b'{"k": 1, "v": 1}', b'{"k": true, "v": 2}', b'{"k": 1.0, "v": 3}',
                             b'{"k": "1", "v": 4}']},
         aggs=[CANDIDATES[0], CANDIDATES[7]], batch=1, max_records=1, key_bytes=1024)
@example(partitions={"t/0": [b'{"k": "a", "v": 4611686018427387904}', b'{"k": "a", "v": 4611686018427387904}',
                             b'{"k": "a", "v": 18446744073709551615}', b'{"k": "a", "v": 1}']},
         aggs=[CANDIDATES[1], CANDIDATES[7]], batch=4, max_records=40, key_bytes=1024)
def test_hostile_streams_count_every_good_record_once_and_dead_letter_the_rest(
        capture_dead_letters, partitions, aggs, batch, max_records, key_bytes):
    check_run(partitions, aggs, batch, max_records, key_bytes, "mongomock://hostile", capture_dead_letters)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(partitions=streams, aggs=aggregation_sets, batch=st.integers(1, 12), max_records=st.integers(1, 40),
       key_bytes=st.sampled_from([1024, 16]))
def test_hostile_lines_in_files_are_read_as_kafka_records_are(
        capture_dead_letters, tmp_path_factory, partitions, aggs, batch, max_records, key_bytes):
    """The same streams as lines of files: the file source hands the engine the same raw bytes, so
    the same records count and the same ones are dead letters, each at its file and byte offset."""
    check_run(partitions, aggs, batch, max_records, key_bytes, "mongomock://hostile", capture_dead_letters,
              files=tmp_path_factory.mktemp("lines"))


# a source that hands over objects, not text: values JSON cannot carry
objects = st.one_of(
    records(),
    st.fixed_dictionaries({"k": st.sampled_from([math.nan, math.inf, "\ud800", 10 ** 30, 2 ** 64, 1e19, -2.0 ** 63]),
                           "v": numbers, "n": both, "timestamp": normal_times}),
    st.fixed_dictionaries({"k": keys, "v": st.sampled_from([math.nan, -math.inf, 10 ** 30, 2.0 ** 64, 1e308]),
                           "n": both, "timestamp": normal_times}),
    st.fixed_dictionaries({"k": keys, "v": numbers, "n": both,
                           "timestamp": st.sampled_from([math.nan, math.inf, 10 ** 400, True])}),
    st.sampled_from([[1], "text", None, 5]),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(partitions=st.dictionaries(st.sampled_from(["t/0", "t/1"]), st.lists(objects, max_size=25), min_size=1),
       aggs=aggregation_sets, batch=st.integers(1, 12), max_records=st.integers(1, 40))
@example(partitions={"t/0": [{"k": "a", "v": 1e308, "timestamp": T0}, {"k": "a", "v": 1e308, "timestamp": T0},
                             {"k": "a", "v": math.nan, "timestamp": T0}, {"k": math.nan, "v": 1, "timestamp": T0}]},
         aggs=[CANDIDATES[1], CANDIDATES[7]], batch=4, max_records=40)
def test_hostile_objects_from_a_source_count_every_good_record_once_and_dead_letter_the_rest(
        capture_dead_letters, partitions, aggs, batch, max_records):
    check_run(partitions, aggs, batch, max_records, 1024, "mongomock://hostile", capture_dead_letters, decoded=True)


# -- one test per rule ------------------------------------------------------------------------

def _run(records, aggs, letters, *, uri=None, batch=100, max_records=100_000, decoded=False, sinks=None,
         **extra):
    """Run ``records`` (one partition) into a fresh mongomock database; (result, documents, reasons)."""
    database = f"rules_{uuid.uuid4().hex[:8]}"
    uri = uri or "mongomock://rules"
    p = Pipeline.from_dict({
        "name": database,
        "source": {"type": "list", "partitions": {"p/0": records}, "batch": batch, "decoded": decoded},
        "aggregations": aggs,
        "sinks": sinks or [{"type": "mongodb", "uri": uri, "database": database}],
        "flush": {"interval": "1h", "max_records": max_records},
        "dead_letter": {"type": "capture"}, **extra,
    })
    letters.clear()
    result = p.run()
    from streamkit_mongodb import connect
    docs = list(connect(uri)[database]["aggregations"].find({}))
    return result, docs, {dl.position: dl.reason for dl in letters}


COUNT_1M = [{"name": "c", "type": "count", "group_by": ["k"], "window": "1m"}]


@pytest.mark.parametrize("decoded", [False, True])
def test_event_times_whose_windows_leave_years_1_to_9999_are_dead_letters(capture_dead_letters, decoded):
    bad_times = ["10000-01-01T00:00:00Z", "0000-12-31T23:59:59Z", 1e20, -1e20, 10 ** 20,
                 "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:30Z", "0001-01-01T00:00:30+00:00",
                 END_TIME - 60, MIN_TIME + 59.5]
    good_times = ["9999-12-31T23:58:59.5Z", END_TIME - 60.25, "0001-01-01T00:01:00Z", MIN_TIME + 60]
    recs = [{"k": "a", "timestamp": t} for t in bad_times + good_times]
    raws = recs if decoded else [json.dumps(r).encode() for r in recs]
    result, docs, reasons = _run(raws, COUNT_1M, capture_dead_letters, decoded=decoded, batch=3)
    assert sorted(reasons) == list(range(len(bad_times)))
    assert all("out of range" in r or "ISO-8601" in r for r in reasons.values()), reasons
    assert result.records_aggregated == len(good_times) == sum(d["count"] for d in docs)
    assert sorted((d["window"]["start"].year, d["count"]) for d in docs) == [(1, 2), (9999, 2)]


def test_generator_start_time_at_the_end_of_year_9999_dead_letters_instead_of_crashing(capture_dead_letters):
    p = Pipeline.from_dict({
        "source": {"type": "generator", "rate": 0, "start_time": "9999-12-31T23:58:58Z", "time_step": "1s"},
        "aggregations": [{"name": "per_type", "type": "count", "group_by": ["interaction_type"], "window": "1m"}],
        "sinks": [{"type": "mongodb", "uri": "mongomock://year9999", "database": "g"}],
        "dead_letter": {"type": "capture"}})
    r = p.run(max_events=100)
    # 23:58:58 and 23:58:59 fall in windows ending by 23:59:00; from 23:59:00 on, a window would end in 10000
    assert (r.records_read, r.records_aggregated, r.dead_letters) == (100, 2, 98)
    assert {dl.reason.split(":")[0] for dl in capture_dead_letters} == {"field 'timestamp'"}


@pytest.mark.parametrize("value", [18446744073709551615, 2 ** 63, -(2 ** 63) - 1])
def test_integers_beyond_int64_are_dead_letters_as_key_and_as_value(capture_dead_letters, value):
    aggs = [{"name": "s", "type": "sum", "field": "v", "group_by": ["k"]}]
    recs = [json.dumps(r).encode() for r in
            ({"k": value, "v": 1}, {"k": "a", "v": value}, {"k": 2 ** 63 - 1, "v": -(2 ** 63)})]
    result, docs, reasons = _run(recs, aggs, capture_dead_letters)
    assert sorted(reasons) == [0, 1]
    assert all("beyond signed 64 bits" in r for r in reasons.values())
    assert [(d["key"], d["sum"]) for d in docs] == [({"k": 2 ** 63 - 1}, -(2 ** 63))]


def test_a_sum_that_leaves_int64_within_a_flush_and_in_the_store_is_stored_as_a_double(capture_dead_letters):
    aggs = [{"name": "s", "type": "sum", "field": "v"}, {"name": "a", "type": "avg", "field": "v"}]
    recs = [{"v": 2 ** 62}, {"v": 2 ** 62}, {"v": 2 ** 62}]
    # flush 1: 2**62 + 2**62 leaves int64 in the engine; flush 2 adds 2**62 in the store
    result, docs, reasons = _run(recs, aggs, capture_dead_letters, decoded=True, batch=2, max_records=2)
    assert result.flushes == 2 and not reasons
    by = {d["aggregation"]: d for d in docs}
    assert by["s"]["sum"] == 3 * 2 ** 62 and by["a"]["count"] == 3 and by["a"]["avg"] == 2 ** 62


def test_json_outputs_write_sums_beyond_64_bits_exactly(capture_dead_letters, tmp_path):
    out = tmp_path / "deltas.jsonl"
    recs = [{"v": 2 ** 63 - 1}] * 3
    _run(recs, [{"name": "s", "type": "sum", "field": "v"}], capture_dead_letters, decoded=True,
         sinks=[{"type": "jsonl", "path": str(out)}])
    assert [json.loads(line)["sum"] for line in out.read_text().splitlines()] == [3 * (2 ** 63 - 1)]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_dead_letters(capture_dead_letters, bad):
    aggs = [{"name": "s", "type": "sum", "field": "v", "group_by": ["k"]},
            {"name": "c", "type": "count", "group_by": ["k"], "window": "1m"}]
    recs = [{"k": "a", "v": bad, "timestamp": T0}, {"k": bad, "v": 1, "timestamp": T0},
            {"k": "a", "v": 1, "timestamp": bad}, {"k": "a", "v": 1e308, "timestamp": T0},
            {"k": "a", "v": 1e308, "timestamp": T0}]
    result, docs, reasons = _run(recs, aggs, capture_dead_letters, decoded=True)
    assert sorted(reasons) == [0, 1, 2]
    assert "not a finite" in reasons[0] and "not a finite" in reasons[1] and "finite time" in reasons[2]
    assert result.records_aggregated == 2


def test_group_keys_above_max_key_bytes_are_dead_letters(capture_dead_letters):
    aggs = [{"name": "c", "type": "count", "group_by": ["k"]}]
    huge = "x" * 20_000_000
    recs = [json.dumps({"k": k}).encode() for k in (huge, "é" * 513, "é" * 512, "x" * 1024, "k")]
    result, docs, reasons = _run(recs, aggs, capture_dead_letters)
    assert sorted(reasons) == [0, 1]
    assert "above max_key_bytes (1,024)" in reasons[1] and len(reasons[0]) < 200
    assert sorted(len(d["key"]["k"]) for d in docs) == [1, 512, 1024]
    small = [{"name": "c", "type": "count", "group_by": ["k"], "max_key_bytes": 4}]
    result, docs, reasons = _run(recs[2:], small, capture_dead_letters)
    assert sorted(reasons) == [0, 1] and [d["key"] for d in docs] == [{"k": "k"}]


def test_max_key_bytes_is_validated(tmp_path):
    from streamkit.cli import main
    f = tmp_path / "p.yaml"
    f.write_text("source: {type: generator}\naggregations:\n  - {name: c, type: count, max_key_bytes: 0}\n"
                 "sinks: [{type: discard}]\n")
    assert main(["validate", str(f)]) == 2


def test_a_field_both_grouped_and_summed_holding_a_string_is_a_dead_letter(capture_dead_letters):
    aggs = [{"name": "s", "type": "sum", "field": "n", "group_by": ["n"]}]
    recs = [{"n": "x"}, {"n": 2}, {"n": True}, {"n": 2.0}, {"n": 2}]
    result, docs, reasons = _run(recs, aggs, capture_dead_letters, decoded=True)
    assert reasons == {0: "field 'n' is not a number: 'x'", 2: "field 'n' is a boolean, not a number: True"}
    assert sorted((type(d["key"]["n"]).__name__, d["sum"]) for d in docs) == [("float", 2.0), ("int", 4)]


def test_booleans_are_never_numbers(capture_dead_letters):
    aggs = [{"name": "s", "type": "sum", "field": "v"}, {"name": "m", "type": "max", "field": "v"}]
    result, docs, reasons = _run([b'{"v": true}', b'{"v": false}', b'{"v": 3}'], aggs, capture_dead_letters)
    assert sorted(reasons) == [0, 1] and all("boolean" in r for r in reasons.values())
    assert {d["aggregation"]: d.get("sum", d.get("max")) for d in docs} == {"s": 3, "m": 3}


@pytest.mark.parametrize("max_records", [1, 2, 3, 100])
def test_key_types_are_distinct_groups_whatever_the_flush_boundaries(capture_dead_letters, max_records):
    from streamkit_mongodb import document_id
    aggs = [{"name": "c", "type": "count", "group_by": ["k"]}]
    recs = [b'{"k": 1}', b'{"k": true}', b'{"k": 1.0}', b'{"k": "1"}', b'{"k": 1}', b'{"k": 1.0}',
            b'{"k": -0.0}', b'{"k": 0.0}', b'{"k": 0}', b'{"k": false}']
    result, docs, reasons = _run(recs, aggs, capture_dead_letters, batch=1, max_records=max_records)
    got = {(_type(d["key"]["k"]), d["key"]["k"]): d["count"] for d in docs}
    assert got == {("int", 1): 2, ("bool", True): 1, ("float", 1.0): 2, ("str", "1"): 1,
                   ("float", 0.0): 2, ("int", 0): 1, ("bool", False): 1}
    assert len({d["_id"] for d in docs}) == 7
    assert all(d["_id"] == document_id("c", d["key"], None) for d in docs)


def test_iso_times_with_z_and_any_fraction_parse_on_every_python():
    from streamkit import event_time
    assert event_time("2026-01-01T00:00:00Z") == T0
    assert event_time("2026-01-01T00:00:00.5Z") == T0 + 0.5
    assert event_time("2026-01-01T00:00:00.123456789+00:00") == pytest.approx(T0 + 0.123457)
    assert event_time("2026-01-01T05:30:00+05:30") == T0
    assert event_time("2026-01-01") == T0
    for bad in ("yesterday", "", "Z", "2026-13-01T00:00:00Z", True, None, math.nan):
        with pytest.raises(ValueError):
            event_time(bad)


def test_the_default_pipeline_runs_with_z_times(root):
    p = Pipeline.from_yaml(f"{root}/pipeline.yaml", overrides=["source.rate=0", "sinks=[{type: discard}]",
                                                                  "dashboard=null"])
    r = p.run(max_events=2000)
    assert r.records_aggregated == 2000 - r.dead_letters and r.records_aggregated > 1900


class _RejectingCollection:
    """Wraps a collection; the bulk write fails for the documents of one user, as a server-side
    validation rule would make it fail, and writes the others."""

    user = "u2"

    def __init__(self, coll):
        self.coll = coll

    def __getattr__(self, name):
        return getattr(self.coll, name)

    def bulk_write(self, ops, ordered=False):
        from pymongo.errors import BulkWriteError
        bad = [i for i, op in enumerate(ops) if op._doc[0]["$set"]["key"]["$literal"].get("user_id") == self.user]
        if not bad:
            return self.coll.bulk_write(ops, ordered=ordered)
        self.coll.bulk_write([op for i, op in enumerate(ops) if i not in bad], ordered=ordered)
        raise BulkWriteError({"writeErrors": [{"index": i, "code": 121, "errmsg": "Document failed validation"}
                                              for i in bad], "upserted": []})


def test_a_document_mongodb_rejects_stops_the_run_once_with_one_line_naming_it(tmp_path, monkeypatch, capsys):
    import streamkit_mongodb
    from streamkit.cli import main
    opened = streamkit_mongodb.MongoSink.open

    def open_(self):
        opened(self)
        self.coll = _RejectingCollection(self.coll)

    monkeypatch.setattr(streamkit_mongodb.MongoSink, "open", open_)
    f = tmp_path / "p.yaml"
    f.write_text("name: reject\nsource: {type: generator, rate: 0, users: 3}\n"
                 "aggregations: [{name: per_user, type: count, group_by: [user_id]}]\n"
                 "sinks: [{type: mongodb, uri: 'mongomock://reject', database: r}]\n")
    for attempt in range(2):  # a restart replays the same flush and stops the same way: no loop
        assert main(["run", str(f), "--max-events", "500", "-q"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        line = err[0]
        assert line.startswith("streamkit: error: sinks[0]: MongoDB rejected the document of aggregation "
                               "'per_user', key {'user_id': 'u2'}, window all time (_id ")
        assert "Document failed validation (code 121)" in line and "start again" in line



def test_a_document_pymongo_cannot_encode_stops_the_run_with_one_line_naming_it(monkeypatch, capture_dead_letters):
    from streamkit_mongodb import updates
    # an update that hands MongoDB an integer it cannot hold
    monkeypatch.setattr(updates, "literal", lambda value: {"$literal": 2 ** 70})
    with pytest.raises(StreamkitError) as err:
        _run([{"k": "a", "v": 1}], [{"name": "s", "type": "sum", "field": "v", "group_by": ["k"]}],
             capture_dead_letters, decoded=True)
    msg = str(err.value)
    assert msg.startswith("sinks[0]: cannot store the document of aggregation 's', key {'k': 'a'}, window all time")
    assert "OverflowError" in msg and "\n" not in msg
