"""Pipelines sharing a collection, changed aggregations, ``streamkit reset``, and the start-up and
end-of-run warnings about what cannot be exact. In-memory store; the CLI runs in this process,
so it sees the same ``mongomock://`` store as the test."""
from __future__ import annotations

import json
import logging
import types
import uuid

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings, strategies as st

import streamkit_mongodb
from streamkit import Aggregator, Option, Pipeline, hookimpl
from streamkit.cli import main
from streamkit.plugins import get_plugin_manager
from streamkit_mongodb import connect
from truth import aggregate

AGGS = [
    {"name": "per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "per_type_1m", "type": "count", "group_by": ["interaction_type"], "window": 60},
]
SOURCE = {"type": "generator", "seed": 7, "users": 30, "items": 8, "rate": 0, "time_step": 0.05,
          "start_time": 1767225600, "batch_size": 100}


class Crash(BaseException):
    """Stands for kill -9: nothing after it runs."""


def _yaml_aggs(aggs):
    return [{**a, "window": f"{a['window']}s"} if a.get("window") else a for a in aggs]


def config(uri: str, name: str, n: int | None = None, aggs=None, flush: int = 700, **source) -> dict:
    src = {**SOURCE, **source}
    if n is not None:
        src["max_records"] = n
    return {"name": name, "source": src, "aggregations": _yaml_aggs(aggs or AGGS),
            "sinks": [{"type": "mongodb", "uri": uri, "database": "db", "collection": "aggregations"}],
            "flush": {"max_records": flush, "interval": "60s"}}


def records(source: dict, n: int) -> list[dict]:
    """The first ``n`` records of a generator with these options (the input, not a result)."""
    spec = Pipeline.from_dict({"source": {**SOURCE, **source}, "aggregations": [{"name": "n", "type": "count"}],
                               "sinks": [{"type": "discard"}]}).spec
    return spec.source.cls(spec.source.options, None).records(0, n)


def stored(uri: str) -> dict:
    out = {}
    for d in connect(uri).db.aggregations.find():
        start = d["window"]["start"]
        fields = ("avg", "sum", "count") if d["aggregation"] == "duration_per_item" else ("count",)
        out[(d["aggregation"], tuple(sorted(d["key"].items())), start.timestamp() if start else None)] = {
            f: d[f] for f in fields}
    return out


def assert_exact(uri: str, recs: list[dict], aggs=None) -> None:
    want, _ = aggregate(recs, aggs or AGGS)
    got = stored(uri)
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v), k


