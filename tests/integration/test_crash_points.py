"""Deterministic crashes at each point of the write path, against the real MongoDB-wire server.

The test-only plugin ``streamkit_crashpoints`` ends ``streamkit run`` with ``os._exit`` at a
chosen point (after the intents are stored, in the middle of the bulk write, in the middle of
the per-partition ``$cond`` fallback, before the intents are finished, between the dead-letter
write and the sink write). After each crash the pipeline is started again without the crash
point and must store exactly the documents of the truth (tests/truth.py), end at the input's
end with nothing unfinished, and have written every dead letter.
"""
from __future__ import annotations

import random
from collections import Counter

import orjson
import pytest

from conftest import unique
from processes import generator_records, make_events, offsets_state, pipeline, write_yaml
from streamkit_crashpoints import CRASH_EXIT
from truth import aggregate, diff, stored, truth

pytestmark = pytest.mark.integration

AGGREGATIONS = [
    {"name": "per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "duration_per_type", "type": "sum", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "shortest", "type": "min", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "longest", "type": "max", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "per_type_1s", "type": "count", "group_by": ["interaction_type"], "window": 1},
    {"name": "duration_5s_every_2s", "type": "avg", "field": "duration_ms", "group_by": ["interaction_type"],
     "window": (5, 2)},
    {"name": "shortest_3s_every_1s", "type": "min", "field": "duration_ms", "window": (3, 1)},
    {"name": "longest_2s", "type": "max", "field": "duration_ms", "group_by": ["item_id"], "window": 2},
    # sketches: their stored state (registers, bucket counts) must equal the truth's exactly
    {"name": "users_per_item", "type": "distinct", "field": "user_id", "group_by": ["item_id"]},
    {"name": "duration_pct_per_type", "type": "percentiles", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "users_2s_every_1s", "type": "distinct", "field": "user_id", "window": (2, 1), "precision": 10},
    {"name": "duration_pct_3s", "type": "percentiles", "field": "duration_ms", "window": 3, "buckets": 64},
]
GENERATOR = {"type": "generator", "seed": 17, "users": 60, "items": 15, "rate": 0, "max_records": 4000,
             "batch_size": 250, "time_step": "2ms", "malformed_ratio": 0.03}
DEALT = {"type": "dealt", "seed": 5, "n": 3000, "partitions": 3, "batch": 100}

# (crash points in order, one start each), then a clean start
SCENARIOS = {
    "after_intents": ["after_intents@2"],
    "mid_bulk": ["mid_bulk@2"],
    "before_finish": ["before_finish@2"],
    "mid_fallback": ["mid_bulk@2", "mid_fallback@1"],  # the replay of a half-merged flush
    "mid_fallback_twice": ["mid_bulk@3", "mid_fallback@1", "after_intents@1"],
}


def _config(tmp_path, mongo_uri: str, database: str, name: str, source: dict) -> dict:
    cfg = pipeline(name, source, mongo_uri, database, AGGREGATIONS, {"max_records": 900, "interval": "60s"})
    cfg["plugins"] = ["streamkit_crashpoints"]
    cfg["sinks"][0]["type"] = "crashing_mongodb"
    cfg["dead_letter"] = {"type": "crashing_jsonl", "path": str(tmp_path / "dead.jsonl")}
    return cfg


def _open_intents(db, name: str) -> list[str]:
    return sorted(p for p, (_, intent, _) in offsets_state(db, name).items() if intent is not None)


def _crash_then_finish(runs, config, db, name: str, points: list[str]) -> list[str]:
    notes = []
    for point in points:
        run = runs.start(config, "streamkit", env={"STREAMKIT_CRASH_AT": point})
        code = run.wait(120)
        notes.append(f"{point}: exit {code}, intents open on {_open_intents(db, name)}")
        assert code == CRASH_EXIT, f"the crash point {point} was not reached (exit {code})\n{run.tail()}"
    run = runs.start(config, "streamkit", env={"STREAMKIT_CRASH_AT": ""})
    code = run.wait(120)
    assert code == 0, f"the start after the crash failed (exit {code})\n{run.tail()}"
    return notes


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("source", ["generator", "dealt"])
def test_crash_point_then_restart_is_exact(mongo_uri, mongo_db, runs, tmp_path, scenario, source):
    name = unique("points")
    src = GENERATOR if source == "generator" else DEALT
    config = write_yaml(tmp_path / "p.yaml", _config(tmp_path, mongo_uri, mongo_db.name, name, src))
    notes = _crash_then_finish(runs, config, mongo_db, name, SCENARIOS[scenario])
    print("\n".join(notes))
    for note in notes:
        assert "intents open on []" not in note, "a crash left no flush unfinished:\n" + "\n".join(notes)
    if source == "generator":
        n = GENERATOR["max_records"]
        expected, _ = aggregate(generator_records(GENERATOR, n), AGGREGATIONS)
        ends = {"generator/0": n}
    else:
        events = make_events(DEALT["n"], random.Random(DEALT["seed"]), users=40, items=12)
        expected = truth(events, AGGREGATIONS)
        k = DEALT["partitions"]
        ends = {f"dealt/{i}": len(events[i::k]) for i in range(k)}
    problem = diff(expected, stored(mongo_db["aggregations"], AGGREGATIONS))
    assert not problem, problem + "\n" + "\n".join(notes)
    state = offsets_state(mongo_db, name)
    assert {p: s[:2] for p, s in state.items()} == {p: (end, None) for p, end in ends.items()}


def test_crash_between_dead_letters_and_sink_write(mongo_uri, mongo_db, runs, tmp_path):
    """The dead letters of a flush are written, the sink's part is not: the restart writes them
    again (at least once) and merges the flush once."""
    name = unique("points")
    config = write_yaml(tmp_path / "p.yaml", _config(tmp_path, mongo_uri, mongo_db.name, name, GENERATOR))
    notes = _crash_then_finish(runs, config, mongo_db, name, ["after_dead_letters@2"])
    print("\n".join(notes))
    n = GENERATOR["max_records"]
    records = generator_records(GENERATOR, n)
    expected, bad = aggregate(records, AGGREGATIONS)
    problem = diff(expected, stored(mongo_db["aggregations"], AGGREGATIONS))
    assert not problem, problem
    assert offsets_state(mongo_db, name)["generator/0"][:2] == (n, None)
    letters = [orjson.loads(line) for line in (tmp_path / "dead.jsonl").read_bytes().splitlines()]
    written = Counter(d["position"] for d in letters)
    want = {i for i, r in enumerate(records) if not aggregate([r], AGGREGATIONS)[0]}
    assert bad == len(want) > 0
    assert set(written) == want
    again = sorted(p for p, c in written.items() if c > 1)
    assert again, "the crashed flush's dead letters were not written before the crash"
    assert all(1000 <= p < 2000 for p in again) and all(c == 2 for c in written.values() if c > 1), again
