"""The engine against an independently computed truth: aggregates, windows, dead letters, positions."""
import json

import pytest

from streamkit import Pipeline
from streamkit_generator import Generator
from truth import aggregate

AGGS = [
    {"name": "per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "per_user_type", "type": "count", "group_by": ["user_id", "interaction_type"]},
    {"name": "total", "type": "count"},
    {"name": "dur_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "dur_sum", "type": "sum", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "dur_min", "type": "min", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "dur_max", "type": "max", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "per_type_1m", "type": "count", "group_by": ["interaction_type"], "window": 60},
    {"name": "per_type_hop", "type": "count", "group_by": ["interaction_type"], "window": (300, 60)},
]


def yaml_aggs():
    out = []
    for a in AGGS:
        a = dict(a)
        if isinstance(a.get("window"), tuple):
            a["window"] = {"size": f"{a['window'][0]}s", "hop": f"{a['window'][1]}s"}
        elif a.get("window"):
            a["window"] = f"{a['window']}s"
        out.append(a)
    return out


def gen_records(n, **opts):
    g = Generator({**{k: o.default for k, o in Generator.options.items()}, **opts}, None)
    g.start = 1767225600.0 if "start_time" not in opts else opts["start_time"]
    return g.records(0, n)


def test_generator_pipeline_matches_truth(test_plugins):
    opts = {"seed": 5, "users": 300, "items": 40, "rate": 0, "time_step": 0.05, "malformed_ratio": 0.02}
    n = 12_345
    p = Pipeline.from_dict({
        "source": {"type": "generator", **opts},
        "aggregations": yaml_aggs(),
        "sinks": [{"type": "capture"}],
        "flush": {"max_records": 2_000},
    })
    result = p.run(max_events=n)
    sink = test_plugins[0]
    got = sink.results(p.aggregations)
    want, bad = aggregate(gen_records(n, **{**opts, "start_time": 1767225600.0}), AGGS)
    assert result.records_read == n
    assert result.dead_letters == bad > 0
    assert result.records_aggregated == n - bad
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(want[k]), k
    assert result.flushes == len(sink.flushes) >= 6
    assert sink.flushes[-1].positions == {"generator/0": n}


def test_max_events_is_exact(test_plugins):
    cfg = {"source": {"type": "generator", "rate": 0, "batch_size": 999},
           "aggregations": [{"name": "total", "type": "count"}], "sinks": [{"type": "capture"}]}
    r = Pipeline.from_dict(cfg).run(max_events=2_500)
    assert r.records_read == 2_500
    assert test_plugins[0].results(Pipeline.from_dict(cfg).aggregations) == {("total", (), None): {"count": 2_500}}


RAW = {
    "t/0": [b'{"user_id": "a", "v": 1, "timestamp": "2026-01-01T00:00:30Z"}',
            b'not json',
            b'{"user_id": "b", "v": 2.5, "timestamp": 1767225601}',
            b'[1, 2]',
            b'{"v": 3, "timestamp": 1767225601}',
            b'{"user_id": "a", "v": "x", "timestamp": 1767225601}',
            b'{"user_id": {"x": 1}, "v": 3, "timestamp": 1767225601}',
            b'{"user_id": "a", "v": 4, "timestamp": "yesterday"}',
            b'{"user_id": "a", "v": NaN, "timestamp": 1767225601}',
            b'{"user_id": null, "v": 1, "timestamp": 1767225601}'],
    "t/1": [b'{"user_id": "a", "v": 10, "timestamp": "2026-01-01T00:01:00+00:00"}',
            b'{"user_id": "$where", "v": -1, "timestamp": 1767225660.5}',
            b'{"user_id": "a.b", "v": 0, "timestamp": 1767225600}'],
}


def test_dead_letters_have_reasons_and_positions(tmp_path, test_plugins):
    dl = tmp_path / "dl.jsonl"
    p = Pipeline.from_dict({
        "source": {"type": "list", "partitions": {k: [r.decode() for r in v] for k, v in RAW.items()}, "batch": 4},
        "aggregations": [{"name": "s", "type": "sum", "field": "v", "group_by": ["user_id"], "window": "1m"}],
        "sinks": [{"type": "capture"}],
        "dead_letter": {"type": "jsonl", "path": str(dl)},
    })
    r = p.run()
    letters = [json.loads(line) for line in dl.read_text().splitlines()]
    assert [(x["partition"], x["position"]) for x in letters] == [("t/0", i) for i in (1, 3, 4, 5, 6, 7, 8, 9)]
    reasons = [x["reason"] for x in letters]
    assert reasons[0].startswith("invalid JSON")
    assert reasons[1] == "not a JSON object: list"
    assert reasons[2] == "missing field 'user_id'"
    assert reasons[3] == "field 'v' is not a number: 'x'"
    assert "group by" in reasons[4]
    assert "yesterday" in reasons[5]
    assert letters[0]["record"] == "not json"
    assert r.dead_letters == 8 and r.records_read == 13 and r.records_aggregated == 5
    got = test_plugins[0].results(p.aggregations)
    assert got == {
        ("s", (("user_id", "a"),), 1767225600.0): {"sum": 1},
        ("s", (("user_id", "b"),), 1767225600.0): {"sum": 2.5},
        ("s", (("user_id", "a"),), 1767225660.0): {"sum": 10},
        ("s", (("user_id", "$where"),), 1767225660.0): {"sum": -1},
        ("s", (("user_id", "a.b"),), 1767225600.0): {"sum": 0},
    }
    assert test_plugins[0].flushes[-1].positions == {"t/0": 10, "t/1": 3}


def test_partitions_are_kept_apart_in_a_flush(test_plugins):
    recs = {"a/0": [{"k": "x"}] * 3, "a/1": [{"k": "x"}] * 2}
    p = Pipeline.from_dict({"source": {"type": "list", "partitions": recs, "decoded": True},
                            "aggregations": [{"name": "c", "type": "count", "group_by": ["k"]}],
                            "sinks": [{"type": "capture"}]})
    p.run()
    flush = test_plugins[0].flushes[0]
    per_part = {part: [d.partial for d in flush.partition_deltas(part)] for part in flush.parts}
    assert per_part == {"a/0": [3], "a/1": [2]}
    assert [d.partial for d in flush.deltas()] == [5]


def test_replay_boundary_forces_a_flush_at_the_same_position(test_plugins):
    """An unfinished intent (Resume with a replay_end) is replayed with exactly the same end."""
    from streamkit import Resume, Sink

    recs = {"a/0": [{"k": "x"}] * 10}
    p = Pipeline.from_dict({"source": {"type": "list", "partitions": recs, "decoded": True, "batch": 4},
                            "aggregations": [{"name": "c", "type": "count", "group_by": ["k"]}],
                            "sinks": [{"type": "capture"}]})
    orig_positions = Sink.positions
    try:
        Sink.positions = lambda self, parts: {"a/0": Resume(2, replay_end=7)}
        p.run()
    finally:
        Sink.positions = orig_positions
    ranges = [(f.parts["a/0"].first, f.parts["a/0"].next) for f in test_plugins[0].flushes]
    assert ranges[0] == (2, 7)
    assert ranges[-1][1] == 10


def test_a_lost_partition_forgets_its_unflushed_records(test_plugins, monkeypatch):
    """hooks.lost: the group gave the partition away; its new owner reads those records again."""
    recs = {"a/0": [{"k": "x"}] * 4, "a/1": [{"k": "y"}] * 4}
    p = Pipeline.from_dict({"source": {"type": "list", "partitions": recs, "decoded": True, "batch": 2},
                            "aggregations": [{"name": "c", "type": "count", "group_by": ["k"]}],
                            "sinks": [{"type": "capture"}], "flush": {"interval": "1h"}})
    ListSource = p.spec.source.cls
    opened, polls = {}, []
    orig_open, orig_poll = ListSource.open, ListSource.poll

    def open_(self, hooks):
        opened["hooks"] = hooks
        orig_open(self, hooks)

    def poll(self, timeout):
        polls.append(1)
        if len(polls) == 2:
            opened["hooks"].lost(["a/0"])  # after a/0 and a/1 gave two records each
            self.parts.pop("a/0")
        return orig_poll(self, timeout)

    monkeypatch.setattr(ListSource, "open", open_)
    monkeypatch.setattr(ListSource, "poll", poll)
    p.run()
    sink = test_plugins[0]
    assert sink.results(p.aggregations) == {("c", (("k", "y"),), None): {"count": 4}}
    assert sink.flushes[-1].positions == {"a/1": 4}
