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


def _stored(coll) -> dict:
    out = {}
    for doc in coll.find({}):
        key = tuple(sorted((f, (("bool" if isinstance(v, bool) else "float" if isinstance(v, float)
                                 else type(v).__name__), v + 0.0 if isinstance(v, float) else v))
                           for f, v in doc["key"].items()))
        start = doc["window"]["start"]
        ms = None if start is None else round(start.timestamp() * 1000)
        out[(doc["aggregation"], key, ms)] = doc
    return out


def check_run(partitions: dict, aggs: list[dict], batch: int, max_records: int, key_bytes: int,
              uri: str, letters: list, decoded: bool = False) -> None:
    """Run the stream into the mongodb sink at ``uri`` and compare with the truth."""
    database = f"hostile_{uuid.uuid4().hex[:10]}"
    p = Pipeline.from_dict({
        "name": database,
        "source": {"type": "list", "partitions": partitions, "batch": batch, "decoded": decoded},
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
    assert {(dl.partition, dl.position) for dl in letters} == bad
    assert len(letters) == len(bad) == result.dead_letters
    raw_at = {(p_, i): r for p_, rs in partitions.items() for i, r in enumerate(rs)}
    for dl in letters:
        assert dl.reason and "Traceback" not in dl.reason
        assert dl.record == raw_at[(dl.partition, dl.position)]  # the original bytes, untouched
    assert result.records_read == total and result.records_aggregated == total - len(bad)
    assert set(got) == set(want), (sorted(set(got) - set(want), key=repr)[:3],
                                   sorted(set(want) - set(got), key=repr)[:3])
    for k, fields in want.items():
        doc = got[k]
        for f, (value, tol) in fields.items():
            stored = doc[f]
            assert stored is not None and not isinstance(stored, bool), (k, f, stored)
            if tol == 0 and f != "avg":
                assert Fraction(stored) == Fraction(value), (k, f, stored, value)
                if type(value) is int and f in ("sum", "count"):  # integer sums within int64 stay integers
                    assert type(stored) is int, (k, f, stored)
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