def write(tmp_path, cfg: dict, name: str = "p.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def fresh() -> str:
    return f"mongomock://scope-{uuid.uuid4().hex}"


# -- two pipelines, one collection ------------------------------------------------------

@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(n_a=5000, n_b=3000, seed_b=7, stop_a=None, flush=100_000)
@given(n_a=st.integers(0, 1500), n_b=st.integers(1, 1500), seed_b=st.sampled_from([7, 8]),
       stop_a=st.one_of(st.none(), st.integers(1, 1500)), flush=st.integers(50, 900))
def test_two_pipelines_sharing_a_collection_each_count_exactly(n_a, n_b, seed_b, stop_a, flush):
    """Pipeline a, then b (the same or other records), then a again where it stopped: the stored
    documents are the sum of both inputs. With fences that do not name the pipeline, b's merges
    are skipped wherever a's fence is ahead."""
    uri = fresh()
    if stop_a is not None and stop_a < n_a:
        Pipeline.from_dict(config(uri, "a", n_a, flush=flush)).run(max_events=stop_a)
    Pipeline.from_dict(config(uri, "b", n_b, flush=flush, seed=seed_b)).run()
    Pipeline.from_dict(config(uri, "a", n_a, flush=flush)).run()
    assert_exact(uri, records({}, n_a) + records({"seed": seed_b}, n_b))


def _crash_in_bulk(monkeypatch, apply: float) -> None:
    """The next bulk write applies the first ``apply`` share of its updates, then the process dies."""
    real = streamkit_mongodb.MongoSink._bulk

    def bulk(self, ops):
        real(self, ops[:int(len(ops) * apply)])
        monkeypatch.setattr(streamkit_mongodb.MongoSink, "_bulk", real)
        raise Crash()
    monkeypatch.setattr(streamkit_mongodb.MongoSink, "_bulk", bulk)


@pytest.mark.parametrize("apply", [0.0, 0.5, 1.0])
def test_a_crash_of_one_pipeline_replays_exactly_next_to_another(monkeypatch, apply):
    """b dies in the middle of a flush into documents a also feeds; its replay skips exactly the
    documents it had reached (its own fence), whatever a's fences say."""
    uri = fresh()
    Pipeline.from_dict(config(uri, "a", 2000)).run()
    Pipeline.from_dict(config(uri, "b", 3000, seed=8)).run(max_events=700)
    _crash_in_bulk(monkeypatch, apply)
    with pytest.raises(Crash):
        Pipeline.from_dict(config(uri, "b", 3000, seed=8)).run()
    Pipeline.from_dict(config(uri, "a", 2500)).run()
    Pipeline.from_dict(config(uri, "b", 3000, seed=8)).run()
    assert_exact(uri, records({}, 2500) + records({"seed": 8}, 3000))


def test_fences_name_the_pipeline():
    uri = fresh()
    Pipeline.from_dict(config(uri, "a.b|$c", 100)).run()
    doc = connect(uri).db.aggregations.find_one({"aggregation": "per_user"})
    assert doc["_fence"] == {"a%2Eb%7C%24c|generator/0": 100}
    assert streamkit_mongodb.fence_pipeline("a%2Eb%7C%24c|generator/0") == "a.b|$c"


def test_positions_of_the_unscoped_layout_are_refused(tmp_path, capsys):
    """Offsets written before fences named the pipeline: documents cannot tell this pipeline's
    merges from another's, so a replay could count twice; the start is refused, saying how to
    start over, and reset does start over."""
    uri = fresh()
    connect(uri).db.streamkit_offsets.insert_one(
        {"_id": "old|aggregations|generator/0", "pipeline": "old", "partition": "generator/0", "epoch": 1,
         "position": 1000, "intent": {"start": 1000, "end": 2000}})
    connect(uri).db.aggregations.insert_one(
        {"_id": "x", "aggregation": "per_user", "key": {"user_id": "u1"}, "count": 5,
         "_fence": {"generator/0": 2000}, "window": {"start": None, "end": None}})
    path = write(tmp_path, config(uri, "old", 1500))
    assert main(["run", path, "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "earlier streamkit" in err and f"streamkit reset {path}" in err, err
    assert main(["reset", path, "--yes"]) == 0
    assert "documents in db.aggregations: 1, positions: 1, unfinished intents: 1" in capsys.readouterr().out
    assert main(["run", path, "-q"]) == 0
    assert_exact(uri, records({}, 1500))


# -- changed aggregations ---------------------------------------------------------------

class Scaled(Aggregator):
    """A sum of values times ``factor``: an aggregator with an option."""

    options = {"factor": Option(int, 1, "multiply each value")}
    fields = ("sum",)

    def create(self):
        return 0

    def add(self, partial, value):
        return partial + value * self.config["factor"]

    def merge(self, a, b):
        return a + b

    def result(self, partial):
        return {"sum": partial}

    merges = {"sum": "add"}


@pytest.fixture
def scaled():
    mod = types.ModuleType("streamkit_test_scaled")

    @hookimpl
    def register_aggregators(register):
        register("scaled", Scaled)

    mod.register_aggregators = register_aggregators
    pm = get_plugin_manager()
    pm.register(mod, name="streamkit_test_scaled")
    yield
    pm.unregister(name="streamkit_test_scaled")


BASE = [
    {"name": "per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "per_type", "type": "count", "group_by": ["interaction_type"], "window": "1m"},
    {"name": "scaled", "type": "scaled", "field": "duration_ms", "factor": 2},
]
CHANGES = {
    "window": (1, {"window": "5m"}, "aggregations[1].window: 1m -> 5m"),
    "hopping": (1, {"window": {"size": "2m", "hop": "1m"}}, "aggregations[1].window: 1m -> 2m hop 1m"),
    "all-time": (1, {"window": None}, "aggregations[1].window: 1m -> all-time"),
    "group_by": (0, {"group_by": ["user_id", "item_id"]}, "aggregations[0].group_by: [user_id] -> [user_id, item_id]"),
    "type": (0, {"type": "sum", "field": "duration_ms"}, "aggregations[0].type: count -> sum"),
    "field": (2, {"field": "timestamp"}, "aggregations[2].field: duration_ms -> timestamp"),
    "time_field": (1, {"time_field": "ts"}, "aggregations[1].time_field: timestamp -> ts"),
    "option": (2, {"factor": 3}, "aggregations[2].factor: 2 -> 3"),
    "option to default": (2, {"factor": None}, "aggregations[2].factor: 2 -> default"),
}


def _changed(index: int, change: dict) -> list[dict]:
    aggs = [dict(a) for a in BASE]
    aggs[index].update(change)
    aggs[index] = {k: v for k, v in aggs[index].items() if v is not None}
    return aggs


@pytest.mark.parametrize("what", sorted(CHANGES))
def test_changed_aggregations_stop_the_start_with_one_line(scaled, tmp_path, capsys, what):
    index, change, phrase = CHANGES[what]
    uri = fresh()
    first = write(tmp_path, {**config(uri, "p", 300), "aggregations": BASE})
    assert main(["run", first, "-q"]) == 0
    capsys.readouterr()
    path = write(tmp_path, {**config(uri, "p", 600), "aggregations": _changed(index, change)}, "changed.yaml")
    before = sorted((d["_id"], d.get("count"), d.get("sum")) for d in connect(uri).db.aggregations.find())
    assert main(["run", path, "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert phrase in err, err
    assert f"`streamkit reset {path}`" in err and "new `name:`" in err, err
    after = sorted((d["_id"], d.get("count"), d.get("sum")) for d in connect(uri).db.aggregations.find())
    assert after == before, "a refused start wrote documents"


@pytest.mark.parametrize("what, phrase", [
    ("added", "aggregations[3] (per_item): new"), ("removed", "aggregation scaled removed"),
    ("renamed", "aggregations[0] (users): new; aggregation per_user removed")])
def test_added_removed_or_renamed_aggregations_stop_the_start(scaled, tmp_path, capsys, what, phrase):
    uri = fresh()
    assert main(["run", write(tmp_path, {**config(uri, "p", 300), "aggregations": BASE}), "-q"]) == 0
    aggs = [dict(a) for a in BASE]
    if what == "added":
        aggs.append({"name": "per_item", "type": "count", "group_by": ["item_id"]})
    elif what == "removed":
        aggs.pop()
    else:
        aggs[0]["name"] = "users"
    assert main(["run", write(tmp_path, {**config(uri, "p", 600), "aggregations": aggs}, "b.yaml"), "-q"]) == 2
    assert phrase in capsys.readouterr().err


def test_reordered_aggregations_and_other_sources_options_are_the_same_pipeline(scaled, tmp_path):
    uri = fresh()
    assert main(["run", write(tmp_path, {**config(uri, "p", 300), "aggregations": BASE}), "-q"]) == 0
    again = {**config(uri, "p", 600, batch_size=50), "aggregations": BASE[::-1]}
    assert main(["run", write(tmp_path, again, "b.yaml"), "-q"]) == 0
    doc = connect(uri).db.aggregations.find_one({"aggregation": "per_user", "key.user_id": "u1"})
    assert doc["_fence"] == {"p|generator/0": 600}


def test_an_option_set_to_its_default_is_the_same_pipeline(scaled, tmp_path):
    uri = fresh()
    base = [dict(a) for a in BASE]
    base[2].pop("factor")
    assert main(["run", write(tmp_path, {**config(uri, "p", 300), "aggregations": base}), "-q"]) == 0
    assert main(["run", write(tmp_path, {**config(uri, "p", 600), "aggregations": _changed(2, {"factor": 1})},
                              "b.yaml"), "-q"]) == 0


def test_a_new_name_starts_a_new_pipeline(scaled, tmp_path):
    uri = fresh()
    assert main(["run", write(tmp_path, {**config(uri, "p", 300), "aggregations": BASE}), "-q"]) == 0
    other = {**config(uri, "q", 300), "aggregations": _changed(1, {"window": "5m"})}
    assert main(["run", write(tmp_path, other, "b.yaml"), "-q"]) == 0


# -- streamkit reset ----------------------------------------------------------------------

class _Stdin:
    def __init__(self, tty: bool, answer: str = "") -> None:
        self.tty, self.answer = tty, answer

    def isatty(self) -> bool:
        return self.tty

    def readline(self) -> str:
        return self.answer + "\n"


def _two(tmp_path) -> tuple[str, str, str]:
    uri = fresh()
    a = write(tmp_path, config(uri, "a", 1200), "a.yaml")
    b = write(tmp_path, config(uri, "b", 800, seed=8), "b.yaml")
    assert main(["run", a, "-q"]) == 0
    return uri, a, b


def test_reset_needs_yes_when_stdin_is_not_a_terminal(tmp_path, capsys, monkeypatch):
    uri, a, _ = _two(tmp_path)
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", _Stdin(tty=False))
    assert main(["reset", a]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--yes" in err and "not a terminal" in err, err
    assert connect(uri).db.aggregations.count_documents({}) > 0
    assert connect(uri).db.streamkit_offsets.count_documents({}) == 1


@pytest.mark.parametrize("answer, removed", [("n", False), ("", False), ("y", True), ("yes", True)])
def test_reset_asks_on_a_terminal(tmp_path, capsys, monkeypatch, answer, removed):
    uri, a, _ = _two(tmp_path)
    n = connect(uri).db.aggregations.count_documents({})
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", _Stdin(tty=True, answer=answer))
    assert main(["reset", a]) == (0 if removed else 1)
    out = capsys.readouterr().out
    assert "[y/N]" in out and f"documents in db.aggregations: {n:,}" in out, out
    assert connect(uri).db.aggregations.count_documents({}) == (0 if removed else n)
    assert connect(uri).db.streamkit_offsets.count_documents({}) == (0 if removed else 1)


def test_reset_on_a_terminal_takes_end_of_input_as_no(tmp_path, capsys, monkeypatch):
    uri, a, _ = _two(tmp_path)

    class Closed(_Stdin):
        def readline(self) -> str:
            return ""
    monkeypatch.setattr("sys.stdin", Closed(tty=True))
    assert main(["reset", a]) == 1
    assert connect(uri).db.streamkit_offsets.count_documents({}) == 1


def test_reset_with_mongodb_down_is_one_line(tmp_path, capsys, monkeypatch):
    cfg = config("mongodb://127.0.0.1:9", "a", 100)
    cfg["sinks"][0]["connect_timeout"] = "0.3s"
    monkeypatch.setattr("sys.stdin", _Stdin(tty=False))
    assert main(["reset", write(tmp_path, cfg), "--yes"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MongoDB unreachable" in err and "nothing was removed" in err, err


def test_reset_starts_over_exactly(tmp_path, capsys):
    """Crash in the middle of a flush (an unfinished intent), reset, run again: the documents are
    exactly the new run's, nothing of the old one is left or resumed."""
    uri, a, _ = _two(tmp_path)
    capsys.readouterr()
    assert main(["reset", a, "--yes"]) == 0
    out = capsys.readouterr().out
    assert "positions: 1, unfinished intents: 0" in out and "source (generator): nothing kept here" in out, out
    assert connect(uri).db.aggregations.count_documents({}) == 0
    assert connect(uri).db.streamkit_offsets.count_documents({}) == 0
    assert main(["run", a, "-q"]) == 0
    assert_exact(uri, records({}, 1200))


def test_reset_refuses_documents_shared_with_another_pipeline(tmp_path, capsys):
    uri, a, b = _two(tmp_path)
    assert main(["run", b, "-q"]) == 0
    coll = connect(uri).db.aggregations
    before = coll.count_documents({})
    capsys.readouterr()
    assert main(["reset", b, "--yes"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pipeline 'a'" in err and "--force" in err and "nothing was removed" in err, err
    assert coll.count_documents({}) == before
    assert connect(uri).db.streamkit_offsets.count_documents({}) == 2
    assert main(["reset", b, "--yes", "--force"]) == 0
    assert "of them shared with a" in capsys.readouterr().out
    assert connect(uri).db.streamkit_offsets.count_documents({"pipeline": "b"}) == 0
    assert connect(uri).db.streamkit_offsets.count_documents({"pipeline": "a"}) == 1
    # a's own documents and positions are left; what it shared with b is gone
    assert all(set(d["_fence"]) == {"a|generator/0"} for d in coll.find())


def test_reset_leaves_another_pipelines_own_documents(tmp_path, capsys):
    """b writes other aggregations into the same collection: a's reset removes only a's documents."""
    uri, a, _ = _two(tmp_path)
    other = [{"name": "per_item", "type": "count", "group_by": ["item_id"]}]
    b = write(tmp_path, config(uri, "b", 800, aggs=other), "b2.yaml")
    assert main(["run", b, "-q"]) == 0
    assert main(["reset", a, "--yes"]) == 0
    left = list(connect(uri).db.aggregations.find())
    assert left and {d["aggregation"] for d in left} == {"per_item"}
    assert sum(d["count"] for d in left) == 800


def test_an_interrupted_reset_is_refused_until_completed(tmp_path, capsys, monkeypatch):
    uri, a, _ = _two(tmp_path)
    coll = connect(uri).db.aggregations
    real = coll.delete_many

    def crash(*args, **kwargs):
        real(*args, **kwargs)
        raise Crash()
    monkeypatch.setattr(streamkit_mongodb.MongoSink, "_connect", _with_coll_patch(crash))
    with pytest.raises(Crash):
        main(["reset", a, "--yes"])
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["run", a, "-q"]) == 2
    assert "reset of pipeline 'a' was interrupted" in capsys.readouterr().err
    assert main(["reset", a, "--yes"]) == 0
    assert main(["run", a, "-q"]) == 0
    assert_exact(uri, records({}, 1200))


def _with_coll_patch(delete_many):
    real = streamkit_mongodb.MongoSink._connect

    def _connect(self):
        real(self)
        self.coll = types.SimpleNamespace(find=self.coll.find, delete_many=delete_many)
    return _connect


# -- what cannot be exact -----------------------------------------------------------------

def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("sinks, delivery, warned", [
    ([{"type": "jsonl", "path": "{tmp}/out.jsonl"}, {"type": "discard"}], "exactly_once", True),
    ([{"type": "console"}], "exactly_once", True),
    ([{"type": "discard"}], "at_least_once", False),
    ([{"type": "mongodb", "uri": "mongomock://warn"}, {"type": "discard"}], "exactly_once", False),
])
def test_exactly_once_without_an_exact_sink_warns_once(tmp_path, caplog, sinks, delivery, warned):
    sinks = [{k: (v.format(tmp=tmp_path) if isinstance(v, str) else v) for k, v in s.items()} for s in sinks]
    cfg = {"source": {**SOURCE, "max_records": 50}, "aggregations": _yaml_aggs(AGGS[:1]), "sinks": sinks,
           "delivery": delivery}
    with caplog.at_level(logging.WARNING, logger="streamkit"):
        Pipeline.from_dict(cfg).run()
    lines = [m for m in _warnings(caplog) if "no sink here can honour it" in m]
    assert len(lines) == (1 if warned else 0), _warnings(caplog)
    if warned:
        assert ", ".join(s["type"] for s in sinks) in lines[0]


def test_an_intent_beyond_the_end_of_the_source_fails_visibly(tmp_path, capsys, monkeypatch, caplog):
    """A flush [700, 1400) dies in the middle; the source is then cut to 1000 records: the replay
    can never reach 1400, so the run says so and exits 1 instead of 0 with nothing written."""
    uri = fresh()
    Pipeline.from_dict(config(uri, "p", 5000)).run(max_events=700)
    _crash_in_bulk(monkeypatch, 0.5)
    with pytest.raises(Crash):
        Pipeline.from_dict(config(uri, "p", 5000)).run(max_events=1400)
    before = stored(uri)
    for cut in (1000, 500):  # ends inside the replayed flush; ends before it even starts
        path = write(tmp_path, config(uri, "p", cut))
        caplog.clear()
        assert main(["run", path, "-q"]) == 1
        lines = _warnings(caplog)
        assert len(lines) == 1 and "before the end (1400) of the interrupted flush" in lines[0], lines
        assert f"streamkit reset {path}" in lines[0]
        assert stored(uri) == before
    capsys.readouterr()
    assert main(["run", path, "-q", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["unfinished"] == {"generator/0": {"reached": 700, "end": 1400}}
    assert main(["run", write(tmp_path, config(uri, "p", 2000)), "-q"]) == 0
    assert_exact(uri, records({}, 2000))


def test_a_stop_in_the_middle_of_a_replay_warns_and_exits_0(tmp_path, caplog, monkeypatch):
    uri = fresh()
    Pipeline.from_dict(config(uri, "p", 5000)).run(max_events=700)
    _crash_in_bulk(monkeypatch, 0.5)
    with pytest.raises(Crash):
        Pipeline.from_dict(config(uri, "p", 5000)).run(max_events=1400)
    path = write(tmp_path, config(uri, "p", 5000))
    assert main(["run", path, "-q", "--max-events", "300"]) == 0
    assert any("stopped at position 1000 while replaying an interrupted flush that ends at 1400" in m
               for m in _warnings(caplog)), _warnings(caplog)
    assert main(["run", path, "-q"]) == 0
    assert_exact(uri, records({}, 5000))


def test_reset_recomputes_the_dashboard_counters(tmp_path, capsys):
    """The ``reset`` hook: the dashboard's counters follow the documents reset removed."""
    uri = fresh()
    other = [{"name": "per_item", "type": "count", "group_by": ["item_id"]}]
    a = write(tmp_path, {**config(uri, "a", 1200), "dashboard": {"serve": False}}, "a.yaml")
    b = write(tmp_path, {**config(uri, "b", 800, aggs=other), "dashboard": {"serve": False}}, "b.yaml")
    assert main(["run", a, "-q"]) == 0 and main(["run", b, "-q"]) == 0
    status = connect(uri).db.streamkit_status
    assert status.find_one({"_id": "counter|aggregations|per_user"})["count"] == 1200
    capsys.readouterr()
    assert main(["reset", a, "--yes"]) == 0
    assert "dashboard counters: counters recomputed: 3" in capsys.readouterr().out
    assert status.find_one({"_id": "counter|aggregations|per_user"})["count"] == 0
    assert status.find_one({"_id": "counter|aggregations|per_user"})["keys"] == 0
    assert status.find_one({"_id": "counter|aggregations|per_item"})["count"] == 800


def test_reset_hook_sees_the_dry_run_then_the_reset(tmp_path, capsys):
    calls = []
    mod = types.ModuleType("streamkit_test_reset_observer")

    @hookimpl
    def reset(pipeline, dry_run):
        calls.append((dry_run, pipeline.sinks[0].coll.count_documents({})))
        return {"observer": {"things": 7}}
    mod.reset = reset
    pm = get_plugin_manager()
    pm.register(mod, name="streamkit_test_reset_observer")
    try:
        uri, a, _ = _two(tmp_path)
        n = connect(uri).db.aggregations.count_documents({})
        capsys.readouterr()
        assert main(["reset", a, "--yes"]) == 0
    finally:
        pm.unregister(name="streamkit_test_reset_observer")
    assert calls == [(True, n), (False, 0)]  # asked first (dry run), then after the sinks removed theirs
    assert "observer: things: 7" in capsys.readouterr().out


def test_reset_of_an_at_least_once_pipeline_removes_its_aggregations_documents(tmp_path):
    uri = fresh()
    a = write(tmp_path, {**config(uri, "a", 600), "delivery": "at_least_once"}, "a.yaml")
    other = [{"name": "per_item", "type": "count", "group_by": ["item_id"]}]
    b = write(tmp_path, config(uri, "b", 400, aggs=other), "b.yaml")
    assert main(["run", a, "-q"]) == 0 and main(["run", b, "-q"]) == 0
    assert main(["reset", a, "--yes"]) == 0
    left = list(connect(uri).db.aggregations.find())
    assert {d["aggregation"] for d in left} == {"per_item"} and sum(d["count"] for d in left) == 400
